//! One ONNX model loaded into an ONNX Runtime session, run on float32 tensors.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::library::{self, LibraryError};

/// An ONNX model that ONNX Runtime could not load or run. Names the file, and the tensor when
/// one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error("{}{}: {message}", file.display(), tensor.as_ref().map(|t| format!(": tensor '{t}'")).unwrap_or_default())]
    Model {
        file: PathBuf,
        tensor: Option<String>,
        message: String,
    },
}

impl OnnxError {
    pub fn model(file: &Path, tensor: Option<&str>, message: impl Into<String>) -> Self {
        OnnxError::Model {
            file: file.to_path_buf(),
            tensor: tensor.map(str::to_owned),
            message: message.into(),
        }
    }

    /// What went wrong, without the file and tensor, for a caller that names them itself.
    pub fn detail(&self) -> String {
        match self {
            OnnxError::Model { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// How sessions are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionOptions {
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
    /// Whether a cascade's sessions are shared with other cascades of the process that load
    /// the same files with the same threads ([`super::SharedModel`]).
    pub shared: bool,
}

impl SessionOptions {
    /// The options for exit heads, from the segments' `self`: one thread, whatever the
    /// segments get. A head runs in tens of microseconds, and waking a second thread for each
    /// of its small operators costs more than the thread saves.
    pub fn head(self) -> SessionOptions {
        SessionOptions { threads: 1, ..self }
    }
}

/// A loaded model with one float32 input and at least one float32 output.
pub struct Model {
    session: Session,
    path: PathBuf,
    input: String,
}

/// One output tensor of a run: its shape and values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensor {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

impl Model {
    /// Loads `path`, a regular file; ONNX Runtime finds external data (a `.onnx.data` beside
    /// it) in the model's own folder, wherever the process runs.
    pub fn load(path: &Path, options: SessionOptions) -> Result<Model, OnnxError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(OnnxError::model(path, None, "not a regular file")),
            Err(e) => return Err(OnnxError::model(path, None, format!("cannot read: {e}"))),
        }
        Model::commit(path, options, |builder| builder.commit_from_file(path))
    }

    /// Loads a model held in memory; `path` names it in errors.
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        options: SessionOptions,
    ) -> Result<Model, OnnxError> {
        Model::commit(path, options, |builder| builder.commit_from_memory(bytes))
    }

    /// A session built with the project's options, then committed by `commit`.
    fn commit(
        path: &Path,
        options: SessionOptions,
        commit: impl FnOnce(&mut ort::session::builder::SessionBuilder) -> ort::Result<Session>,
    ) -> Result<Model, OnnxError> {
        let environment = library::environment()?;
        let fail = |e: ort::Error| OnnxError::model(path, None, e.to_string());
        let mut builder = Session::builder(environment)
            .map_err(fail)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| fail(e.into()))?
            // Spinning threads would take the core the decoder needs on small machines.
            .with_intra_op_spinning(false)
            .map_err(|e| fail(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.into()))?;
        if options.threads > 0 {
            builder = builder
                .with_intra_threads(options.threads)
                .map_err(|e| fail(e.into()))?;
        }
        let session = commit(&mut builder).map_err(fail)?;
        let model = Model {
            input: session
                .inputs()
                .first()
                .map(|i| i.name().to_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            session,
        };
        if model.session.inputs().len() != 1 {
            return Err(model.fault(
                None,
                format!(
                    "expected exactly one input, found {}",
                    model.session.inputs().len()
                ),
            ));
        }
        if model.session.outputs().is_empty() {
            return Err(model.fault(None, "the model has no output"));
        }
        Ok(model)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// The input's shape as the model declares it; dynamic dimensions are negative.
    pub fn declared_input_shape(&self) -> Option<&[i64]> {
        let outlet = self.session.inputs().first()?;
        outlet.dtype().tensor_shape().map(|s| &s[..])
    }

    pub fn output_names(&self) -> Vec<&str> {
        self.session.outputs().iter().map(|o| o.name()).collect()
    }

    fn fault(&self, tensor: Option<&str>, message: impl Into<String>) -> OnnxError {
        OnnxError::model(&self.path, tensor, message)
    }

    /// Runs the model on one input and hands its outputs to `read`.
    fn run_with<R>(
        &mut self,
        shape: &[i64],
        data: &[f32],
        read: impl FnOnce(&Path, &ort::session::SessionOutputs) -> Result<R, OnnxError>,
    ) -> Result<R, OnnxError> {
        let input = TensorRef::from_array_view((shape, data))
            .map_err(|e| self.fault(Some(&self.input), e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![input])
            .map_err(|e| OnnxError::model(&self.path, Some(&self.input), e.to_string()))?;
        read(&self.path, &outputs)
    }

    /// Runs the model on one input and writes its first output into `out`, reusing its buffers.
    pub fn run_into(
        &mut self,
        shape: &[i64],
        data: &[f32],
        out: &mut Tensor,
    ) -> Result<(), OnnxError> {
        self.run_with(shape, data, |path, outputs| {
            let (out_shape, values) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| OnnxError::model(path, None, format!("first output: {e}")))?;
            out.shape.clear();
            out.shape.extend_from_slice(out_shape);
            out.data.clear();
            out.data.extend_from_slice(values);
            Ok(())
        })
    }

    /// Runs the model on one input and returns every output, by name.
    pub fn run_all(
        &mut self,
        shape: &[i64],
        data: &[f32],
    ) -> Result<Vec<(String, Tensor)>, OnnxError> {
        self.run_with(shape, data, |path, outputs| {
            outputs
                .iter()
                .map(|(name, value)| {
                    let (shape, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(|e| OnnxError::model(path, Some(name), e.to_string()))?;
                    Ok((
                        name.to_owned(),
                        Tensor {
                            shape: shape.to_vec(),
                            data: data.to_vec(),
                        },
                    ))
                })
                .collect()
        })
    }
}
