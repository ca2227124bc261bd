//! A valid 3-stage bundle cut from the real Fashion-MNIST backbone with the graph tools, its
//! format-2 variants, and a few ONNX models built in code for the readers' error paths.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_onnx::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
use earlyexit::bundle::{self, Bundle, Exit, Format, Labels, Stage};
use earlyexit::gate::{Gate, GateInput, GateWeights};
use earlyexit::input::{Color, InputSpec, Layout};
use earlyexit::rule::{Metric, Output};
use earlyexit_graph::{self as graph, Graph, HeadSpec, Pool};
use prost::Message;

use crate::assets::model;

pub const CUTS: [&str; 2] = [
    "/blocks/blocks.2/Relu_1_output_0",
    "/blocks/blocks.5/Relu_1_output_0",
];
/// The format's known answer for these cuts.
pub const SEGMENT_MACS: [u64; 3] = [43_577_856, 40_140_800, 40_142_080];
pub const CLASSES: usize = 10;
/// The valid bundle's thresholds, distinct so that tests can find them in the text.
pub const THRESHOLDS: [f64; 2] = [0.5, 0.75];

/// The ONNX bytes and facts of the cut backbone and its heads, made once per test binary.
pub struct Parts {
    pub segments: Vec<Part>,
    pub heads: Vec<Part>,
    pub labels: Vec<String>,
}

/// One ONNX file of the bundle.
pub struct Part {
    pub bytes: Vec<u8>,
    pub macs: u64,
    /// The name of its input tensor.
    pub input: String,
}

pub fn parts() -> &'static Parts {
    static PARTS: OnceLock<Parts> = OnceLock::new();
    PARTS.get_or_init(|| {
        let graph = Graph::load(&model("fmnist_resnet20w32.onnx")).expect("load the backbone");
        let segments = graph.split(&CUTS).expect("split");
        let heads = CUTS
            .iter()
            .map(|cut| {
                let shape = graph.shape(cut).expect("cut shape").to_vec();
                let channels = shape[1] as usize;
                // Small, varied weights: any head will do, as long as it runs.
                let weight = (0..CLASSES * channels)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01)
                    .collect();
                let bias = (0..CLASSES).map(|i| i as f32 * 0.05).collect();
                let spec = HeadSpec::Linear {
                    pool: Pool::Global,
                    weight,
                    bias,
                };
                let head = graph::build_head(&spec, &shape, CLASSES, graph.opset()).expect("head");
                Part {
                    bytes: graph::encode_model(&head.model),
                    macs: head.macs,
                    input: "input".to_owned(),
                }
            })
            .collect();
        let labels =
            bundle::read_labels(&model("fmnist_classes.txt")).expect("read fmnist_classes.txt");
        Parts {
            segments: segments
                .iter()
                .map(|s| Part {
                    bytes: graph::encode_model(&s.model),
                    macs: s.macs,
                    input: s.input.name.clone(),
                })
                .collect(),
            heads,
            labels,
        }
    })
}

/// The valid bundle, not yet written (its `file` is empty).
pub fn valid_bundle(thresholds: [f64; 2]) -> Bundle {
    let parts = parts();
    let stages = (0..3)
        .map(|i| Stage {
            segment: format!("stage-{i}.onnx"),
            macs: Some(parts.segments[i].macs),
            exit: (i < 2).then(|| Exit {
                head: format!("exit-{i}.onnx"),
                threshold: thresholds[i],
                macs: Some(parts.heads[i].macs),
                gate: None,
            }),
        })
        .collect();
    Bundle {
        file: PathBuf::new(),
        format: Format::V1,
        name: Some("fmnist-resnet20: test".into()),
        input: InputSpec {
            layout: Layout::Nchw,
            width: 28,
            height: 28,
            color: Color::Gray,
            mean: vec![0.0],
            std: vec![255.0],
        },
        labels: Some(Labels {
            file: "labels.txt".into(),
            names: parts.labels.clone(),
        }),
        metric: Metric::MaxProb,
        gate: None,
        promise: None,
        reuse: None,
        stages,
        output: Output::Logits,
    }
}

/// The valid bundle as format 2, with a gate over `inputs` and these weights at the two exits.
pub fn gated_bundle(
    inputs: Vec<GateInput>,
    weights: [GateWeights; 2],
    thresholds: [f64; 2],
) -> Bundle {
    let mut b = valid_bundle(thresholds);
    b.format = Format::V2;
    b.gate = Some(Gate { inputs });
    for (stage, w) in b.stages.iter_mut().zip(weights) {
        stage
            .exit
            .as_mut()
            .expect("the first two stages have exits")
            .gate = Some(w);
    }
    b
}

/// A gate over one agreement input: probability sigmoid(±10), near 1 or near 0, so that with a
/// threshold of 0.5 the agreement alone decides. `when_agreeing` says which way leaves.
pub fn agreement_gate(when_agreeing: bool) -> GateWeights {
    let sign = if when_agreeing { 1.0 } else { -1.0 };
    GateWeights {
        weights: vec![20.0 * sign],
        bias: -10.0 * sign,
    }
}

