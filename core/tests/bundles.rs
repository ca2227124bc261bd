//! Reading bundles: a valid bundle cut from the real Fashion-MNIST backbone reads, round-trips
//! and loads; each broken variant is refused with a message naming the file and the key or
//! tensor at fault.

use earlyexit_testkit::cut;

use std::path::Path;

use earlyexit::bundle::{self, Bundle, EXITS_FILE, Exit};
use earlyexit::gate::{GateInput, GateWeights};
use earlyexit::rule::Metric;
use earlyexit::{Classifier, Mode, SessionOptions};
use earlyexit_testkit::cut::{
    CLASSES, SEGMENT_MACS, THRESHOLDS, agreement_gate, gated_bundle, parts, valid_bundle,
    valid_dir, write_bundle,
};

/// Reads and loads the bundle in `dir`; returns the first error's message.
fn error_of(dir: &Path) -> String {
    let bundle = match bundle::read(dir) {
        Ok((bundle, _)) => bundle,
        Err(e) => return e.to_string(),
    };
    match Classifier::open(&bundle, Mode::EarlyExit, SessionOptions::default()) {
        Ok(_) => panic!("{}: the broken bundle was accepted", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `message` names `file` (a path inside the bundle folder `dir`) and every one
/// of `words`.
fn assert_names(message: &str, dir: &Path, file: &str, words: &[&str]) {
    let path = dir.join(file);
    assert!(
        message.contains(&path.display().to_string()),
        "the message does not name {}: {message}",
        path.display()
    );
    for word in words {
        assert!(
            message.contains(word),
            "the message lacks '{word}': {message}"
        );
    }
}

/// A valid bundle whose `exits.yaml` text is edited by `edit`.
fn with_yaml(edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = valid_dir(THRESHOLDS);
    let file = dir.join(EXITS_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = edit(text.clone());
    assert_ne!(text, edited, "the edit changed nothing");
    std::fs::write(&file, edited).unwrap();
    (tmp, dir)
}

/// Replaces exactly one occurrence of `from`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "'{from}' in:\n{text}");
    text.replacen(from, to, 1)
}

/// A valid bundle's files with `exits.yaml` written from `edit(bundle)`.
fn with_bundle(edit: impl FnOnce(&mut Bundle)) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = valid_dir(THRESHOLDS);
    let mut b = valid_bundle(THRESHOLDS);
    edit(&mut b);
    std::fs::write(dir.join(EXITS_FILE), bundle::to_yaml(&b)).unwrap();
    (tmp, dir)
}

#[test]
fn the_valid_bundle_reads_round_trips_and_loads_in_both_modes() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    let (b, warnings) = bundle::read(&dir).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(b.file, dir.join(EXITS_FILE));
    let mut expected = valid_bundle(THRESHOLDS);
    expected.file = dir.join(EXITS_FILE);
    assert_eq!(b, expected);
    assert_eq!(b.segment_macs(), Some(SEGMENT_MACS.to_vec()));
    let names = &b.labels.as_ref().unwrap().names;
    assert_eq!(names.len(), CLASSES);
    assert_eq!(
        (names[0].as_str(), names[9].as_str()),
        ("T-shirt/top", "Ankle boot")
    );

    // to_yaml → read gives the same bundle back.
    let text = bundle::to_yaml(&b);
    std::fs::write(dir.join(EXITS_FILE), &text).unwrap();
    let (again, warnings) = bundle::read(&dir.join(EXITS_FILE)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(again, b);
    assert_eq!(bundle::to_yaml(&again), text);

    for mode in [Mode::EarlyExit, Mode::Full] {
        let c = Classifier::open(&b, mode, SessionOptions::default()).unwrap();
        assert_eq!((c.stages(), c.classes()), (3, CLASSES), "{mode:?}");
        assert_eq!(c.label(7), Some("Sneaker"));
        assert_eq!(c.label(10), None);
    }
}

#[test]
fn a_format_2_bundle_with_gates_reads_round_trips_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let inputs = vec![
        GateInput::Metric(Metric::MaxProb),
        GateInput::AgreesLastFrame,
    ];
    let weights = [
        GateWeights {
            weights: vec![3.25, 0.000_01],
            bias: -2.0,
        },
        GateWeights {
            weights: vec![-1.0 / 3.0, 1e6],
            bias: 0.5,
        },
    ];
    let mut expected = gated_bundle(inputs, weights, [0.9, 0.6]);
    write_bundle(&dir, &expected);
    let text = std::fs::read_to_string(dir.join(EXITS_FILE)).unwrap();
    assert!(text.starts_with("format: earlyexit/2\n"), "{text}");
    assert!(
        text.contains("weights: [3.25, 0.00001]\n") && text.contains("bias: -2\n"),
        "plain decimals: {text}"
    );
    assert!(text.contains(", 1000000]\n"), "plain decimals: {text}");
    let (b, warnings) = bundle::read(&dir).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    expected.file = dir.join(EXITS_FILE);
    assert_eq!(b, expected);
    let c = Classifier::open(&b, Mode::EarlyExit, SessionOptions::default()).unwrap();
    assert_eq!(c.stages(), 3);
}

#[test]
fn a_gate_built_in_code_that_breaks_the_rules_does_not_load() {
    let mut b = gated_bundle(
        vec![GateInput::AgreesLastFrame],
        [agreement_gate(true), agreement_gate(false)],
        THRESHOLDS,
    );
    b.stages[1].exit.as_mut().unwrap().gate = None;
    match Classifier::open(&b, Mode::EarlyExit, SessionOptions::default()) {
        Ok(_) => panic!("an exit without a gate was accepted"),
        Err(e) => assert!(
            e.to_string().contains("stages[1].exit.gate: missing"),
            "{e}"
        ),
    }
}

#[test]
fn unknown_format_is_refused_naming_the_known_formats() {
    let (_tmp, dir) = with_yaml(|t| replace_once(&t, "format: earlyexit/1", "format: earlyexit/4"));
    let e = error_of(&dir);
    assert_names(
        &e,
        &dir,
        EXITS_FILE,
        &[
            "format",
            "earlyexit/4",
            "knows earlyexit/1, earlyexit/2, earlyexit/3",
        ],
    );
}

#[test]
fn a_missing_segment_file_is_named() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::remove_file(dir.join("stage-1.onnx")).unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "stage-1.onnx", &["stages[1].segment"]);
}

