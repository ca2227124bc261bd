//! The single-tensor cut points of a graph.

use std::collections::HashMap;

use candle_onnx::onnx::NodeProto;

use super::{CutPoint, Graph};

impl Graph {
    /// True when every output of the node is shape-only, so that segments may recompute it.
    pub(crate) fn is_shape_only_node(&self, node: &NodeProto) -> bool {
        node.output
            .iter()
            .all(|o| o.is_empty() || self.shape_only.contains(o))
    }

    /// Every single-tensor cut point, in execution order: a tensor, neither the graph's input
    /// nor its output, that carries everything later nodes need apart from shape-only tensors.
    pub fn cut_points(&self) -> Vec<CutPoint> {
        let nodes = self.nodes();
        // For every value tensor, the position of its producer and of its last value consumer.
        // Shape-only nodes do not count as consumers: segments rebuild them from their input.
        let mut defined: HashMap<&str, isize> = HashMap::from([(self.input.as_str(), -1)]);
        let mut last_use: HashMap<&str, isize> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if self.is_shape_only_node(node) {
                continue;
            }
            for t in &node.input {
                if !t.is_empty() && !self.initializers.contains(t) && !self.shape_only.contains(t) {
                    last_use.insert(t, i as isize);
                }
            }
            for o in node.output.iter().filter(|o| !o.is_empty()) {
                defined.insert(o, i as isize);
            }
        }
        last_use.insert(&self.output, isize::MAX);

        let mut points = Vec::new();
        let mut macs_before = 0u64;
        for (i, node) in nodes.iter().enumerate() {
            macs_before += self.node_macs[i];
            if self.is_shape_only_node(node) {
                continue;
            }
            let i = i as isize;
            let mut live = defined
                .iter()
                .filter(|(t, def)| **def <= i && last_use.get(*t).is_some_and(|u| *u > i))
                .map(|(t, _)| *t);
            let (Some(t), None) = (live.next(), live.next()) else {
                continue;
            };
            if t == self.input
                || t == self.output
                || !self.floats.contains(t)
                || points.iter().any(|p: &CutPoint| p.tensor == t)
            {
                continue;
            }
            points.push(CutPoint {
                tensor: t.to_owned(),
                shape: self.shapes.get(t).cloned().unwrap_or_default(),
                macs_before,
            });
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::super::Graph;
    use super::super::testutil::asset;

    #[test]
    fn fmnist_has_22_cut_points() {
        let graph = Graph::load(&asset("fmnist_resnet20w32.onnx")).unwrap();
        let points = graph.cut_points();
        let names: Vec<&str> = points.iter().map(|p| p.tensor.as_str()).collect();
        assert_eq!(points.len(), 22, "{names:#?}");
        for known in [
            "/blocks/blocks.2/Relu_1_output_0",
            "/blocks/blocks.5/Relu_1_output_0",
        ] {
            assert!(names.contains(&known), "{known} missing from {names:#?}");
        }
        // In execution order, so the MACs before each cut grow.
        assert!(
            points
                .windows(2)
                .all(|w| w[0].macs_before <= w[1].macs_before)
        );
        let blocks_2 = &points[names
            .iter()
            .position(|n| n.contains("blocks.2/Relu_1"))
            .unwrap()];
        assert_eq!(blocks_2.macs_before, 43_577_856);
        assert_eq!(blocks_2.shape, graph.shape(&blocks_2.tensor).unwrap());
    }

    #[test]
    fn efficientnet_has_48_cut_points() {
        let graph = Graph::load(&asset("efficientnet_lite0_imagenet.onnx")).unwrap();
        let points = graph.cut_points();
        assert_eq!(
            points.len(),
            48,
            "{:#?}",
            points.iter().map(|p| &p.tensor).collect::<Vec<_>>()
        );
        assert_eq!(graph.input().shape, [1, 3, 224, 224]);
        assert_eq!(graph.output().shape, [1, 1000]);
        assert_eq!(graph.total_macs(), 385_187_552);
        assert!(!graph.ends_with_softmax());
    }
}
