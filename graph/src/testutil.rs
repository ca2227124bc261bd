//! Test helpers: the stored models and reference tensors, and running models in ONNX Runtime.

use std::path::Path;

use candle_onnx::onnx::ModelProto;
use earlyexit::runtime::{Model, SessionOptions};

use super::encode_model;

pub use earlyexit_testkit::model as asset;

/// The reference tensor in `path`, its shape as ONNX Runtime takes it.
pub fn read_npy(path: &Path) -> (Vec<i64>, Vec<f32>) {
    let (shape, data) = earlyexit_testkit::npy::read_npy(path);
    (shape.into_iter().map(|d| d as i64).collect(), data)
}

/// Runs `model` on one input and returns its first output.
pub fn run(model: &ModelProto, shape: &[i64], data: &[f32]) -> (Vec<i64>, Vec<f32>) {
    let mut session = Model::from_bytes(
        &encode_model(model),
        Path::new("test-model.onnx"),
        SessionOptions::default(),
    )
    .expect("session");
    let out = session.run_all(shape, data).expect("run");
    let first = out.into_iter().next().expect("an output").1;
    (first.shape, first.data)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
