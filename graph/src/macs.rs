//! Multiply-accumulates per node, as exit bundle format 1 defines them, for one frame.

use std::collections::HashMap;

use candle_onnx::onnx::{GraphProto, NodeProto};

use super::model::attr_int;

fn elements(shape: &[i64]) -> u64 {
    shape.iter().map(|&d| d.max(0) as u64).product()
}

/// One node's MACs, from batch-1 shapes: Conv and ConvTranspose, Gemm and MatMul count, every
/// other operator counts 0. `None` when a shape the count needs is unknown.
pub(crate) fn node_macs(node: &NodeProto, shapes: &HashMap<String, Vec<i64>>) -> Option<u64> {
    let shape = |i: usize, outputs: bool| {
        let names = if outputs { &node.output } else { &node.input };
        names.get(i).and_then(|n| shapes.get(n)).map(Vec::as_slice)
    };
    match node.op_type.as_str() {
        "Conv" => {
            // Output elements × (input channels / group) × kernel: the weight is [M, C/g, k...].
            let w = shape(1, false)?;
            Some(elements(shape(0, true)?) * elements(w.get(1..)?))
        }
        "ConvTranspose" => {
            // Each input element feeds (output channels / group) × kernel outputs: the weight is
            // [C, M/g, k...].
            let w = shape(1, false)?;
            Some(elements(shape(0, false)?) * elements(w.get(1..)?))
        }
        "Gemm" => {
            let a = shape(0, false)?;
            let k = if attr_int(node, "transA").unwrap_or(0) != 0 {
                *a.first()?
            } else {
                *a.get(1)?
            };
            Some(elements(shape(0, true)?) * k.max(0) as u64)
        }
        "MatMul" => {
            let k = *shape(0, false)?.last()?;
            Some(elements(shape(0, true)?) * k.max(0) as u64)
        }
        _ => Some(0),
    }
}

/// The MACs of every node of `graph`, in node order.
pub(crate) fn graph_macs(
    graph: &GraphProto,
    shapes: &HashMap<String, Vec<i64>>,
) -> Result<Vec<u64>, usize> {
    graph
        .node
        .iter()
        .enumerate()
        .map(|(i, n)| node_macs(n, shapes).ok_or(i))
        .collect()
}
