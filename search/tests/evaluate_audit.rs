//! The audit in `evaluate` and in the element: for the same seed they audit the same frames and
//! answer every frame alike, and a promise the exits break is caught in both, with a WARNING
//! on the element's bus.

mod evaluating;

use earlyexit_testkit::cut;

use std::path::{Path, PathBuf};

use earlyexit::bundle::{Measure, Promise};
use gst::prelude::*;

/// The valid bundle with these thresholds and a promise of agreement `promise`.
fn promising(dir: &Path, thresholds: [f64; 2], promise: f64) -> PathBuf {
    let mut b = cut::valid_bundle(thresholds);
    b.promise = Some(Promise {
        measure: Measure::Agreement,
        target: promise,
        confidence: 0.95,
        frames: 1000,
    });
    cut::write_bundle(dir, &b)
}

/// `evaluate --audit 0.05 --audit-seed 3` over `clip`: (stage, class) per frame and the JSON.
fn evaluate(clip: &Path, file: &Path, dir: &Path) -> (Vec<(u32, i32)>, serde_json::Value) {
    let csv = dir.join("per-frame.csv");
    let extra = ["--audit", "0.05", "--audit-seed", "3"];
    let (text, json) = evaluating::evaluate(file, &[clip], &extra, &csv);
    let rows = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.rsplitn(4, ',').collect();
            (f[2].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    (rows, json)
}

/// The element with `audit=0.05 audit-seed=3` over `clip`: (stage, class) per frame, its
/// stats, and the text of each WARNING on the bus.
fn element(clip: &Path, file: &Path) -> (Vec<(u32, i32)>, gst::Structure, Vec<String>) {
    earlyexit_testkit::gst::init();
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert \
         ! earlyexit name=ee model=\"{}\" audit=0.05 audit-seed=3 ! appsink name=sink sync=false",
        clip.display(),
        file.display()
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut decisions = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let m = gstearlyexit::EarlyExitInfo::from_buffer(sample.buffer().unwrap()).unwrap();
        decisions.push((m.stage, m.class_id));
    }
    let stats = pipeline
        .by_name("ee")
        .unwrap()
        .property::<gst::Structure>("stats");
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Warning, gst::MessageType::Error]) {
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (decisions, stats, warnings)
}

#[test]
fn the_audit_decides_alike_in_evaluate_and_the_element_and_catches_a_broken_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = earlyexit_testkit::gst::first_frames(
        "fmnist-test-b-5k.mkv",
        400,
        &tmp.path().join("short.mkv"),
    );
    // Kept: trusted after its first audits, then sampled.
    let kept = promising(&tmp.path().join("kept"), [0.9, 0.9], 0.8);
    let (ours, json) = evaluate(&clip, &kept, tmp.path());
    let (theirs, stats, warnings) = element(&clip, &kept);
    assert_eq!(ours, theirs, "evaluate and the element answer alike");
    let audited = json["audited"].as_u64().unwrap();
    assert_eq!(stats.get::<u64>("audited").unwrap(), audited);
    assert!((15..100).contains(&audited), "{audited} of 400 audited");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(stats.get::<f64>("audit-lower-bound").unwrap() >= 0.8);

    // Broken: every frame leaves at exit 0, against a promise of 0.999.
    let broken = promising(&tmp.path().join("broken"), [-1.0, -1.0], 0.999);
    let (ours, json) = evaluate(&clip, &broken, tmp.path());
    let (theirs, stats, warnings) = element(&clip, &broken);
    assert_eq!(ours, theirs);
    let at = json["audit_warnings"].as_array().unwrap();
    assert_eq!(at.len(), 1, "{json}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!(
            "Frame {}: the bundle does not keep its promise",
            at[0]
        )),
        "{warnings:?}"
    );
    // Answered at full depth throughout: the backbone's answers.
    assert_eq!(stats.get::<u64>("fallback-frames").unwrap(), 400);
    assert!(ours.iter().all(|&(stage, _)| stage == 2));
}
