//! Learning every tensor's shape for batch 1.
//!
//! ONNX shape inference leaves some shapes unknown after a `Reshape`, so the model is run once
//! through ONNX Runtime on zeros, with every node output exposed as an extra graph output. What
//! ONNX Runtime returns is the truth for the runtime the bundles will run on.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_onnx::onnx::{ModelProto, ValueInfoProto};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::GraphError;
use super::model::encode_model;
use earlyexit::runtime::library;

/// Shapes learnt by running the model once.
pub(crate) struct Probe {
    /// Every node output's shape, and every initializer's.
    pub shapes: HashMap<String, Vec<i64>>,
    /// The tensors among `shapes` that hold float32.
    pub floats: HashSet<String>,
}

/// Runs `model` once at batch 1 on zeros of `input_shape` and records every tensor's shape.
pub(crate) fn probe(
    model: &ModelProto,
    path: &Path,
    input: &str,
    input_shape: &[i64],
) -> Result<Probe, GraphError> {
    let mut exposed = model.clone();
    let Some(graph) = exposed.graph.as_mut() else {
        return Err(GraphError::model(path, "no graph"));
    };
    let mut seen: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let extra: Vec<ValueInfoProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .filter(|o| !o.is_empty() && seen.insert((*o).clone()))
        // ONNX Runtime infers an output's type when the ValueInfo leaves it out.
        .map(|o| ValueInfoProto {
            name: o.clone(),
            ..Default::default()
        })
        .collect();
    graph.output.extend(extra);
    // Declared value_info may pin a batch size that the probe does not use.
    graph.value_info.clear();

    let environment = library::environment().map_err(earlyexit::runtime::OnnxError::from)?;
    let fail = |e: ort::Error| GraphError::model(path, format!("ONNX Runtime: {e}"));
    let mut session = Session::builder(environment)
        .map_err(fail)?
        // Optimizations would only cost time here: every tensor is an output.
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(|e| fail(e.into()))?
        .with_intra_op_spinning(false)
        .map_err(|e| fail(e.into()))?
        .commit_from_memory(&encode_model(&exposed))
        .map_err(fail)?;

    let elements: i64 = input_shape.iter().product();
    let zeros = vec![0f32; usize::try_from(elements).unwrap_or(0)];
    let value = TensorRef::from_array_view((input_shape, zeros.as_slice()))
        .map_err(|e| GraphError::tensor(path, input, e.to_string()))?;
    let outputs = session
        .run(ort::inputs![input => value])
        .map_err(|e| GraphError::model(path, format!("ONNX Runtime could not run it: {e}")))?;

    let mut shapes = HashMap::new();
    let mut floats = HashSet::new();
    for (name, value) in outputs.iter() {
        if let ValueType::Tensor { ty, shape, .. } = value.dtype() {
            if *ty == TensorElementType::Float32 {
                floats.insert(name.to_owned());
            }
            shapes.insert(name.to_owned(), shape.to_vec());
        }
    }
    if let Some(graph) = model.graph.as_ref() {
        for init in &graph.initializer {
            shapes.insert(init.name.clone(), init.dims.clone());
            if init.data_type == candle_onnx::onnx::tensor_proto::DataType::Float as i32 {
                floats.insert(init.name.clone());
            }
        }
    }
    shapes.insert(input.to_owned(), input_shape.to_vec());
    floats.insert(input.to_owned());
    Ok(Probe { shapes, floats })
}
