//! Cutting a graph into standalone segments.

use std::collections::{BTreeMap, HashSet};

use candle_onnx::onnx::{GraphProto, ModelProto, NodeProto, TensorProto};

use super::model::{attr_int, float_value_info, int_attr, int64_tensor, node};
use super::{Graph, GraphError, Segment};

/// What a segment is made of, before it becomes a model.
struct Slice {
    /// Kept nodes by original position; a rebuilt Shape node becomes several nodes.
    nodes: BTreeMap<usize, Vec<NodeProto>>,
    /// Original initializers it needs.
    initializers: HashSet<String>,
    /// Constants made for rebuilt Shape nodes.
    extra: Vec<TensorProto>,
    macs: u64,
}

impl Graph {
    /// Cuts the model at `cuts` (cut points, in execution order) into `cuts.len() + 1`
    /// segments. Each is a standalone model with one input and one output, whose leading batch
    /// dimension is symbolic.
    pub fn split(&self, cuts: &[&str]) -> Result<Vec<Segment>, GraphError> {
        let points = self.cut_points();
        let mut previous: Option<usize> = None;
        for &cut in cuts {
            let Some(at) = points.iter().position(|p| p.tensor == cut) else {
                return Err(GraphError::tensor(&self.path, cut, "not a cut point"));
            };
            if previous.is_some_and(|p| p >= at) {
                return Err(GraphError::tensor(
                    &self.path,
                    cut,
                    "cuts must be distinct and in execution order",
                ));
            }
            previous = Some(at);
        }
        let mut bounds = vec![self.input.as_str()];
        bounds.extend_from_slice(cuts);
        bounds.push(&self.output);
        bounds
            .windows(2)
            .map(|w| self.segment(w[0], w[1]))
            .collect()
    }

    /// The segment that computes `output` from `input`.
    fn segment(&self, input: &str, output: &str) -> Result<Segment, GraphError> {
        let slice = self.slice(input, output)?;
        let Some(graph) = self.model.graph.as_ref() else {
            return Err(GraphError::model(&self.path, "no graph"));
        };
        let shape = |t: &str| {
            self.shapes
                .get(t)
                .cloned()
                .ok_or_else(|| GraphError::tensor(&self.path, t, "shape unknown"))
        };
        let (input_shape, output_shape) = (shape(input)?, shape(output)?);
        let mut initializer: Vec<TensorProto> = graph
            .initializer
            .iter()
            .filter(|t| slice.initializers.contains(&t.name))
            .cloned()
            .collect();
        initializer.extend(slice.extra);
        let segment_graph = GraphProto {
            node: slice.nodes.into_values().flatten().collect(),
            name: format!("{}_{}_to_{}", graph.name, input, output),
            initializer,
            input: vec![float_value_info(input, &input_shape, true)],
            output: vec![float_value_info(output, &output_shape, true)],
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: self.model.ir_version,
            opset_import: self.model.opset_import.clone(),
            producer_name: "earlyexit".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: self.model.domain.clone(),
            model_version: self.model.model_version,
            graph: Some(segment_graph),
            functions: self.model.functions.clone(),
            ..Default::default()
        };
        Ok(Segment {
            model,
            macs: slice.macs,
            input: self.info(input),
            output: self.info(output),
        })
    }

    /// The backward slice from `output` that stops at `input`.
    fn slice(&self, input: &str, output: &str) -> Result<Slice, GraphError> {
        let nodes = self.nodes();
        // Value nodes at or before this position belong to earlier segments.
        let start: isize = self.producer.get(input).map_or(-1, |&p| p as isize);
        let mut slice = Slice {
            nodes: BTreeMap::new(),
            initializers: HashSet::new(),
            extra: Vec::new(),
            macs: 0,
        };
        let mut stack = vec![output.to_owned()];
        let mut visited = HashSet::new();
        while let Some(t) = stack.pop() {
            if t.is_empty() || t == input || !visited.insert(t.clone()) {
                continue;
            }
            if self.initializers.contains(&t) {
                slice.initializers.insert(t);
                continue;
            }
            let Some(&at) = self.producer.get(&t) else {
                return Err(GraphError::tensor(
                    &self.path,
                    &t,
                    format!(
                        "the segment from '{input}' to '{output}' needs it, but it comes before '{input}'"
                    ),
                ));
            };
            let node = &nodes[at];
            if self.is_shape_only_node(node) {
                let read = node.input.first().map_or("", String::as_str);
                if node.op_type == "Shape" && self.lies_before(read, input, start) {
                    let (rebuilt, constants) = self.rebuild_shape(node, read, &t, input)?;
                    slice.nodes.insert(at, rebuilt);
                    slice.extra.extend(constants);
                    continue;
                }
                if node.op_type == "Size" && self.lies_before(read, input, start) {
                    return Err(GraphError::node(
                        &self.path,
                        node,
                        "Size of a tensor before the segment is not supported",
                    ));
                }
            } else if (at as isize) <= start {
                return Err(GraphError::tensor(
                    &self.path,
                    &t,
                    format!(
                        "the segment from '{input}' to '{output}' needs it, but it comes before '{input}'"
                    ),
                ));
            }
            if slice.nodes.insert(at, vec![node.clone()]).is_none() {
                slice.macs += self.node_macs[at];
            }
            stack.extend(node.input.iter().cloned());
        }
        Ok(slice)
    }