#[test]
fn a_missing_head_file_is_named() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::remove_file(dir.join("exit-0.onnx")).unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "exit-0.onnx", &["stages[0].exit.head"]);
}

#[test]
fn an_exit_on_the_last_stage_is_refused() {
    let (_tmp, dir) = with_bundle(|b| {
        b.stages[2].exit = Some(Exit {
            head: "exit-1.onnx".into(),
            threshold: 0.5,
            macs: None,
            gate: None,
        });
    });
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["stages[2].exit", "last stage"]);
}

#[test]
fn a_mean_of_the_wrong_length_is_refused() {
    let (_tmp, dir) = with_bundle(|b| b.input.mean = vec![0.0, 0.0, 0.0]);
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["input.mean", "3 values", "gray"]);
}

#[test]
fn a_std_with_a_zero_is_refused() {
    let (_tmp, dir) = with_bundle(|b| b.input.std = vec![0.0]);
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["input.std[0]", "0"]);
}

#[test]
fn a_mean_beyond_32_bit_floats_is_refused() {
    let (_tmp, dir) = with_yaml(|t| replace_once(&t, "mean: [0]", "mean: [1e39]"));
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["input.mean[0]", "32-bit"]);
}

/// 48 GiB for one frame: refused for the first stage's input size, before any buffer of it
/// is made (a failed allocation would abort the process).
#[test]
fn an_input_size_the_first_stage_does_not_take_is_refused_before_allocating() {
    let (_tmp, dir) = with_yaml(|t| {
        let t = replace_once(&t, "width: 28", "width: 65536");
        let t = replace_once(&t, "height: 28", "height: 65536");
        let t = replace_once(&t, "color: gray", "color: rgb");
        let t = replace_once(&t, "mean: [0]", "mean: [0, 0, 0]");
        replace_once(&t, "std: [255]", "std: [255, 255, 255]")
    });
    let e = error_of(&dir);
    assert_names(&e, &dir, "stage-0.onnx", &["input", "65536"]);
}

