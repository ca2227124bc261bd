//! `--format 3` end to end, reduced: on an inspection belt, where each item stays under the
//! camera for 4 to 40 frames, the search keeps a stream rule; on shuffled pictures, where no
//! frame repeats the one before, it keeps none at a tight target (a loose one may let
//! lookalike neighbours share an answer, which is then certified like any other saving).

use std::path::{Path, PathBuf};
use std::process::Command;

use earlyexit_testkit::{footage, model};

/// The first `frames` frames of `name` (and of its labels) as a lossless clip in `dir`.
fn clip(dir: &Path, name: &str, frames: usize) -> (PathBuf, PathBuf) {
    let out = earlyexit_testkit::gst::first_frames(name, frames, &dir.join(name));
    let labels = footage(&name.replace(".mkv", ".labels.csv"));
    let rows: Vec<String> = std::fs::read_to_string(labels)
        .unwrap()
        .lines()
        .take(frames + 1)
        .map(str::to_owned)
        .collect();
    let csv = dir.join(name.replace(".mkv", ".labels.csv"));
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    (out, csv)
}

/// Searches `train` with `held` held out, `--format 3` and `target`; returns the bundle's
/// `exits.yaml` and `report.md`.
fn search(
    dir: &Path,
    train: (PathBuf, PathBuf),
    held: (PathBuf, PathBuf),
    target: [&str; 2],
) -> (String, String) {
    let out = dir.join("bundle");
    let status = Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .arg("search")
        .arg("--backbone")
        .arg(model("fmnist_resnet20w32.onnx"))
        .arg("--footage")
        .arg(&train.0)
        .arg("--ground-truth")
        .arg(&train.1)
        .arg("--holdout")
        .arg(&held.0)
        .arg("--ground-truth")
        .arg(&held.1)
        .args(target)
        .args(["--format", "3", "--seed", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("earlyexit-search runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    (
        std::fs::read_to_string(out.join("exits.yaml")).unwrap(),
        std::fs::read_to_string(out.join("report.md")).unwrap(),
    )
}

#[test]
fn a_belt_gets_a_stream_rule_and_shuffled_pictures_none() {
    let tmp = tempfile::tempdir().unwrap();
    let belt = tmp.path().join("belt");
    std::fs::create_dir(&belt).unwrap();
    let (yaml, report) = search(
        &belt,
        clip(&belt, "fmnist-belt-train.mkv", 4000),
        clip(&belt, "fmnist-belt-test-a.mkv", 3000),
        ["--target-agreement", "0.9"],
    );
    // The rule is chosen, certified up its ladder and kept: on a belt, reusing answers saves
    // far more than any exit. Its ladder must reach the rule's rungs before exit rungs spend
    // the error allowed (a walk judging the rule by its next rung alone did not).
    assert!(
        report.contains("(stream rule and exit thresholds)"),
        "{report}"
    );
    assert!(yaml.contains("\nreuse:\n  detector: "), "{yaml}");
    assert!(yaml.starts_with("format: earlyexit/3\n"), "{yaml}");
    assert!(
        report.contains("- Stream rule (format `earlyexit/3`)"),
        "{report}"
    );

    let shuffled = tmp.path().join("shuffled");
    std::fs::create_dir(&shuffled).unwrap();
    let (yaml, report) = search(
        &shuffled,
        clip(&shuffled, "fmnist-train-10k.mkv", 4000),
        clip(&shuffled, "fmnist-test-a-5k.mkv", 3000),
        // The target: a loose one may let lookalike neighbours share an answer.
        ["--max-accuracy-loss", "0.005"],
    );
    assert!(!yaml.contains("reuse:"), "{yaml}");
    assert!(!yaml.starts_with("format: earlyexit/3"), "{yaml}");
    assert!(!report.contains("Stream rule"), "{report}");
    assert!(!report.contains("(stream rule"), "{report}");
}
