//! Where the tests find their models and footage: `$EARLYEXIT_ASSETS` when it is set (as
//! `scripts/test.sh` does, with a folder it assembles from the repository), else the
//! `shared/assets` folder beside the checkout. Both hold `models/` and `footage/`.
//!
//! One file, included with `#[path]` by each crate's test helpers, because the crates' tests do
//! not share a library.

use std::path::{Path, PathBuf};

pub fn assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EARLYEXIT_ASSETS") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The workspace root and the member crates sit at different depths below `shared/`.
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/assets"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| manifest.join("../shared/assets"))
}