#[test]
fn a_byte_order_mark_is_read_past_in_exits_and_labels() {
    let (_tmp, dir) = with_yaml(|t| format!("\u{feff}{t}"));
    let labels = dir.join("labels.txt");
    let text = std::fs::read_to_string(&labels).unwrap();
    std::fs::write(&labels, format!("\u{feff}{text}")).unwrap();
    let (b, _) = bundle::read(&dir).unwrap();
    let names = b.labels.unwrap().names;
    assert_eq!(names[0], text.lines().next().unwrap());
}

#[test]
fn a_name_is_free_text_even_unquoted_numbers_and_booleans() {
    for (written, read) in [("2024", "2024"), ("true", "true"), ("'2024'", "2024")] {
        let (_tmp, dir) = with_yaml(|t| {
            let line = t
                .lines()
                .find(|l| l.starts_with("name:"))
                .unwrap()
                .to_owned();
            replace_once(&t, &line, &format!("name: {written}"))
        });
        let (b, _) = bundle::read(&dir).unwrap();
        assert_eq!(b.name.as_deref(), Some(read));
    }
}

#[test]
fn non_finite_thresholds_are_refused() {
    for bad in [".nan", ".inf", "-.inf", ".NaN", "-.Inf"] {
        let (_tmp, dir) =
            with_yaml(|t| replace_once(&t, "threshold: 0.75", &format!("threshold: {bad}")));
        let e = error_of(&dir);
        assert_names(
            &e,
            &dir,
            EXITS_FILE,
            &["stages[1].exit.threshold", "finite"],
        );
    }
    // A quoted number is a string, not a number.
    let (_tmp, dir) = with_yaml(|t| replace_once(&t, "threshold: 0.5", "threshold: '0.5'"));
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["stages[0].exit.threshold"]);
}

#[test]
fn a_text_file_named_like_a_segment_is_refused_by_name() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::write(dir.join("stage-1.onnx"), "this is not an ONNX model\n").unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "stage-1.onnx", &["stages[1].segment"]);
}

#[test]
fn a_text_file_named_like_a_head_is_refused_by_name() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::write(dir.join("exit-0.onnx"), "not a head either\n").unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "exit-0.onnx", &["stages[0].exit.head"]);
}

#[test]
fn a_segment_with_two_inputs_is_refused() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::write(
        dir.join("stage-1.onnx"),
        cut::two_input_add_model(&[1, 32, 28, 28]),
    )
    .unwrap();
    let e = error_of(&dir);
    assert_names(
        &e,
        &dir,
        "stage-1.onnx",
        &["stages[1].segment", "one input"],
    );
}

#[test]
fn a_head_with_two_outputs_is_refused() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::write(
        dir.join("exit-0.onnx"),
        cut::two_output_identity_model(&[1, 32, 28, 28]),
    )
    .unwrap();
    let e = error_of(&dir);
    assert_names(
        &e,
        &dir,
        "exit-0.onnx",
        &["stages[0].exit.head", "one output, found 2"],
    );
}

#[test]
fn a_segment_that_does_not_take_the_previous_output_is_named_with_its_tensor() {
    // Stage 1 pointed at stage 2's segment: it wants [N, 64, 14, 14], gets [1, 32, 28, 28].
    let (_tmp, dir) = with_bundle(|b| b.stages[1].segment = "stage-2.onnx".into());
    let e = error_of(&dir);
    let tensor = &parts().segments[2].input;
    assert_eq!(tensor, cut::CUTS[1]);
    assert_names(&e, &dir, "stage-2.onnx", &[&format!("tensor '{tensor}'")]);

    // Stages 0 and 1 swapped: stage-1.onnx gets the frame.
    let (_tmp, dir) = with_bundle(|b| b.stages.swap(0, 1));
    let e = error_of(&dir);
    let tensor = &parts().segments[1].input;
    assert_names(&e, &dir, "stage-1.onnx", &[&format!("tensor '{tensor}'")]);
}

#[test]
fn a_head_that_does_not_take_its_segment_output_is_named() {
    // Exit 0 pointed at exit 1's head, which wants 64 channels, not 32.
    let (_tmp, dir) =
        with_bundle(|b| b.stages[0].exit.as_mut().unwrap().head = "exit-1.onnx".into());
    let e = error_of(&dir);
    assert_names(&e, &dir, "exit-1.onnx", &["tensor 'input'"]);
}

