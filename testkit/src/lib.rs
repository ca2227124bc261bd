//! Test support shared by every crate of the workspace (`publish = false`, a dev-dependency
//! only): where the models and footage are, small bundles, the rules the source keeps
//! ([`source`]), and, behind features, the element driven in pipelines (`gst`) and bundles cut
//! from the real backbone (`graph`).

pub mod assets;
pub mod built;
#[cfg(feature = "graph")]
pub mod cut;
#[cfg(feature = "gst")]
pub mod gst;
pub mod npy;
mod one_stage;
pub mod source;

pub use assets::{FMNIST_MACS, asset, assets_dir, footage, model, read_labels_csv};
pub use one_stage::{TempBundle, fmnist_one_stage_bundle};

/// The frames leaving at each stage, from the totals of `earlyexit-search evaluate --json`.
pub fn evaluate_exits(json: &serde_json::Value) -> Vec<u64> {
    json["exits"]
        .as_array()
        .expect("evaluate --json gives exits")
        .iter()
        .map(|v| v.as_u64().expect("a count"))
        .collect()
}

/// Every file below `dir`, relative to it, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).expect("below dir").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Panics, naming the file, unless folders `a` and `b` hold the same files, byte for byte.
pub fn assert_same_files(a: &std::path::Path, b: &std::path::Path) {
    let names = files_under(a);
    assert_eq!(names, files_under(b), "{} and {}", a.display(), b.display());
    for name in &names {
        assert!(
            std::fs::read(a.join(name)).ok() == std::fs::read(b.join(name)).ok(),
            "{} differs between {} and {}",
            name.display(),
            a.display(),
            b.display()
        );
    }
}