/// Writes `bundle` with every segment and head into `dir`; returns the `exits.yaml` path.
pub fn write_bundle(dir: &Path, bundle: &Bundle) -> PathBuf {
    let parts = parts();
    let mut files = Vec::new();
    for (i, part) in parts.segments.iter().enumerate() {
        files.push(bundle::File::new(
            format!("stage-{i}.onnx"),
            part.bytes.clone(),
        ));
    }
    for (i, part) in parts.heads.iter().enumerate() {
        files.push(bundle::File::new(
            format!("exit-{i}.onnx"),
            part.bytes.clone(),
        ));
    }
    bundle::write_atomically(dir, bundle, &files).expect("write the bundle");
    dir.join(bundle::EXITS_FILE)
}

/// A valid bundle in a fresh temporary folder: the folder guard and the bundle's folder.
pub fn valid_dir(thresholds: [f64; 2]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("bundle");
    write_bundle(&dir, &valid_bundle(thresholds));
    (tmp, dir)
}

/// A float32 tensor description with a symbolic batch dimension.
pub fn float_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    graph::float_value_info(name, dims, true)
}

/// An ONNX model (opset 17) of `graph`, encoded.
pub fn encoded(graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "earlyexit-tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A valid ONNX model with two inputs, `a` and `b` of `shape`, and one output `sum = a + b`.
pub fn two_input_add_model(shape: &[i64]) -> Vec<u8> {
    encoded(GraphProto {
        name: "add".into(),
        node: vec![NodeProto {
            input: vec!["a".into(), "b".into()],
            output: vec!["sum".into()],
            name: "add".into(),
            op_type: "Add".into(),
            ..Default::default()
        }],
        input: vec![float_info("a", shape), float_info("b", shape)],
        output: vec![float_info("sum", shape)],
        ..Default::default()
    })
}

/// A valid ONNX model with one input `x` of `shape` and two outputs, both copies of it.
pub fn two_output_identity_model(shape: &[i64]) -> Vec<u8> {
    let copy = |out: &str| NodeProto {
        input: vec!["x".into()],
        output: vec![out.into()],
        name: out.into(),
        op_type: "Identity".into(),
        ..Default::default()
    };
    encoded(GraphProto {
        name: "copies".into(),
        node: vec![copy("first"), copy("second")],
        input: vec![float_info("x", shape)],
        output: vec![float_info("first", shape), float_info("second", shape)],
        ..Default::default()
    })
}

/// Rewrites the ONNX model at `path` with its weights in a file beside it (`<name>.data`, as
/// ONNX's external data), as exporters do for models past protobuf's 2 GB.
pub fn externalise(path: &Path) {
    use candle_onnx::onnx::StringStringEntryProto;
    use candle_onnx::onnx::tensor_proto::DataLocation;
    let mut model =
        ModelProto::decode(std::fs::read(path).expect("model").as_slice()).expect("ONNX");
    let data_name = format!("{}.data", path.file_name().unwrap().to_string_lossy());
    let mut data = Vec::new();
    let graph = model.graph.as_mut().expect("a graph");
    for tensor in &mut graph.initializer {
        let mut bytes = std::mem::take(&mut tensor.raw_data);
        bytes.extend(tensor.float_data.drain(..).flat_map(f32::to_le_bytes));
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: key.into(),
            value,
        };
        tensor.external_data = vec![
            entry("location", data_name.clone()),
            entry("offset", data.len().to_string()),
            entry("length", bytes.len().to_string()),
        ];
        tensor.data_location = DataLocation::External as i32;
        data.extend(bytes);
    }
    std::fs::write(path.with_file_name(&data_name), data).expect("write the data");
    std::fs::write(path, model.encode_to_vec()).expect("write the model");
}

/// Rewrites the ONNX model at `path` so that its output, same shape, is NaN everywhere: the
/// output minus itself, divided by itself.
pub fn poison(path: &Path) {
    let mut model =
        ModelProto::decode(std::fs::read(path).expect("model").as_slice()).expect("ONNX");
    let graph = model.graph.as_mut().expect("a graph");
    let output = graph.output.first_mut().expect("an output");
    let (zero, nan) = (
        format!("{}_zero", output.name),
        format!("{}_nan", output.name),
    );
    let node = |op: &str, input: &str, out: &str| NodeProto {
        op_type: op.into(),
        name: out.into(),
        input: vec![input.into(), input.into()],
        output: vec![out.into()],
        ..Default::default()
    };
    let nodes = [node("Sub", &output.name, &zero), node("Div", &zero, &nan)];
    output.name = nan;
    graph.node.extend(nodes);
    std::fs::write(path, model.encode_to_vec()).expect("write the model");
}