#[test]
fn labels_of_the_wrong_length_are_refused() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    let names = &parts().labels;
    std::fs::write(dir.join("labels.txt"), names[..9].join("\n") + "\n").unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "labels.txt", &["labels", "9", "10"]);
    // One line too many, too.
    std::fs::write(dir.join("labels.txt"), names.join("\n") + "\nExtra\n").unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "labels.txt", &["labels", "11"]);
}

#[test]
fn a_missing_labels_file_is_named() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    std::fs::remove_file(dir.join("labels.txt")).unwrap();
    let e = error_of(&dir);
    assert_names(&e, &dir, "labels.txt", &["labels"]);
}

#[test]
fn each_missing_input_key_is_named() {
    // Left out, or given no value: either way it is missing.
    let left_out =
        ["layout", "width", "height", "color", "mean", "std"].map(|k| (k, String::new()));
    let no_value = ["layout", "color", "mean"].map(|k| (k, format!("  {k}: ~\n")));
    for (key, edited) in left_out.into_iter().chain(no_value) {
        let (_tmp, dir) = with_yaml(|t| {
            let line = t
                .lines()
                .find(|l| l.starts_with(&format!("  {key}:")))
                .unwrap()
                .to_owned();
            replace_once(&t, &format!("{line}\n"), &edited)
        });
        let e = error_of(&dir);
        assert_names(&e, &dir, EXITS_FILE, &[&format!("input.{key}"), "missing"]);
    }
    let (_tmp, dir) = with_yaml(|t| {
        let start = t.find("input:").unwrap();
        let end = t.find("labels:").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    });
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["input", "missing"]);
}

#[test]
fn output_on_a_stage_other_than_the_last_is_refused() {
    let (_tmp, dir) = with_yaml(|t| {
        replace_once(
            &t,
            "  - segment: stage-0.onnx\n",
            "  - segment: stage-0.onnx\n    output: logits\n",
        )
    });
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["stages[0].output", "last stage"]);
}

#[test]
fn an_unknown_metric_is_refused_naming_the_known_ones() {
    let (_tmp, dir) = with_yaml(|t| replace_once(&t, "metric: max-prob", "metric: top-5"));
    let e = error_of(&dir);
    assert_names(
        &e,
        &dir,
        EXITS_FILE,
        &["metric", "top-5", "max-prob", "margin", "entropy"],
    );
}

#[test]
fn an_empty_stage_list_is_refused() {
    let (_tmp, dir) = with_yaml(|t| {
        let start = t.find("stages:").unwrap();
        format!("{}stages: []\n", &t[..start])
    });
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["stages", "at least one"]);
    let (_tmp, dir) = with_yaml(|t| {
        let start = t.find("stages:").unwrap();
        t[..start].to_owned()
    });
    let e = error_of(&dir);
    assert_names(&e, &dir, EXITS_FILE, &["stages", "missing"]);
}

#[test]
fn unknown_keys_are_warned_about_and_ignored() {
    let (_tmp, dir) = with_yaml(|t| {
        let t = replace_once(
            &t,
            "format: earlyexit/1\n",
            "format: earlyexit/1\ncolour: red\n",
        );
        let t = replace_once(&t, "  layout: nchw\n", "  layout: nchw\n  crop: center\n");
        replace_once(
            &t,
            "      threshold: 0.5\n",
            "      threshold: 0.5\n      bias: 3\n",
        )
    });
    let (b, warnings) = bundle::read(&dir).unwrap();
    let mut expected = valid_bundle(THRESHOLDS);
    expected.file = dir.join(EXITS_FILE);
    assert_eq!(b, expected);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let file = dir.join(EXITS_FILE).display().to_string();
    for (w, key) in warnings
        .iter()
        .zip(["colour", "input.crop", "stages[0].exit.bias"])
    {
        assert!(
            w.contains(&file) && w.contains(key) && w.contains("unknown"),
            "{w}"
        );
    }
    Classifier::open(&b, Mode::EarlyExit, SessionOptions::default()).unwrap();
}

