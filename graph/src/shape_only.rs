//! Tensors that depend on shapes only: every segment of a cut graph can recompute them from
//! its own input, so a cut never has to carry them.

use std::collections::HashSet;

use candle_onnx::onnx::NodeProto;

/// Operators whose output depends on their input's shape only, never on its values.
pub(crate) fn reads_shape_only(op: &str) -> bool {
    matches!(op, "Shape" | "Size")
}

/// Tensors computed only from initializers, Constant nodes and Shape outputs. Every segment can
/// recompute them from its own input, since the batch dimension is the same everywhere.
pub(crate) fn shape_only_tensors(
    nodes: &[NodeProto],
    initializers: &HashSet<String>,
) -> HashSet<String> {
    let mut shape_only = HashSet::new();
    for node in nodes {
        let derivable = reads_shape_only(&node.op_type)
            || node
                .input
                .iter()
                .all(|t| t.is_empty() || initializers.contains(t) || shape_only.contains(t));
        if derivable {
            shape_only.extend(node.output.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    shape_only
}
