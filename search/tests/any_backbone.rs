//! Any backbone: a small one built here that takes NHWC BGR input and ends in a softmax goes
//! through the search and the element end to end.

use earlyexit_testkit::cut;

use std::path::Path;
use std::process::Command;

use candle_onnx::onnx::tensor_proto::DataType;
use candle_onnx::onnx::{AttributeProto, GraphProto, NodeProto, TensorProto, attribute_proto};
use earlyexit_testkit::footage;

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute: attributes,
        ..Default::default()
    }
}

/// Deterministic weights in -0.5..0.5.
fn weights(name: &str, dims: &[i64], seed: u32) -> TensorProto {
    let n: i64 = dims.iter().product();
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let values = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 1000) as f32 / 1000.0 - 0.5
        })
        .collect();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: values,
        ..Default::default()
    }
}

/// input [N,16,16,3] NHWC → Transpose → 3 Conv+Relu → GlobalAveragePool → Flatten → Gemm →
/// Softmax: probabilities over 4 classes.
fn nhwc_softmax_backbone() -> Vec<u8> {
    let conv = |x: &str, w: &str, b: &str, out: &str, stride: i64| {
        node(
            "Conv",
            &[x, w, b],
            out,
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("pads", &[1, 1, 1, 1]),
                ints("strides", &[stride, stride]),
            ],
        )
    };
    let graph = GraphProto {
        name: "nhwc-softmax".into(),
        node: vec![
            node(
                "Transpose",
                &["input"],
                "nchw",
                vec![ints("perm", &[0, 3, 1, 2])],
            ),
            conv("nchw", "w1", "b1", "c1", 1),
            node("Relu", &["c1"], "r1", vec![]),
            conv("r1", "w2", "b2", "c2", 2),
            node("Relu", &["c2"], "r2", vec![]),
            conv("r2", "w3", "b3", "c3", 1),
            node("Relu", &["c3"], "r3", vec![]),
            node("GlobalAveragePool", &["r3"], "gap", vec![]),
            node("Flatten", &["gap"], "flat", vec![]),
            node(
                "Gemm",
                &["flat", "wf", "bf"],
                "logits",
                vec![int("transB", 1)],
            ),
            node("Softmax", &["logits"], "probabilities", vec![]),
        ],
        initializer: vec![
            weights("w1", &[8, 3, 3, 3], 1),
            weights("b1", &[8], 2),
            weights("w2", &[16, 8, 3, 3], 3),
            weights("b2", &[16], 4),
            weights("w3", &[16, 16, 3, 3], 5),
            weights("b3", &[16], 6),
            weights("wf", &[4, 16], 7),
            weights("bf", &[4], 8),
        ],
        input: vec![cut::float_info("input", &[1, 16, 16, 3])],
        output: vec![cut::float_info("probabilities", &[1, 4])],
        ..Default::default()
    };
    cut::encoded(graph)
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `earlyexit-search ARGS`, checks it succeeded, and returns what it printed.
fn search_ok(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `evaluate --json` of `bundle` on `clip`, timing the uncut `backbone` beside it.
fn evaluate_with_backbone(bundle: &Path, clip: &Path, backbone: &Path) -> serde_json::Value {
    let stdout = search_ok(&[
        "evaluate",
        "--model",
        &text(bundle),
        "--footage",
        &text(clip),
        "--backbone",
        &text(backbone),
        "--runs",
        "3",
        "--json",
    ]);
    serde_json::from_slice(&stdout).unwrap()
}

#[test]
fn an_nhwc_bgr_softmax_backbone_goes_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let backbone = dir.path().join("nhwc.onnx");
    std::fs::write(&backbone, nhwc_softmax_backbone()).unwrap();
    let bundle = dir.path().join("bundle");
    let clip = footage("bikes-tail.mkv");
    search_ok(&[
        "search",
        "--backbone",
        &text(&backbone),
        "--color",
        "bgr",
        "--footage",
        &text(&clip),
        "--target-agreement",
        "0.9",
        "--seed",
        "3",
        "--out",
        &text(&bundle),
    ]);
    let yaml = std::fs::read_to_string(bundle.join("exits.yaml")).unwrap();
    for expected in [
        "layout: nhwc",
        "color: bgr",
        "output: probabilities",
        "width: 16",
    ] {
        assert!(yaml.contains(expected), "{expected} missing from\n{yaml}");
    }

    // The element runs it on real footage and puts meta on every frame.
    let meta = earlyexit_testkit::gst::element_meta(&clip, &bundle);
    assert_eq!(meta.len(), 75);
    for info in meta {
        assert!(info.class_id >= 0 && info.class_id < 4);
        assert!(info.confidence > 0.0 && info.confidence <= 1.0);
    }

    // evaluate agrees with the uncut backbone it came from on what "full" means.
    let json = evaluate_with_backbone(&bundle, &clip, &backbone);
    assert_eq!(json["frames"], 75);
    assert!(json["agreement"].as_f64().unwrap() > 0.5, "{json}");
}

/// The same backbone, exported with its height and width left open (as `dynamic_axes` does).
fn open_size_backbone() -> Vec<u8> {
    use candle_onnx::onnx::tensor_shape_proto::dimension::Value;
    use candle_onnx::onnx::type_proto;
    let path = Path::new("open-size.onnx");
    let mut model = earlyexit_graph::decode_model(&nhwc_softmax_backbone(), path).unwrap();
    let input = &mut model.graph.as_mut().unwrap().input[0];
    let Some(type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("the input is a tensor");
    };
    let dims = &mut t.shape.as_mut().unwrap().dim;
    dims[1].value = Some(Value::DimParam("height".into()));
    dims[2].value = Some(Value::DimParam("width".into()));
    earlyexit_graph::encode_model(&model)
}

#[test]
fn a_backbone_that_leaves_its_size_open_takes_it_from_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let backbone = dir.path().join("open.onnx");
    std::fs::write(&backbone, open_size_backbone()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .args(["inspect", "--backbone", &text(&backbone)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--width"),
        "{stderr}"
    );

    let bundle = dir.path().join("bundle");
    let clip = footage("bikes-tail.mkv");
    let size = ["--width", "20", "--height", "12"];
    let backbone_arg = ["--backbone", &text(&backbone)];
    search_ok(&[&["inspect"][..], &backbone_arg, &size].concat());
    search_ok(
        &[
            &["search"][..],
            &backbone_arg,
            &size,
            &[
                "--color",
                "bgr",
                "--footage",
                &text(&clip),
                "--max-frames",
                "40",
                "--target-agreement",
                "0.9",
                "--out",
                &text(&bundle),
            ],
        ]
        .concat(),
    );
    let yaml = std::fs::read_to_string(bundle.join("exits.yaml")).unwrap();
    assert!(
        yaml.contains("width: 20") && yaml.contains("height: 12"),
        "{yaml}"
    );
    let meta = earlyexit_testkit::gst::element_meta(&clip, &bundle);
    assert_eq!(meta.len(), 75);
    // The uncut backbone, open size and all, is fed frames of the bundle's size.
    let json = evaluate_with_backbone(&bundle, &clip, &backbone);
    // Each run's time, and their median as the figure.
    for (median, runs) in [
        ("ms_per_frame", "ms_per_frame_runs"),
        ("ms_per_frame_full", "ms_per_frame_full_runs"),
    ] {
        let mut times: Vec<f64> = json[runs]
            .as_array()
            .unwrap_or_else(|| panic!("{runs}: {json}"))
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(times.len(), 3, "{json}");
        times.sort_by(f64::total_cmp);
        assert_eq!(json[median].as_f64(), Some(times[1]), "{json}");
    }
}
