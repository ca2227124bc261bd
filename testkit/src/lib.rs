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