#[test]
fn an_exponent_threshold_is_read_and_written_back_as_a_plain_decimal() {
    let (_tmp, dir) = with_yaml(|t| replace_once(&t, "threshold: 0.5\n", "threshold: 1e-5\n"));
    let (b, warnings) = bundle::read(&dir).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(b.stages[0].exit.as_ref().unwrap().threshold, 1e-5);
    let text = bundle::to_yaml(&b);
    assert!(text.contains("threshold: 0.00001\n"), "{text}");
    for value in text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("threshold:"))
    {
        assert!(!value.contains(['e', 'E']), "an exponent in '{value}'");
    }
    std::fs::write(dir.join(EXITS_FILE), &text).unwrap();
    assert_eq!(bundle::read(&dir).unwrap().0, b);
    // Upper-case exponents and signed forms too.
    let (_tmp, dir) = with_yaml(|t| replace_once(&t, "threshold: 0.75\n", "threshold: 2.5E+0\n"));
    let (b, _) = bundle::read(&dir).unwrap();
    assert_eq!(b.stages[1].exit.as_ref().unwrap().threshold, 2.5);
}

#[test]
fn a_missing_exits_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = bundle::read(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains(&tmp.path().join(EXITS_FILE).display().to_string()),
        "{e}"
    );
    let e = bundle::read(&tmp.path().join("other.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("other.yaml"), "{e}");
}

#[test]
fn write_atomically_replaces_only_a_bundle_or_an_empty_folder() {
    let (tmp, dir) = valid_dir(THRESHOLDS);
    let b = valid_bundle([0.1, 0.2]);
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("holiday.jpg"), "keep me").unwrap();
    let e = bundle::write_atomically(&photos, &b, &[]).unwrap_err();
    assert!(e.to_string().contains("no exits.yaml"), "{e}");
    assert!(photos.join("holiday.jpg").is_file());
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    assert!(bundle::write_atomically(&file, &b, &[]).is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    write_bundle(&empty, &b);
    assert!(bundle::read(&empty).is_ok());
    assert!(bundle::check_replaceable(&dir).is_ok());
}

#[test]
fn write_atomically_replaces_an_existing_bundle_and_keeps_what_it_did_not_write() {
    let (_tmp, dir) = valid_dir(THRESHOLDS);
    // The bundle's models, as a writer passes them.
    let models: Vec<bundle::File> = [
        "stage-0.onnx",
        "stage-1.onnx",
        "stage-2.onnx",
        "exit-0.onnx",
        "exit-1.onnx",
    ]
    .into_iter()
    .map(|n| bundle::File::new(n, std::fs::read(dir.join(n)).unwrap()))
    .collect();
    let with = |extra: &[(&str, &str)]| -> Vec<bundle::File> {
        let mut files = models.clone();
        files.extend(
            extra
                .iter()
                .map(|(n, t)| bundle::File::new(*n, t.as_bytes().to_vec())),
        );
        files
    };
    let first = with(&[("report.md", "first"), ("baselines/even/notes.md", "first")]);
    bundle::write_atomically(&dir, &valid_bundle(THRESHOLDS), &first).unwrap();
    // What the user put beside the bundle.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(dir.join("myclips")).unwrap();
    std::fs::write(dir.join("myclips/a.mkv"), "mine").unwrap();
    // A writer interrupted long ago, by a process that is gone.
    let abandoned = dir
        .parent()
        .unwrap()
        .join(".earlyexit-bundle-4000000000-x1y2z3");
    std::fs::create_dir(&abandoned).unwrap();
    let mut b = valid_bundle([0.1, 0.2]);
    b.name = None;
    let second = with(&[("report.md", "second")]);
    bundle::write_atomically(&dir, &b, &second).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("myclips/a.mkv")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        "second"
    );
    assert!(
        !dir.join("baselines").exists(),
        "the first write's own files go"
    );
    let (read_back, _) = bundle::read(&dir).unwrap();
    assert_eq!(read_back.stages[1].exit.as_ref().unwrap().threshold, 0.2);
    assert_eq!(read_back.name, None);
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".earlyexit-bundle-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_folder_that_cannot_be_written_is_refused_before_any_work() {
    let e = bundle::check_replaceable(Path::new("/proc/earlyexit-test/bundle")).unwrap_err();
    assert!(e.to_string().contains("cannot write in /proc"), "{e}");
}
