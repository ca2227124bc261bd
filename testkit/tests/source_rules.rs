//! The rules every crate's source keeps (see `earlyexit_testkit::source`): imports that run one
//! way, and no function over 120 lines outside tests.

use std::path::{Path, PathBuf};

use earlyexit_testkit::source::{Crate, long_functions};

/// The `src/` folders of `crates`, from the workspace root.
fn sources(crates: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    crates.iter().map(|c| root.join(c).join("src")).collect()
}

/// Every crate but the plugin: in the gst-plugins-rs layout an element's `mod.rs` (the glib
/// wrapper) and `imp.rs` (the subclass) name each other's types by design.
#[test]
fn no_module_imports_a_module_that_imports_it() {
    for src in sources(&["core", "graph", "search", "testkit"]) {
        let krate = Crate::read(&src).unwrap();
        // The crate was read whole, or the check shows nothing.
        assert!(krate.files().len() > 3, "{}", src.display());
        let circles = krate.circles();
        assert!(circles.is_empty(), "{}: {circles:?}", src.display());
    }
}

#[test]
fn no_function_is_over_120_lines_outside_tests() {
    for src in sources(&["core", "graph", "plugin", "search", "testkit"]) {
        let long = long_functions(&src, 120).unwrap();
        assert!(long.is_empty(), "{long:#?}");
    }
}
