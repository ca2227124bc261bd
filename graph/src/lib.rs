//! ONNX graph tools for the search: reading a backbone, learning its shapes, finding where it
//! can be cut, cutting it into segments, counting MACs and building exit heads.

mod cuts;
mod error;
pub mod heads;
mod macs;
mod model;
mod shape_only;
mod shapes;
mod split;
#[cfg(test)]
mod testutil;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_onnx::onnx::tensor_proto::DataType;
use candle_onnx::onnx::{GraphProto, ModelProto, NodeProto, ValueInfoProto};

pub use error::GraphError;
pub use heads::{Head, HeadSpec, Pool, build_head, feature_len, pool_features};
pub use model::{BATCH_DIM, decode_model, encode_model, float_value_info, read_model, write_model};

/// A tensor's name and its shape for one frame (batch 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
}

/// A tensor where the backbone can be cut: everything after it needs only this tensor (and
/// tensors re-derivable from shapes and constants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPoint {
    pub tensor: String,
    /// Its shape for batch 1.
    pub shape: Vec<i64>,
    /// The MACs of everything computed up to it, for one frame.
    pub macs_before: u64,
}

/// One piece of a cut backbone: a standalone model with one input and one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub model: ModelProto,
    /// Its MACs for one frame.
    pub macs: u64,
    pub input: TensorInfo,
    pub output: TensorInfo,
}

/// An ONNX backbone with every tensor's shape known for batch 1.
#[derive(Debug, Clone)]
pub struct Graph {
    model: ModelProto,
    path: PathBuf,
    input: String,
    output: String,
    /// Shapes for batch 1 of every node output, initializer and the input.
    shapes: HashMap<String, Vec<i64>>,
    floats: HashSet<String>,
    /// The index of the node that produces each tensor.
    producer: HashMap<String, usize>,
    initializers: HashSet<String>,
    /// Tensors computed only from initializers, constants and shapes.
    shape_only: HashSet<String>,
    /// MACs of each node, in node order.
    node_macs: Vec<u64>,
}

impl Graph {
    /// Reads an ONNX file and learns every tensor's shape for batch 1 by running it once.
    pub fn load(path: &Path) -> Result<Graph, GraphError> {
        let model = read_model(path)?;
        Graph::from_model(model, path)
    }

    /// Wraps a decoded model; `path` names it in errors.
    pub fn from_model(model: ModelProto, path: &Path) -> Result<Graph, GraphError> {
        let Some(graph) = model.graph.as_ref() else {
            return Err(GraphError::NotOnnx {
                file: path.to_path_buf(),
                reason: "it holds no graph".into(),
            });
        };
        let initializers: HashSet<String> =
            graph.initializer.iter().map(|t| t.name.clone()).collect();
        let inputs = real_inputs(graph);
        let [input] = inputs.as_slice() else {
            return Err(GraphError::model(
                path,
                format!("expected exactly one input, found {}", inputs.len()),
            ));
        };
        let [output] = graph.output.as_slice() else {
            return Err(GraphError::model(
                path,
                format!("expected exactly one output, found {}", graph.output.len()),
            ));
        };
        let input_shape = batch_one_shape(path, input)?;

        let mut producer = HashMap::new();
        let mut defined: HashSet<&str> = initializers.iter().map(String::as_str).collect();
        defined.insert(&input.name);
        for (i, node) in graph.node.iter().enumerate() {
            if !node.domain.is_empty() && node.domain != "ai.onnx" {
                return Err(GraphError::node(
                    path,
                    node,
                    format!("operator domain '{}' is not supported", node.domain),
                ));
            }
            if let Some(missing) = node
                .input
                .iter()
                .find(|t| !t.is_empty() && !defined.contains(t.as_str()))
            {
                return Err(GraphError::node(
                    path,
                    node,
                    format!(
                        "input '{missing}' is not computed before it (nodes must be in execution order)"
                    ),
                ));
            }
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if producer.insert(out.clone(), i).is_some() || out == &input.name {
                    return Err(GraphError::tensor(path, out, "computed twice"));
                }
                defined.insert(out);
            }
        }
        if !producer.contains_key(&output.name) {
            return Err(GraphError::tensor(
                path,
                &output.name,
                "the graph output is not computed by any node",
            ));
        }

