//! Test helpers: the stored models, a tiny .npy reader and running models in ONNX Runtime.

use std::path::{Path, PathBuf};

use candle_onnx::onnx::ModelProto;

use super::encode_model;
use crate::runtime::{Model, SessionOptions};

pub fn asset(name: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/assets/models"
    ))
    .join(name)
}

/// Reads a little-endian float32 .npy file (C order): its shape and values.
pub fn read_npy(path: &Path) -> (Vec<i64>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("read .npy");
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not .npy", path.display());
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("header");
    assert!(header.contains("'<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let open = header.find("'shape': (").expect("shape") + "'shape': (".len();
    let close = open + header[open..].find(')').expect("shape end");
    let shape = header[open..close]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("dim"))
        .collect();
    let data = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
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
