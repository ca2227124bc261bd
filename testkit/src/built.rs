//! What cargo built beside the running test: the plugin libraries and the example programs,
//! found from the test binary's own place, `<target>/<profile>/deps/`.

use std::path::{Path, PathBuf};

/// `<target>/<profile>/deps/`, where the running test binary sits.
fn deps() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .unwrap_or_else(|| panic!("unexpected test binary location: {}", exe.display()))
        .to_path_buf()
}

/// The built plugin library `file` (such as `libgstearlyexit.so`). `cargo test` builds a
/// dependency's cdylib in deps/ and leaves `<profile>/FILE` alone; `cargo build` writes both.
/// The newer of the two is the fresh one.
pub fn library(file: &str) -> PathBuf {
    let deps = deps();
    [deps.parent().map(|p| p.join(file)), Some(deps.join(file))]
        .into_iter()
        .flatten()
        .filter_map(|so| Some((so.metadata().ok()?.modified().ok()?, so)))
        .max()
        .map(|(_, so)| so)
        .unwrap_or_else(|| {
            panic!(
                "{file} is not built: not in {} or its parent. Run `cargo build --release` \
                 (same CARGO_TARGET_DIR) first",
                deps.display()
            )
        })
}

/// The example program `name`: `cargo test` builds the examples in `<profile>/examples/`, unless
/// a filter such as `--test` leaves them out.
pub fn example(name: &str) -> PathBuf {
    let deps = deps();
    let path = deps
        .parent()
        .unwrap_or(Path::new("."))
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} was not built: `cargo test` builds the examples unless a filter such as --test \
         leaves them out (then run `cargo build --release --examples`)",
        path.display()
    );
    path
}
