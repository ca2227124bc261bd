//! Reading and writing ONNX files, and small helpers over the protobuf types.

use std::path::Path;

use candle_onnx::onnx::tensor_proto::DataType;
use candle_onnx::onnx::tensor_shape_proto::{Dimension, dimension};
use candle_onnx::onnx::{
    AttributeProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, type_proto,
};
use prost::Message;

use super::GraphError;

/// The name given to the batch dimension of every segment's and head's input and output.
pub const BATCH_DIM: &str = "N";

/// Reads an ONNX model from `path`.
pub fn read_model(path: &Path) -> Result<ModelProto, GraphError> {
    let bytes = std::fs::read(path).map_err(|cause| GraphError::Read {
        file: path.to_path_buf(),
        cause,
    })?;
    decode_model(&bytes, path)
}

/// Decodes an ONNX model held in memory; `path` names it in errors.
pub fn decode_model(bytes: &[u8], path: &Path) -> Result<ModelProto, GraphError> {
    let not_onnx = |reason: String| GraphError::NotOnnx {
        file: path.to_path_buf(),
        reason,
    };
    let model = ModelProto::decode(bytes).map_err(|e| not_onnx(e.to_string()))?;
    // Protobuf decodes many byte strings without complaint, so check what a model must hold.
    let Some(graph) = &model.graph else {
        return Err(not_onnx("it holds no graph".into()));
    };
    if graph.node.is_empty() || graph.output.is_empty() || model.ir_version <= 0 {
        return Err(not_onnx(
            "it holds no nodes, no outputs or no IR version".into(),
        ));
    }
    Ok(model)
}

/// The model in its file format.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes `model` to `path`.
pub fn write_model(model: &ModelProto, path: &Path) -> Result<(), GraphError> {
    std::fs::write(path, encode_model(model)).map_err(|cause| GraphError::Write {
        file: path.to_path_buf(),
        cause,
    })
}

/// A float32 tensor's ValueInfo; with `symbolic_batch`, the first dimension becomes
/// [`BATCH_DIM`].
pub fn float_value_info(name: &str, dims: &[i64], symbolic_batch: bool) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            denotation: String::new(),
            value: Some(if i == 0 && symbolic_batch {
                dimension::Value::DimParam(BATCH_DIM.into())
            } else {
                dimension::Value::DimValue(d)
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// The element type and dimensions a ValueInfo declares; an unknown dimension is `None`.
pub(crate) fn declared_type(info: &ValueInfoProto) -> Option<(i32, Vec<Option<i64>>)> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = t
        .shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) if v > 0 => Some(v),
            _ => None,
        })
        .collect();
    Some((t.elem_type, dims))
}

/// Sets the dimensions after the first (the batch) that `info` declares to `dims`.
pub(crate) fn set_dims_after_batch(info: &mut ValueInfoProto, dims: &[i64]) {
    let Some(type_proto::Value::TensorType(t)) =
        info.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        return;
    };
    let Some(shape) = t.shape.as_mut() else {
        return;
    };
    for (d, &v) in shape.dim.iter_mut().skip(1).zip(dims) {
        d.value = Some(dimension::Value::DimValue(v));
    }
}

pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

pub(crate) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

pub(crate) fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: outputs.iter().map(|s| (*s).to_owned()).collect(),
        name: name.to_owned(),
        op_type: op.to_owned(),
        attribute,
        ..Default::default()
    }
}

pub(crate) fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        name: name.to_owned(),
        ..Default::default()
    }
}

pub(crate) fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: values.to_vec(),
        name: name.to_owned(),
        ..Default::default()
    }
}

/// The IR version that goes with an opset, for models this crate writes from scratch.
pub(crate) fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21 => 10,
        _ => 11,
    }
}
