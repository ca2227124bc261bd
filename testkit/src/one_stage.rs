//! The uncut Fashion-MNIST ResNet as a one-stage bundle (no exits): its predictions are the
//! backbone's, which proves preprocessing and class ids without any graph tool.

use std::path::PathBuf;

use crate::assets::{FMNIST_MACS, model};

/// A bundle written to a temporary folder that is removed when this is dropped.
pub struct TempBundle {
    pub dir: tempfile::TempDir,
}

impl TempBundle {
    /// The bundle's `exits.yaml`.
    pub fn exits_yaml(&self) -> PathBuf {
        self.dir.path().join("exits.yaml")
    }

    /// The path to give the element's `model` property.
    pub fn model_property(&self) -> String {
        self.exits_yaml().to_string_lossy().into_owned()
    }
}

/// The uncut Fashion-MNIST ResNet as a one-stage bundle, with labels and MACs.
pub fn fmnist_one_stage_bundle() -> std::io::Result<TempBundle> {
    let dir = tempfile::Builder::new()
        .prefix("earlyexit-bundle-")
        .tempdir()?;
    std::fs::copy(
        model("fmnist_resnet20w32.onnx"),
        dir.path().join("backbone.onnx"),
    )?;
    std::fs::copy(model("fmnist_classes.txt"), dir.path().join("labels.txt"))?;
    let yaml = format!(
        "format: earlyexit/1
name: fmnist-resnet20-one-stage
input:
  layout: nchw
  width: 28
  height: 28
  color: gray
  mean: [0.0]
  std: [255.0]
labels: labels.txt
stages:
  - segment: backbone.onnx
    macs: {FMNIST_MACS}
"
    );
    std::fs::write(dir.path().join("exits.yaml"), yaml)?;
    Ok(TempBundle { dir })
}
