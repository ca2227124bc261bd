//! Broken bundles through the element: each one posts an ERROR when the pipeline starts, naming
//! the file and the key or tensor at fault, and the process goes on.

use earlyexit_testkit::cut;

use std::path::{Path, PathBuf};
use std::process::Command;

use gst::prelude::*;

/// Starts `videotestsrc ! earlyexit model=MODEL ! fakesink` and returns the ERROR's text.
fn start_error(model: &Path) -> String {
    earlyexit_testkit::gst::init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8,width=28,height=28 ! earlyexit model=\"{}\" ! fakesink",
        model.display()
    ))
    .unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("a message within 30 s");
    pipeline.set_state(gst::State::Null).unwrap();
    match message.view() {
        gst::MessageView::Error(err) => {
            assert_eq!(
                err.src().map(|s| s.type_().name()),
                Some("GstEarlyExit"),
                "the element itself posts the error"
            );
            format!("{} {}", err.error(), err.debug().unwrap_or_default())
        }
        _ => panic!(
            "{}: expected an ERROR, the pipeline ran to the end",
            model.display()
        ),
    }
}

/// A valid bundle, changed by `edit` (on its folder), and what the error must contain.
fn case(
    edit: impl FnOnce(&Path) -> (PathBuf, &'static str),
) -> (tempfile::TempDir, PathBuf, PathBuf, &'static str) {
    let (tmp, dir) = cut::valid_dir([0.5, 0.75]);
    let (file, key) = edit(&dir);
    (tmp, dir, file, key)
}

fn replace_in_yaml(dir: &Path, from: &str, to: &str) -> PathBuf {
    let path = dir.join("exits.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn every_broken_bundle_posts_an_error_naming_file_and_key() {
    let cases = vec![
        case(|d| {
            (
                replace_in_yaml(d, "format: earlyexit/1", "format: earlyexit/9"),
                "format",
            )
        }),
        case(|d| {
            std::fs::remove_file(d.join("stage-1.onnx")).unwrap();
            (d.join("stage-1.onnx"), "stages[1].segment")
        }),
        case(|d| {
            let y = replace_in_yaml(
                d,
                "    output: logits",
                "    exit: { head: exit-0.onnx, threshold: 0.5 }",
            );
            (y, "stages[2].exit")
        }),
        case(|d| {
            (
                replace_in_yaml(d, "mean: [0]", "mean: [0, 0, 0]"),
                "input.mean",
            )
        }),
        case(|d| {
            (
                replace_in_yaml(d, "threshold: 0.5", "threshold: .nan"),
                "stages[0].exit.threshold",
            )
        }),
        case(|d| {
            std::fs::write(d.join("stage-1.onnx"), "not a model").unwrap();
            (d.join("stage-1.onnx"), "stages[1].segment")
        }),
        case(|d| {
            std::fs::write(
                d.join("stage-1.onnx"),
                cut::two_input_add_model(&[1, 32, 28, 28]),
            )
            .unwrap();
            (d.join("stage-1.onnx"), "stages[1].segment")
        }),
        case(|d| {
            // Stage 1 pointed at stage 2's segment: 64 channels expected, 32 given.
            replace_in_yaml(d, "segment: stage-1.onnx", "segment: stage-2.onnx");
            (d.join("stage-2.onnx"), "input")
        }),
        case(|d| {
            std::fs::write(d.join("labels.txt"), "one\ntwo\nthree\n").unwrap();
            (d.join("labels.txt"), "labels")
        }),
        case(|d| (replace_in_yaml(d, "std: [255]", "std: [0]"), "input.std")),
        case(|d| {
            (
                replace_in_yaml(d, "metric: max-prob", "metric: best-guess"),
                "metric",
            )
        }),
    ];
    for (_tmp, dir, file, key) in &cases {
        let error = start_error(dir);
        let file = file.display().to_string();
        assert!(error.contains(&file), "'{error}' does not name {file}");
        assert!(error.contains(key), "'{error}' does not name {key}");
    }
}

/// `exits.yaml` with the value of the `nth` (from 0) line that holds `key` replaced by `value`.
fn set_nth(dir: &Path, key: &str, nth: usize, value: &str) -> PathBuf {
    let path = dir.join("exits.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut seen = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.find(key) {
            Some(at) if seen == nth => {
                seen += 1;
                format!("{}{key} {value}", &line[..at])
            }
            Some(_) => {
                seen += 1;
                line.to_owned()
            }
            None => line.to_owned(),
        })
        .collect();
    assert!(seen > nth, "{key} #{nth} in {text}");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Bundles written to harm the process that reads them: each is refused within seconds, with
/// an ERROR naming the file, the key and what is wrong, and nothing outside the bundle is read.
#[test]
fn hostile_bundles_are_refused_quickly_and_read_nothing_outside() {
    let mkfifo = |path: &Path| {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    };
    let symlink = |to: &str, at: PathBuf| std::os::unix::fs::symlink(to, at).unwrap();
    type Edit = Box<dyn Fn(&Path) -> (PathBuf, &'static str)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(move |d| {
                std::fs::remove_file(d.join("exits.yaml")).unwrap();
                mkfifo(&d.join("exits.yaml"));
                (d.join("exits.yaml"), "model")
            }),
            "is a FIFO, not a regular file",
        ),
        (
            Box::new(move |d| {
                std::fs::remove_file(d.join("labels.txt")).unwrap();
                symlink("/dev/zero", d.join("labels.txt"));
                (d.join("labels.txt"), "labels")
            }),
            "is a character device",
        ),
        (
            Box::new(|d| {
                let labels = std::fs::File::create(d.join("labels.txt")).unwrap();
                labels.set_len(17 << 20).unwrap();
                (d.join("labels.txt"), "labels")
            }),
            "is 17825792 bytes; more than the 16777216",
        ),
        (
            Box::new(|d| {
                let yaml = d.join("exits.yaml");
                let text = std::fs::read_to_string(&yaml).unwrap();
                let deep = format!("{}{}", "[".repeat(250_000), "]".repeat(250_000));
                std::fs::write(&yaml, format!("{text}name: {deep}\n")).unwrap();
                (yaml, "(document)")
            }),
            "nested 250000 levels deep",
        ),
        (
            Box::new(|d| {
                let outside = d.parent().unwrap().join("outside");
                std::fs::create_dir(&outside).unwrap();
                std::fs::copy(d.join("stage-0.onnx"), outside.join("stage-0.onnx")).unwrap();
                let yaml = replace_in_yaml(
                    d,
                    "segment: stage-0.onnx",
                    "segment: ../outside/stage-0.onnx",
                );
                (yaml, "stages[0].segment")
            }),
            "'../outside/stage-0.onnx' leaves the bundle's folder",
        ),
        (
            Box::new(|d| {
                let yaml =
                    replace_in_yaml(d, "labels: labels.txt", "labels: ../../../../etc/passwd");
                (yaml, "labels")
            }),
            "leaves the bundle's folder",
        ),
        (
            Box::new(|d| {
                std::fs::remove_file(d.join("stage-1.onnx")).unwrap();
                std::fs::create_dir(d.join("stage-1.onnx")).unwrap();
                (d.join("stage-1.onnx"), "stages[1].segment")
            }),
            "is a directory, not a regular file",
        ),
        (
            Box::new(move |d| {
                std::fs::remove_file(d.join("stage-1.onnx")).unwrap();
                symlink("/dev/zero", d.join("stage-1.onnx"));
                (d.join("stage-1.onnx"), "stages[1].segment")
            }),
            "is a character device, not a regular file",
        ),
        (
            Box::new(|d| {
                let yaml = replace_in_yaml(d, "threshold: 0.5", "threshold: 1e309");
                (yaml, "stages[0].exit.threshold")
            }),
            "1e309' is beyond the range of 64-bit floats",
        ),
        (
            Box::new(|d| {
                (
                    replace_in_yaml(d, "std: [255]", "std: [1e-45]"),
                    "input.std[0]",
                )
            }),
            "makes the input infinite",
        ),
        (
            Box::new(|d| {
                set_nth(d, "macs:", 0, "9223372036854775808");
                (set_nth(d, "macs:", 2, "9223372036854775808"), "macs")
            }),
            "MACs add up to more than 18446744073709551615",
        ),
        (
            Box::new(|d| (set_nth(d, "macs:", 1, "18446744073709551615"), "macs")),
            "MACs add up to more than 18446744073709551615",
        ),
    ];
    for (edit, message) in cases {
        let (_tmp, dir) = cut::valid_dir([0.5, 0.75]);
        let (file, key) = edit(&dir);
        let model = if key == "model" {
            file.clone()
        } else {
            dir.clone()
        };
        let start = std::time::Instant::now();
        let error = start_error(&model);
        let took = start.elapsed();
        assert!(took.as_secs() < 5, "{message}: refused only after {took:?}");
        let file = file.display().to_string();
        assert!(error.contains(&file), "'{error}' does not name {file}");
        assert!(error.contains(key), "'{error}' does not name {key}");
        assert!(error.contains(message), "'{error}' does not say {message}");
    }
}

