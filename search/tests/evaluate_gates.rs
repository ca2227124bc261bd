//! `evaluate` on a format-2 bundle: it decides every frame as the element does, and each
//! footage starts a fresh stream, so a gate never reads the previous footage's last answer.

mod evaluating;

use earlyexit_testkit::cut;

use std::path::Path;
use std::process::Command;

use earlyexit::gate::GateInput;

/// (footage, stage, class id) of every row of an `evaluate --per-frame` file.
fn per_frame_rows(csv: &Path) -> Vec<(String, u32, i32)> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("footage,frame,stage,class_id,score"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.rsplitn(5, ',').collect();
            (
                f[4].to_owned(),
                f[2].parse().unwrap(),
                f[1].parse().unwrap(),
            )
        })
        .collect()
}

/// A bundle in `dir` whose exits leave only when they agree with the previous frame's answer.
fn last_frame_gated(dir: &Path) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    let gate = cut::agreement_gate(true);
    let b = cut::gated_bundle(
        vec![GateInput::AgreesLastFrame],
        [gate.clone(), gate],
        [0.5, 0.5],
    );
    cut::write_bundle(&bundle, &b);
    bundle
}

#[test]
fn evaluate_runs_a_last_frame_gate_like_the_element_and_resets_per_footage() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = last_frame_gated(tmp.path());
    let clip = earlyexit_testkit::gst::first_frames(
        "fmnist-test-b-5k.mkv",
        300,
        &tmp.path().join("short.mkv"),
    );
    let csv = tmp.path().join("per-frame.csv");
    // The same footage twice: without a reset between them, the second would start with the
    // first's last answer.
    let (_, json) = evaluating::evaluate(&bundle, &[&clip, &clip], &[], &csv);
    let rows = per_frame_rows(&csv);
    assert_eq!(rows.len() % 2, 0);
    let frames = rows.len() / 2;
    assert!(frames >= 300, "{frames}");
    let (first, second) = rows.split_at(frames);
    assert!(first.iter().all(|r| r.0 == first[0].0));
    let decisions = |rows: &[(String, u32, i32)]| -> Vec<(u32, i32)> {
        rows.iter().map(|r| (r.1, r.2)).collect()
    };
    // A fresh stream has no answer to agree with: the first frame runs every stage.
    assert_eq!(first[0].1, 2);
    let (a, b) = (decisions(first), decisions(second));
    if let Some(i) = (0..frames).find(|&i| a[i] != b[i]) {
        panic!(
            "frame {i}: the second footage decided {:?}, the first {:?}",
            b[i], a[i]
        );
    }
    let element = earlyexit_testkit::gst::element_decisions(&clip, &bundle.join("exits.yaml"));
    assert_eq!(element.len(), frames);
    for (i, (ours, theirs)) in decisions(first).iter().zip(&element).enumerate() {
        assert_eq!(ours, theirs, "frame {i}: evaluate and the element disagree");
    }
    let exits = earlyexit_testkit::evaluate_exits(&json);
    assert!(exits[0] + exits[1] > 0, "{exits:?}");

    // --refit fits the metric's thresholds; a gated bundle's exits do not decide by them.
    let out = Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .args(["evaluate", "--refit", "--model"])
        .arg(&bundle)
        .arg("--footage")
        .arg(&clip)
        .output()
        .expect("earlyexit-search runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("decides by a gate"), "{stderr}");
}

/// A gap in the stream (here ten seconds with no frame, which the demuxer announces with a GAP
/// event, the frame after it not flagged DISCONT) makes the element forget the last answer;
/// `evaluate` forgets it there too, so the first frame after the gap runs every stage in both.
#[test]
fn evaluate_forgets_the_last_answer_at_a_gap_as_the_element_does() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = last_frame_gated(tmp.path());
    let part = earlyexit_testkit::gst::first_frames(
        "fmnist-test-b-5k.mkv",
        100,
        &tmp.path().join("part.mkv"),
    );
    let clip = earlyexit_testkit::gst::twice_with_a_gap(
        &part,
        gst::ClockTime::from_seconds(10),
        &tmp.path().join("gap.mkv"),
    );
    let csv = tmp.path().join("per-frame.csv");
    evaluating::evaluate(&bundle, &[&clip], &[], &csv);
    let ours: Vec<(u32, i32)> = per_frame_rows(&csv).iter().map(|r| (r.1, r.2)).collect();
    let element = earlyexit_testkit::gst::element_decisions(&clip, &bundle.join("exits.yaml"));
    assert_eq!(ours.len(), 200);
    assert_eq!(ours, element);
    // The second copy decides as the first: after the gap, no answer is left to agree with.
    assert_eq!(ours[..100], ours[100..]);
    assert_eq!(ours[100].0, 2, "{ours:?}");
    assert!(ours[1..100].iter().any(|d| d.0 < 2), "{ours:?}");
}
