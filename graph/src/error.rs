//! Why a graph could not be read, probed, cut or built.

use std::path::{Path, PathBuf};

use earlyexit::runtime::OnnxError;

/// A graph operation that failed. Every message names the file, and the tensor or node at fault.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    // The cause is in the message and not a `source`, which would print it twice in a chain.
    #[error("{}: cannot read: {cause}", file.display())]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: cannot write: {cause}", file.display())]
    Write {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not an ONNX model: {reason}", file.display())]
    NotOnnx { file: PathBuf, reason: String },
    #[error("{}: {message}", file.display())]
    Model { file: PathBuf, message: String },
    #[error("{}: tensor '{tensor}': {message}", file.display())]
    Tensor {
        file: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{}: node '{node}' ({op}): {message}", file.display())]
    Node {
        file: PathBuf,
        node: String,
        op: String,
        message: String,
    },
    /// Building an exit head from weights that do not fit its input.
    #[error("exit head: {0}")]
    Head(String),
    #[error(transparent)]
    Runtime(#[from] OnnxError),
}

impl GraphError {
    pub(crate) fn model(file: &Path, message: impl Into<String>) -> Self {
        GraphError::Model {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(file: &Path, tensor: &str, message: impl Into<String>) -> Self {
        GraphError::Tensor {
            file: file.to_path_buf(),
            tensor: tensor.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn node(
        file: &Path,
        node: &candle_onnx::onnx::NodeProto,
        message: impl Into<String>,
    ) -> Self {
        GraphError::Node {
            file: file.to_path_buf(),
            node: node.name.clone(),
            op: node.op_type.clone(),
            message: message.into(),
        }
    }
}