/// A segment whose weights are ONNX external data (`stage-1.onnx.data` beside it) loads from a
/// process whose working directory is elsewhere: ONNX Runtime resolves the data against the
/// model's own folder.
#[test]
fn external_data_models_load_from_any_working_directory() {
    let (_tmp, dir) = cut::valid_dir([0.5, 0.75]);
    cut::externalise(&dir.join("stage-1.onnx"));
    assert!(
        std::fs::metadata(dir.join("stage-1.onnx.data"))
            .unwrap()
            .len()
            > 0
    );
    assert_ne!(std::env::current_dir().unwrap(), dir);
    earlyexit_testkit::gst::run_to_eos(
        &format!(
            "videotestsrc num-buffers=3 ! video/x-raw,format=GRAY8,width=28,height=28 ! earlyexit model=\"{}\" ! fakesink",
            dir.display()
        ),
        30,
    );
}

/// An unknown key is ignored, as bundle-v1 asks, and named in a WARNING on the bus.
#[test]
fn an_unknown_key_posts_a_warning_naming_it_and_the_bundle_runs() {
    earlyexit_testkit::gst::init();
    let (_tmp, dir) = cut::valid_dir([0.5, 0.75]);
    let yaml = dir.join("exits.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, format!("{text}colour: blue\n")).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=GRAY8,width=28,height=28 ! earlyexit model=\"{}\" ! fakesink",
        dir.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    for message in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match message.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("colour")),
        "no warning names the unknown key: {warnings:?}"
    );
}

/// The ONNX Runtime library is loaded once per process, so this runs the test binary again as a
/// child with a library path that does not exist.
#[test]
fn a_missing_onnx_runtime_library_posts_an_error_naming_it() {
    // The child is given a bundle made here: making one needs ONNX Runtime.
    const CHILD_BUNDLE: &str = "EARLYEXIT_TEST_MISSING_ORT_BUNDLE";
    if let Some(dir) = std::env::var_os(CHILD_BUNDLE) {
        println!("ERROR-TEXT: {}", start_error(Path::new(&dir)));
        return;
    }
    let (_tmp, dir) = cut::valid_dir([0.5, 0.75]);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_missing_onnx_runtime_library_posts_an_error_naming_it",
            "--nocapture",
        ])
        .env(CHILD_BUNDLE, &dir)
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("ERROR-TEXT:"))
        .expect("the child reports the error");
    assert!(line.contains("/nonexistent/libonnxruntime.so"), "{line}");
    assert!(line.contains("ORT_DYLIB_PATH"), "{line}");
}
