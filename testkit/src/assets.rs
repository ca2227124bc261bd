//! Where the tests find their models and footage: `$EARLYEXIT_ASSETS` when it is set (as
//! `scripts/test.sh` does, with a folder it assembles from the repository), else the
//! `shared/assets` folder beside the checkout. Both hold `models/` and `footage/`.

use std::path::{Path, PathBuf};

/// MACs of `fmnist_resnet20w32.onnx` (`docs/spec/bundle-v1.md`'s known answer), so that a one-stage bundle
/// of it costs exactly 1 for every frame.
pub const FMNIST_MACS: u64 = 123_860_736;

pub fn assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EARLYEXIT_ASSETS") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/assets"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| manifest.join("../../shared/assets"))
}

/// A file of the assets folder, by its path inside it.
pub fn asset(relative: &str) -> PathBuf {
    assets_dir().join(relative)
}

/// A file of the assets' `models/` folder.
pub fn model(name: &str) -> PathBuf {
    asset("models").join(name)
}

/// A file of the assets' `footage/` folder.
pub fn footage(name: &str) -> PathBuf {
    asset("footage").join(name)
}

/// The ground-truth class of each frame of a `*.labels.csv` (header `frame,label`), by frame.
pub fn read_labels_csv(path: &Path) -> std::io::Result<Vec<i32>> {
    let text = std::fs::read_to_string(path)?;
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: expected 'frame,label'", path.display(), n + 1),
            )
        };
        let (frame, label) = line.split_once(',').ok_or_else(bad)?;
        let frame: usize = frame.trim().parse().map_err(|_| bad())?;
        if frame != labels.len() {
            return Err(bad());
        }
        labels.push(label.trim().parse().map_err(|_| bad())?);
    }
    Ok(labels)
}