        let probe = shapes::probe(&model, path, &input.name, &input_shape)?;
        let node_macs = macs::graph_macs(graph, &probe.shapes).map_err(|i| {
            GraphError::node(path, &graph.node[i], "shapes unknown, cannot count MACs")
        })?;
        let shape_only = shape_only::shape_only_tensors(&graph.node, &initializers);
        Ok(Graph {
            input: input.name.clone(),
            output: output.name.clone(),
            path: path.to_path_buf(),
            shapes: probe.shapes,
            floats: probe.floats,
            producer,
            initializers,
            shape_only,
            node_macs,
            model,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model(&self) -> &ModelProto {
        &self.model
    }

    fn nodes(&self) -> &[NodeProto] {
        self.model.graph.as_ref().map_or(&[], |g| g.node.as_slice())
    }

    fn info(&self, name: &str) -> TensorInfo {
        TensorInfo {
            name: name.to_owned(),
            shape: self.shapes.get(name).cloned().unwrap_or_default(),
        }
    }

    /// The input, with its shape for batch 1 (e.g. [1, 3, 224, 224]).
    pub fn input(&self) -> TensorInfo {
        self.info(&self.input)
    }

    /// The output, with its shape for batch 1.
    pub fn output(&self) -> TensorInfo {
        self.info(&self.output)
    }

    /// A tensor's shape for batch 1.
    pub fn shape(&self, tensor: &str) -> Option<&[i64]> {
        self.shapes.get(tensor).map(Vec::as_slice)
    }

    /// True when `tensor` holds float32.
    pub fn is_float(&self, tensor: &str) -> bool {
        self.floats.contains(tensor)
    }

    /// The MACs of the whole model for one frame.
    pub fn total_macs(&self) -> u64 {
        self.node_macs.iter().sum()
    }

    /// The opset of the default ONNX domain.
    pub fn opset(&self) -> i64 {
        self.model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(1, |o| o.version)
    }

    /// The backbone with extra graph outputs at `tensors`, so that one run gives the final output
    /// (first) and then each of `tensors`, in order.
    pub fn with_outputs(&self, tensors: &[&str]) -> Result<ModelProto, GraphError> {
        let mut model = self.model.clone();
        let Some(graph) = model.graph.as_mut() else {
            return Err(GraphError::model(&self.path, "no graph"));
        };
        let mut seen: HashSet<&str> = HashSet::from([self.output.as_str()]);
        for &t in tensors {
            if !seen.insert(t) {
                return Err(GraphError::tensor(
                    &self.path,
                    t,
                    "asked for twice, or it is already the output",
                ));
            }
            let shape = self
                .shapes
                .get(t)
                .filter(|_| self.floats.contains(t))
                .ok_or_else(|| GraphError::tensor(&self.path, t, "no such float tensor"))?;
            graph.output.push(model::float_value_info(t, shape, true));
        }
        Ok(model)
    }

    /// True when the node that produces the graph output is a Softmax.
    pub fn ends_with_softmax(&self) -> bool {
        let mut tensor = self.output.as_str();
        // An Identity or a shape change after the Softmax does not make the values logits.
        loop {
            let Some(node) = self.producer.get(tensor).map(|&i| &self.nodes()[i]) else {
                return false;
            };
            match node.op_type.as_str() {
                "Softmax" => return true,
                "Identity" | "Reshape" | "Flatten" | "Squeeze" => match node.input.first() {
                    Some(t) => tensor = t,
                    None => return false,
                },
                _ => return false,
            }
        }
    }
}

/// Where in `graph.input` the inputs that are not initializers are: old exporters list
/// initializers there too.
fn real_input_indices(graph: &GraphProto) -> impl Iterator<Item = usize> + '_ {
    (0..graph.input.len()).filter(|&k| {
        !graph
            .initializer
            .iter()
            .any(|t| t.name == graph.input[k].name)
    })
}

fn real_inputs(graph: &GraphProto) -> Vec<&ValueInfoProto> {
    real_input_indices(graph).map(|k| &graph.input[k]).collect()
}

/// Where in `graph.input` the graph's one input is, when it has exactly one.
fn one_input(graph: &GraphProto) -> Option<usize> {
    let mut real = real_input_indices(graph);
    match (real.next(), real.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// The dimensions the model's one input declares, `None` where it leaves one open (a symbolic
/// batch, height or width); `None` when it has no one input with a tensor shape.
pub fn declared_input_dims(model: &ModelProto) -> Option<Vec<Option<i64>>> {
    let graph = model.graph.as_ref()?;
    model::declared_type(&graph.input[one_input(graph)?]).map(|(_, dims)| dims)
}

/// Fixes the dimensions of the model's one input after the batch to `dims`, such as the height
/// and width a model leaves open, so that every tensor's shape can be learned.
pub fn fix_input_dims(model: &mut ModelProto, dims: &[i64]) {
    if let Some(graph) = model.graph.as_mut()
        && let Some(i) = one_input(graph)
    {
        model::set_dims_after_batch(&mut graph.input[i], dims);
    }
}

/// The input's shape with a symbolic or unknown leading dimension set to 1.
fn batch_one_shape(path: &Path, input: &ValueInfoProto) -> Result<Vec<i64>, GraphError> {
    let Some((elem_type, dims)) = model::declared_type(input) else {
        return Err(GraphError::tensor(
            path,
            &input.name,
            "the input declares no tensor shape",
        ));
    };
    if elem_type != DataType::Float as i32 {
        return Err(GraphError::tensor(
            path,
            &input.name,
            "the input is not float32",
        ));
    }
    if dims.is_empty() {
        return Err(GraphError::tensor(
            path,
            &input.name,
            "the input has no batch dimension",
        ));
    }
    dims.iter()
        .enumerate()
        .map(|(i, d)| match (i, d) {
            (0, _) => Ok(1),
            (_, Some(v)) => Ok(*v),
            (_, None) => Err(GraphError::tensor(
                path,
                &input.name,
                format!("dimension {i} is not fixed; only the batch dimension may be symbolic"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::testutil::{asset, max_abs_diff, read_npy};
    use super::*;
    use earlyexit::runtime::{Model, SessionOptions};

    #[test]
    fn a_file_that_is_not_a_model_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.onnx");
        std::fs::write(&path, b"this is plain text, not a protobuf model\n").unwrap();
        let err = Graph::load(&path).unwrap_err().to_string();
        assert!(err.contains("notes.onnx"), "{err}");
        assert!(err.contains("not an ONNX model"), "{err}");

        let missing = dir.path().join("missing.onnx");
        let err = Graph::load(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.onnx") && err.contains("cannot read"),
            "{err}"
        );

        // Bytes that decode as protobuf but hold no graph.
        let empty = dir.path().join("empty.onnx");
        std::fs::write(&empty, b"").unwrap();
        let err = Graph::load(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.onnx: not an ONNX model"), "{err}");
    }

    #[test]
    fn with_outputs_exposes_cut_tensors_after_the_output() {
        let graph = Graph::load(&asset("fmnist_resnet20w32.onnx")).unwrap();
        let cuts = [
            "/blocks/blocks.2/Relu_1_output_0",
            "/blocks/blocks.5/Relu_1_output_0",
        ];
        let model = graph.with_outputs(&cuts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.onnx");
        write_model(&model, &path).unwrap();
        let mut session = Model::load(&path, SessionOptions::default()).unwrap();
        let (shape, input) = read_npy(&asset("fmnist_resnet20w32.ref_in.npy"));
        let (_, expected) = read_npy(&asset("fmnist_resnet20w32.ref_out.npy"));
        let out = session.run_all(&shape, &input).unwrap();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [graph.output().name.as_str(), cuts[0], cuts[1]]);
        assert!(max_abs_diff(&out[0].1.data, &expected) < 1e-4);
        let mut cut_shape = graph.shape(cuts[1]).unwrap().to_vec();
        cut_shape[0] = 16;
        assert_eq!(out[2].1.shape, cut_shape);

        let err = graph.with_outputs(&["nope"]).unwrap_err().to_string();
        assert!(err.contains("tensor 'nope'"), "{err}");
        assert!(!graph.ends_with_softmax());
        assert_eq!(graph.opset(), 17);
    }
}
