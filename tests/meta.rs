//! What the element says of each frame when its models misbehave, and when several `earlyexit`
//! elements classify one stream.

use std::path::Path;

use earlyexit_testkit::cut;
use gst::prelude::*;
use gstearlyexit::EarlyExitInfo;

/// Runs `desc` (whose sink is `appsink name=sink`) to its end: every buffer's metas, the texts
/// of the WARNINGs, and the named element's `stats`.
fn run(desc: &str, stats_of: &str) -> (Vec<Vec<EarlyExitInfo>>, Vec<String>, gst::Structure) {
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut metas = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        metas.push(EarlyExitInfo::all_from_buffer(sample.buffer().unwrap()));
    }
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    while let Some(message) = bus.pop() {
        match message.view() {
            gst::MessageView::Warning(w) => {
                warnings.push(format!("{} {:?}", w.error(), w.debug()));
            }
            gst::MessageView::Error(e) => panic!("{desc}: {}", e.error()),
            _ => {}
        }
    }
    let stats = pipeline
        .by_name(stats_of)
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    (metas, warnings, stats)
}

fn source(frames: usize) -> String {
    format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=GRAY8,width=28,height=28"
    )
}

/// A model that answers NaN never makes a confident answer: an exit whose scores are NaN lets
/// no frame leave, a last stage that gives NaN marks the frame, `stats` counts it, and one
/// WARNING names the file.
#[test]
fn non_finite_outputs_are_never_confident_answers() {
    // A poisoned exit with thresholds every frame clears, so that without the poison all
    // would leave there; a poisoned last stage with thresholds that none clears.
    let cases = [
        ("exit-0.onnx", [0.0, 0.0], false),
        ("stage-2.onnx", [1.0, 1.0], true),
    ];
    for (poisoned, thresholds, unanswered) in cases {
        let (_tmp, dir) = cut::valid_dir(thresholds);
        cut::poison(&dir.join(poisoned));
        let desc = format!(
            "{} ! earlyexit name=ee model=\"{}\" audit=0 ! appsink name=sink sync=false",
            source(6),
            dir.display()
        );
        let (metas, warnings, stats) = run(&desc, "ee");
        assert_eq!(metas.len(), 6);
        for meta in metas.iter().map(|m| &m[0]) {
            assert_eq!(meta.non_finite, unanswered, "{poisoned}: {meta:?}");
            assert!(meta.score.is_finite(), "{poisoned}: {meta:?}");
            assert!(meta.confidence.is_finite(), "{poisoned}: {meta:?}");
            if unanswered {
                assert_eq!(meta.confidence, 0.0, "{poisoned}: {meta:?}");
            } else {
                assert!(meta.stage > 0, "{poisoned}: left at the NaN exit: {meta:?}");
            }
        }
        let told: Vec<&String> = warnings
            .iter()
            .filter(|w| w.contains("non-finite"))
            .collect();
        assert_eq!(told.len(), 1, "{poisoned}: {warnings:?}");
        assert!(
            told[0].contains(&dir.join(poisoned).display().to_string()),
            "{}",
            told[0]
        );
        let counted = stats.get::<u64>("non-finite-frames").unwrap();
        assert_eq!(
            counted,
            if unanswered { 6 } else { 0 },
            "{poisoned}: {stats}"
        );
    }
}

/// Two elements in a row (a fast classifier, then a specialist) each leave a meta naming
/// themselves and their bundle, in the order they ran; neither replaces the other's.
#[test]
fn each_element_keeps_its_own_meta() {
    let (_a, fast) = cut::valid_dir([0.0, 0.0]);
    let (_b, specialist) = cut::valid_dir([1.0, 1.0]);
    let desc = format!(
        "{} ! earlyexit name=fast model=\"{}\" audit=0 ! earlyexit name=specialist model=\"{}\" audit=0 ! appsink name=sink sync=false",
        source(4),
        fast.display(),
        specialist.display()
    );
    let (metas, _, _) = run(&desc, "fast");
    assert_eq!(metas.len(), 4);
    let bundle = |p: &Path| p.display().to_string();
    for frame in &metas {
        let names: Vec<(&str, &str)> = frame
            .iter()
            .map(|m| (m.element.as_str(), m.bundle.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("fast", bundle(&fast).as_str()),
                ("specialist", bundle(&specialist).as_str())
            ],
        );
        // The fast bundle lets every frame leave at its first exit, the specialist none.
        assert_eq!((frame[0].stage, frame[1].stage), (0, 2), "{frame:?}");
    }
}
