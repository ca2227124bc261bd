//! Exit bundles (`exits.yaml` plus the ONNX files it names): the types, a validating reader and
//! a writer. The format is documented for users in `docs/bundle-format.md`.
//!
//! The bundle only reads and writes the exit rule's types ([`crate::rule`], [`crate::gate`])
//! and the input spec ([`crate::input`]): what they mean lives with them.

mod check;
mod error;
mod files;
mod read;
mod types;
mod words;
mod write;

pub use error::BundleError;
pub use read::{read, read_labels};
pub use types::{Bundle, EXITS_FILE, Exit, Format, Labels, Measure, Promise, Stage};
pub use words::Word;
pub use write::{File, check_replaceable, own_files, to_yaml, write_atomically};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Gate, GateInput, GateWeights};
    use crate::input::{Color, InputSpec, Layout};
    use crate::rule::{Metric, Output};

    /// A bundle folder whose ONNX files are empty placeholders (the reader only checks that
    /// they exist), with `yaml` as its `exits.yaml`.
    fn folder(yaml: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in ["s0.onnx", "s1.onnx", "h0.onnx"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::write(dir.path().join(EXITS_FILE), yaml).unwrap();
        dir
    }

    const VALID: &str = "\
format: earlyexit/1
input: { layout: nhwc, width: 224, height: 160, color: bgr, mean: [127, 127.5, 0.25], std: [128, 1, 0.5] }
metric: entropy
promise: { measure: accuracy, target: 0.95, confidence: 0.9, frames: 1200 }
stages:
  - segment: s0.onnx
    macs: 100
    exit: { head: h0.onnx, threshold: 0.3, macs: 7 }
  - segment: s1.onnx
    output: probabilities
";

    fn error(yaml: &str) -> String {
        let dir = folder(yaml);
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.file, dir.path().join(EXITS_FILE), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: {}: ", e.file.display(), e.key)),
            "{text}"
        );
        text
    }

    #[test]
    fn every_key_is_read() {
        let dir = folder(VALID);
        let (b, warnings) = read(&dir.path().join(EXITS_FILE)).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(b.dir(), dir.path());
        assert_eq!(
            b.input,
            InputSpec {
                layout: Layout::Nhwc,
                width: 224,
                height: 160,
                color: Color::Bgr,
                mean: vec![127.0, 127.5, 0.25],
                std: vec![128.0, 1.0, 0.5],
            }
        );
        assert_eq!(b.input.shape(), [1, 160, 224, 3]);
        assert_eq!(b.metric, Metric::Entropy);
        assert_eq!(b.output, Output::Probabilities);
        assert_eq!(
            b.promise,
            Some(Promise {
                measure: Measure::Accuracy,
                target: 0.95,
                confidence: 0.9,
                frames: 1200
            })
        );
        assert_eq!(b.name, None);
        assert_eq!(b.labels, None);
        assert_eq!(b.segment_macs(), None);
        assert_eq!(
            b.stages[0].exit,
            Some(Exit {
                head: "h0.onnx".into(),
                threshold: 0.3,
                macs: Some(7),
                gate: None,
            })
        );
        assert_eq!(b.resolve("s1.onnx"), dir.path().join("s1.onnx"));
    }

    #[test]
    fn defaults_apply_when_optional_keys_are_absent() {
        let dir = folder(
            "format: earlyexit/1\ninput: { layout: nchw, width: 2, height: 3, color: gray, mean: [0], std: [1] }\nstages: [ { segment: s0.onnx } ]\n",
        );
        let (b, _) = read(dir.path()).unwrap();
        assert_eq!(b.metric, Metric::MaxProb);
        assert_eq!(b.output, Output::Logits);
        assert_eq!(b.input.shape(), [1, 1, 3, 2]);
        assert_eq!(b.stages.len(), 1);
    }

    #[test]
    fn to_yaml_round_trips_names_that_need_quoting_and_awkward_numbers() {
        let dir = folder(VALID);
        let (mut b, _) = read(dir.path()).unwrap();
        b.name = Some("a: b # not a comment, 'quoted' \"too\"".into());
        b.stages[0].exit.as_mut().unwrap().threshold = 1e-7;
        b.input.std = vec![1e-3, 3.0e5, 0.1];
        b.input.mean = vec![-0.0, 1.0 / 3.0, 255.0];
        let text = to_yaml(&b);
        assert!(!text.contains("e-") && !text.contains("e+"), "{text}");
        assert!(text.contains("threshold: 0.0000001\n"), "{text}");
        std::fs::write(dir.path().join(EXITS_FILE), &text).unwrap();
        let (again, warnings) = read(dir.path()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(again, b);
    }

    #[test]
    fn promise_values_are_checked() {
        let e = error(&VALID.replace("target: 0.95", "target: 1.5"));
        assert!(e.contains("promise.target") && e.contains("0..1"), "{e}");
        let e = error(&VALID.replace("measure: accuracy", "measure: recall"));
        assert!(
            e.contains("promise.measure") && e.contains("agreement, accuracy"),
            "{e}"
        );
        let e = error(&VALID.replace("frames: 1200", "frames: -3"));
        assert!(e.contains("promise.frames"), "{e}");
        let e = error(&VALID.replace(", frames: 1200", ""));
        assert!(e.contains("promise.frames: missing"), "{e}");
    }

    #[test]
    fn sizes_counts_and_words_are_checked() {
        let e = error(&VALID.replace("width: 224", "width: 0"));
        assert!(e.contains("input.width"), "{e}");
        let e = error(&VALID.replace("height: 160", "height: 12.5"));
        assert!(e.contains("input.height"), "{e}");
        // A whole number in exponent form is still a whole number.
        let dir = folder(
            &VALID
                .replace("height: 160", "height: 1.6e2")
                .replace("macs: 100", "macs: 1e2"),
        );
        let (b, _) = read(dir.path()).unwrap();
        assert_eq!((b.input.height, b.stages[0].macs), (160, Some(100)));
        let e = error(&VALID.replace("macs: 100", "macs: 1.5e0"));
        assert!(e.contains("stages[0].macs"), "{e}");
        let e = error(&VALID.replace("macs: 100", "macs: -100"));
        assert!(e.contains("stages[0].macs"), "{e}");
        let e = error(&VALID.replace("macs: 7", "macs: lots"));
        assert!(e.contains("stages[0].exit.macs"), "{e}");
        let e = error(&VALID.replace("layout: nhwc", "layout: chw"));
        assert!(
            e.contains("input.layout") && e.contains("nchw, nhwc"),
            "{e}"
        );
        let e = error(&VALID.replace("color: bgr", "color: yuv"));
        assert!(
            e.contains("input.color") && e.contains("rgb, bgr, gray"),
            "{e}"
        );
        let e = error(&VALID.replace("output: probabilities", "output: scores"));
        assert!(
            e.contains("stages[1].output") && e.contains("logits, probabilities"),
            "{e}"
        );
        let e = error(&VALID.replace("mean: [127, 127.5, 0.25]", "mean: [127, .nan, 0]"));
        assert!(e.contains("input.mean[1]"), "{e}");
        let e = error(&VALID.replace("std: [128, 1, 0.5]", "std: [128, 1, 0.0]"));
        assert!(e.contains("input.std[2]"), "{e}");
        let e = error(&VALID.replace(
            "    exit: { head: h0.onnx, threshold: 0.3, macs: 7 }\n",
            "    exit: { head: h0.onnx }\n",
        ));
        assert!(e.contains("stages[0].exit.threshold: missing"), "{e}");
        let e = error(&VALID.replace("  - segment: s1.onnx\n", "  - macs: 3\n"));
        assert!(e.contains("stages[1].segment: missing"), "{e}");
        let e = error("format: earlyexit/1\nstages: 3\n");
        assert!(e.contains("input: missing"), "{e}");
        let e = error("- just\n- a list\n");
        assert!(e.contains("(document)"), "{e}");
        let e = error("format: [earlyexit/1\n");
        assert!(e.contains("not valid YAML"), "{e}");
        let e = error(&VALID.replace("format: earlyexit/1\n", ""));
        assert!(e.contains("format: missing"), "{e}");
    }

    const VALID_V2: &str = "\
format: earlyexit/2
input: { layout: nchw, width: 28, height: 28, color: gray, mean: [0], std: [255] }
metric: margin
gate:
  inputs: [agrees-last-frame, max-prob, entropy, agrees-previous-exit, margin]
stages:
  - segment: s0.onnx
    exit:
      head: h0.onnx
      threshold: 0.8
      gate: { weights: [1.5, 0.2, -0.7, 2, 1.1e-3], bias: -3.2 }
  - segment: s1.onnx
";

    #[test]
    fn format_2_gates_are_read_and_round_trip() {
        let dir = folder(VALID_V2);
        let (b, warnings) = read(dir.path()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(b.format, Format::V2);
        assert_eq!(b.metric, Metric::Margin);
        assert_eq!(
            b.gate,
            Some(Gate {
                inputs: vec![
                    GateInput::AgreesLastFrame,
                    GateInput::Metric(Metric::MaxProb),
                    GateInput::Metric(Metric::Entropy),
                    GateInput::AgreesPreviousExit,
                    GateInput::Metric(Metric::Margin),
                ]
            })
        );
        let exit = b.stages[0].exit.as_ref().unwrap();
        assert_eq!(exit.threshold, 0.8);
        assert_eq!(
            exit.gate,
            Some(GateWeights {
                weights: vec![1.5, 0.2, -0.7, 2.0, 0.0011],
                bias: -3.2
            })
        );
        let text = to_yaml(&b);
        assert!(text.starts_with("format: earlyexit/2\n"), "{text}");
        assert!(
            text.contains(
                "gate:\n  inputs: [agrees-last-frame, max-prob, entropy, agrees-previous-exit, margin]\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "      gate:\n        weights: [1.5, 0.2, -0.7, 2, 0.0011]\n        bias: -3.2\n"
            ),
            "{text}"
        );
        std::fs::write(dir.path().join(EXITS_FILE), &text).unwrap();
        let (again, warnings) = read(dir.path()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(again, b);
    }

    #[test]
    fn format_2_without_a_gate_reads_like_format_1() {
        let dir = folder(VALID);
        let (v1, _) = read(dir.path()).unwrap();
        let (v2, _) = read_text(
            &dir,
            &VALID.replace("format: earlyexit/1", "format: earlyexit/2"),
        );
        assert_eq!(v2.format, Format::V2);
        assert_eq!(v2.gate, None);
        assert_eq!(
            Bundle {
                format: Format::V1,
                ..v2
            },
            v1
        );
    }

    fn read_text(dir: &tempfile::TempDir, yaml: &str) -> (Bundle, Vec<String>) {
        std::fs::write(dir.path().join(EXITS_FILE), yaml).unwrap();
        read(dir.path()).unwrap()
    }

    #[test]
    fn gate_errors_name_the_key() {
        let e = error(&VALID_V2.replace("max-prob, entropy", "max-prob, confidence"));
        // Every input is offered, in the order the format lists them: each metric, then the
        // two agreements.
        let words: Vec<&str> = GateInput::ALL.iter().map(|i| i.word()).collect();
        assert!(
            words.starts_with(&["max-prob", "margin", "entropy"])
                && words.ends_with(&["agrees-previous-exit", "agrees-last-frame"])
        );
        assert!(
            e.contains(&format!(
                "gate.inputs[2]: 'confidence' is not one of {}",
                words.join(", ")
            )),
            "{e}"
        );
        let e = error(&VALID_V2.replace("entropy, agrees-previous-exit", "entropy, max-prob"));
        assert!(
            e.contains("gate.inputs[3]: 'max-prob' is listed twice"),
            "{e}"
        );
        let e = error(&VALID_V2.replace(
            "[agrees-last-frame, max-prob, entropy, agrees-previous-exit, margin]",
            "[]",
        ));
        assert!(e.contains("gate.inputs: needs at least one input"), "{e}");
        let e = error(&VALID_V2.replace("  inputs: [", "  input: ["));
        assert!(e.contains("gate.inputs: missing"), "{e}");
        let e = error(&VALID_V2.replace("2, 1.1e-3]", "2]"));
        assert!(
            e.contains("stages[0].exit.gate.weights: has 4 values; gate.inputs has 5"),
            "{e}"
        );
        let e = error(&VALID_V2.replace("-0.7", ".inf"));
        assert!(
            e.contains("stages[0].exit.gate.weights[2]: expected a finite number"),
            "{e}"
        );
        let e = error(&VALID_V2.replace("bias: -3.2", "bias: .nan"));
        assert!(
            e.contains("stages[0].exit.gate.bias: must be a finite number"),
            "{e}"
        );
        let e = error(&VALID_V2.replace(", bias: -3.2", ""));
        assert!(e.contains("stages[0].exit.gate.bias: missing"), "{e}");
        // Gates on every exit, or on none.
        let no_top = VALID_V2.replace(
            "gate:\n  inputs: [agrees-last-frame, max-prob, entropy, agrees-previous-exit, margin]\n",
            "",
        );
        let e = error(&no_top);
        assert!(
            e.contains("stages[0].exit.gate: the bundle has no top-level gate"),
            "{e}"
        );
        let e = error(&VALID_V2.replace(
            "      gate: { weights: [1.5, 0.2, -0.7, 2, 1.1e-3], bias: -3.2 }\n",
            "",
        ));
        assert!(e.contains("stages[0].exit.gate: missing"), "{e}");
        // Format 1 knows no gates, at the top or on an exit: like any unknown key, they are
        // named in a warning and ignored.
        let dir = folder(&VALID_V2.replace("earlyexit/2", "earlyexit/1"));
        let (b, warnings) = read(dir.path()).unwrap();
        assert!(b.gate.is_none(), "{b:?}");
        assert!(b.stages[0].exit.as_ref().is_some_and(|e| e.gate.is_none()));
        for key in [": gate:", ": stages[0].exit.gate:"] {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains(key) && w.ends_with("ignored")),
                "{key} {warnings:?}"
            );
        }
        let e = error(&VALID.replace("earlyexit/1", "earlyexit/9"));
        assert!(
            e.contains(
                "format: unknown format 'earlyexit/9'; this reader knows earlyexit/1, earlyexit/2, earlyexit/3"
            ),
            "{e}"
        );
    }

    #[test]
    fn format_3_reads_and_writes_the_stream_rule_and_earlier_formats_ignore_it() {
        use crate::reuse::{Detector, ReuseRule};
        let v3 = VALID.replace("earlyexit/1", "earlyexit/3").replace(
            "stages:\n",
            "reuse: { detector: shape, grid: 8, threshold: 0.25, max-age: 30 }\nstages:\n",
        );
        let dir = folder(&v3);
        let (b, warnings) = read(dir.path()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let rule = ReuseRule {
            detector: Detector::Shape,
            grid: 8,
            threshold: 0.25,
            max_age: 30,
        };
        assert_eq!(b.reuse, Some(rule));
        let text = to_yaml(&b);
        assert!(text.starts_with("format: earlyexit/3\n"), "{text}");
        let again = folder(&text);
        assert_eq!(read(again.path()).unwrap().0.reuse, b.reuse);
        // Every key is required and checked, naming the key.
        for (from, to, says) in [
            ("detector: shape, ", "", "reuse.detector: missing"),
            (
                "grid: 8",
                "grid: 0",
                "reuse.grid: must lie in 1..=64, found 0",
            ),
            (
                "max-age: 30",
                "max-age: -1",
                "reuse.max-age: expected a whole number",
            ),
            (
                "threshold: 0.25",
                "threshold: .nan",
                "reuse.threshold: must be a finite",
            ),
            ("shape", "edges", "reuse.detector: "),
        ] {
            let e = error(&v3.replacen(from, to, 1));
            assert!(e.contains(says), "{from} -> {to}: {e}");
        }
        // Format 2 does not know the rule: warned about and ignored, as every unknown key.
        let dir = folder(&v3.replace("earlyexit/3", "earlyexit/2"));
        let (b, warnings) = read(dir.path()).unwrap();
        assert!(b.reuse.is_none());
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(": reuse: unknown key in format earlyexit/2")),
            "{warnings:?}"
        );
        // Built in code, a rule needs format 3.
        let mut b = read(folder(&v3).path()).unwrap().0;
        b.format = Format::V2;
        assert!(
            b.check()
                .unwrap_err()
                .to_string()
                .contains("reuse: needs format: earlyexit/3")
        );
    }

    #[test]
    fn a_metric_added_after_format_1_needs_format_2() {
        let later = Metric::ALL
            .into_iter()
            .filter(|m| !Format::V1.metrics().contains(m));
        let mut checked = 0;
        for metric in later {
            let yaml = VALID.replace("metric: entropy", &format!("metric: {}", metric.word()));
            let e = error(&yaml);
            assert!(
                e.contains(&format!(
                    "metric: '{}' needs format: earlyexit/2",
                    metric.word()
                )),
                "{e}"
            );
            let dir = folder(&yaml.replace("earlyexit/1", "earlyexit/2"));
            let (b, _) = read(dir.path()).unwrap();
            assert_eq!(b.metric, metric);
            checked += 1;
        }
        // Format 1's own metrics stay format 1's.
        assert_eq!(Format::V1.metrics().len() + checked, Metric::COUNT);
        for metric in Metric::ALL {
            let first = Format::naming(metric);
            assert!(first.metrics().contains(&metric), "{metric:?}");
            assert_eq!(first == Format::V1, Format::V1.metrics().contains(&metric));
        }
        assert_eq!(Format::V2.metrics(), Metric::ALL);
    }

    #[test]
    fn gate_rules_hold_for_bundles_built_in_code() {
        let dir = folder(VALID_V2);
        let (mut b, _) = read(dir.path()).unwrap();
        b.stages[0]
            .exit
            .as_mut()
            .unwrap()
            .gate
            .as_mut()
            .unwrap()
            .bias = f64::NAN;
        let e = b.check_gates().unwrap_err();
        assert_eq!(e.key, "stages[0].exit.gate.bias");
        b.format = Format::V1;
        assert_eq!(b.check_gates().unwrap_err().key, "gate");
    }

    #[test]
    fn labels_are_one_per_line_with_or_without_a_final_newline() {
        let yaml = VALID.replace("metric: entropy", "labels: names.txt\nmetric: entropy");
        let dir = folder(&yaml);
        for text in ["cat\r\ndog\r\n", "cat\ndog", "cat\ndog\n"] {
            std::fs::write(dir.path().join("names.txt"), text).unwrap();
            let (b, _) = read(dir.path()).unwrap();
            let labels = b.labels.unwrap();
            assert_eq!(labels.file, "names.txt");
            assert_eq!(labels.names, ["cat", "dog"], "{text:?}");
        }
    }
}