    /// True when the value tensor `t` is computed before a segment that starts at `input`.
    fn lies_before(&self, t: &str, input: &str, start: isize) -> bool {
        if t == input || self.shape_only.contains(t) || self.initializers.contains(t) {
            return false;
        }
        self.producer.get(t).is_none_or(|&p| (p as isize) <= start)
    }

    /// Nodes that compute `Shape(t)` for a `t` before the segment, from the segment's own
    /// input: the batch dimension is read from `input`, the others are known constants.
    fn rebuild_shape(
        &self,
        shape_node: &NodeProto,
        t: &str,
        out: &str,
        input: &str,
    ) -> Result<(Vec<NodeProto>, Vec<TensorProto>), GraphError> {
        let dims = self
            .shapes
            .get(t)
            .ok_or_else(|| GraphError::tensor(&self.path, t, "shape unknown"))?;
        let rank = dims.len() as i64;
        let clamp = |v: i64| if v < 0 { v + rank } else { v }.clamp(0, rank) as usize;
        let start = clamp(attr_int(shape_node, "start").unwrap_or(0));
        let end = clamp(attr_int(shape_node, "end").unwrap_or(rank));
        let name = |suffix: &str| format!("{out}__earlyexit_{suffix}");
        if start > 0 || end <= start {
            // No batch dimension in the range: the result is a constant.
            let kept = if end > start { &dims[start..end] } else { &[] };
            return Ok((
                vec![node(
                    "Identity",
                    &name("const"),
                    &[&name("dims")],
                    &[out],
                    vec![],
                )],
                vec![int64_tensor(&name("dims"), kept)],
            ));
        }
        let batch = if end == 1 {
            out.to_owned()
        } else {
            name("batch")
        };
        // Shape + Gather rather than Shape's start/end attributes, which need opset 15.
        let mut nodes = vec![
            node("Shape", &name("shape"), &[input], &[&name("shape")], vec![]),
            node(
                "Gather",
                &name("gather"),
                &[&name("shape"), &name("zero")],
                &[&batch],
                vec![int_attr("axis", 0)],
            ),
        ];
        let mut constants = vec![int64_tensor(&name("zero"), &[0])];
        if end > 1 {
            nodes.push(node(
                "Concat",
                &name("concat"),
                &[&batch, &name("dims")],
                &[out],
                vec![int_attr("axis", 0)],
            ));
            constants.push(int64_tensor(&name("dims"), &dims[1..end]));
        }
        Ok((nodes, constants))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{asset, max_abs_diff, read_npy, run};
    use super::super::{Graph, Segment};

    /// Runs the segments one after the other.
    fn chain(segments: &[Segment], shape: &[i64], data: &[f32]) -> (Vec<i64>, Vec<f32>) {
        let (mut shape, mut data) = (shape.to_vec(), data.to_vec());
        for s in segments {
            (shape, data) = run(&s.model, &shape, &data);
            let mut expected = s.output.shape.clone();
            expected[0] = shape[0];
            assert_eq!(shape, expected, "{}", s.output.name);
        }
        (shape, data)
    }

    #[test]
    fn fmnist_split_counts_known_macs_and_reproduces_the_output() {
        let graph = Graph::load(&asset("fmnist_resnet20w32.onnx")).unwrap();
        let segments = graph
            .split(&[
                "/blocks/blocks.2/Relu_1_output_0",
                "/blocks/blocks.5/Relu_1_output_0",
            ])
            .unwrap();
        let macs: Vec<u64> = segments.iter().map(|s| s.macs).collect();
        assert_eq!(macs, [43_577_856, 40_140_800, 40_142_080]);
        assert_eq!(graph.total_macs(), 123_860_736);
        assert_eq!(segments[0].input, graph.input());
        assert_eq!(segments[2].output, graph.output());

        let (in_shape, input) = read_npy(&asset("fmnist_resnet20w32.ref_in.npy"));
        let (out_shape, expected) = read_npy(&asset("fmnist_resnet20w32.ref_out.npy"));
        // The whole batch of 16 goes through the symbolic batch dimension.
        let (shape, got) = chain(&segments, &in_shape, &input);
        assert_eq!(shape, out_shape);
        assert!(max_abs_diff(&got, &expected) < 1e-4);
        // And one frame at a time.
        let frame = input.len() / in_shape[0] as usize;
        let (shape, got) = chain(&segments, &[1, 1, 28, 28], &input[..frame]);
        assert_eq!(shape, [1, 10]);
        assert!(max_abs_diff(&got, &expected[..10]) < 1e-4);
    }

    #[test]
    fn efficientnet_splits_across_its_shape_subgraph() {
        let graph = Graph::load(&asset("efficientnet_lite0_imagenet.onnx")).unwrap();
        let points = graph.cut_points();
        let cuts: Vec<&str> = [5, 20, 40]
            .iter()
            .map(|&i| points[i].tensor.as_str())
            .collect();
        let segments = graph.split(&cuts).unwrap();
        assert_eq!(segments.len(), 4);
        assert_eq!(
            segments.iter().map(|s| s.macs).sum::<u64>(),
            graph.total_macs()
        );
        for (s, cut) in segments.iter().zip(&cuts) {
            assert_eq!(s.output.name, *cut);
        }
        // The final Reshape reads Shape(input), which the last segment must rebuild from its own
        // input; only the first segment reads the backbone's input.
        let last = segments[3].model.graph.as_ref().unwrap();
        assert!(
            last.node
                .iter()
                .any(|n| n.op_type == "Shape" && n.input[0] == cuts[2])
        );
        for s in &segments[1..] {
            let g = s.model.graph.as_ref().unwrap();
            assert!(g.node.iter().flat_map(|n| &n.input).all(|t| t != "input"));
        }

        let (in_shape, input) = read_npy(&asset("efficientnet_lite0_imagenet.ref_in.npy"));
        let (out_shape, expected) = read_npy(&asset("efficientnet_lite0_imagenet.ref_out.npy"));
        let (shape, got) = chain(&segments, &in_shape, &input);
        assert_eq!(shape, out_shape);
        let diff = max_abs_diff(&got, &expected);
        assert!(diff < 1e-4, "max difference {diff}");
        // A batch of 2 goes through every segment too: the batch dimension is symbolic.
        let twice: Vec<f32> = input.iter().chain(&input).copied().collect();
        let (shape, got) = chain(&segments, &[2, 3, 224, 224], &twice);
        assert_eq!(shape, [2, 1000]);
        assert!(max_abs_diff(&got[1000..], &expected) < 1e-4);
    }

    #[test]
    fn every_cut_point_splits_both_models_exactly() {
        for name in ["fmnist_resnet20w32", "efficientnet_lite0_imagenet"] {
            let graph = Graph::load(&asset(&format!("{name}.onnx"))).unwrap();
            let (in_shape, input) = read_npy(&asset(&format!("{name}.ref_in.npy")));
            let (_, expected) = read_npy(&asset(&format!("{name}.ref_out.npy")));
            let frame = input.len() / in_shape[0] as usize;
            let mut one = in_shape.clone();
            one[0] = 1;
            let classes = graph.output().shape[1] as usize;
            for point in graph.cut_points() {
                let segments = graph.split(&[&point.tensor]).unwrap();
                assert_eq!(segments[0].macs, point.macs_before, "{}", point.tensor);
                assert_eq!(segments[0].macs + segments[1].macs, graph.total_macs());
                let (_, got) = chain(&segments, &one, &input[..frame]);
                let diff = max_abs_diff(&got, &expected[..classes]);
                assert!(diff < 1e-4, "{name} cut at {}: {diff}", point.tensor);
            }
        }
    }

    #[test]
    fn a_tensor_that_is_not_a_cut_point_is_refused() {
        let graph = Graph::load(&asset("fmnist_resnet20w32.onnx")).unwrap();
        let inside_block = graph
            .model()
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .find(|n| n.op_type == "Conv" && n.name.contains("blocks.1"))
            .unwrap()
            .output[0]
            .clone();
        let err = graph.split(&[&inside_block]).unwrap_err().to_string();
        assert!(err.contains("fmnist_resnet20w32.onnx"), "{err}");
        assert!(
            err.contains(&format!("tensor '{inside_block}': not a cut point")),
            "{err}"
        );
        let err = graph
            .split(&[
                "/blocks/blocks.5/Relu_1_output_0",
                "/blocks/blocks.2/Relu_1_output_0",
            ])
            .unwrap_err()
            .to_string();
        assert!(err.contains("execution order"), "{err}");
    }
}
