//! The cascade on the valid 3-stage Fashion-MNIST bundle against the stored reference logits.

use earlyexit_testkit::cut;

use earlyexit::audit::{AuditEvent, AuditSettings, AuditState};
use earlyexit::bundle;
use earlyexit::gate::GateInput;
use earlyexit::reuse::{Detector, ReuseRule};
use earlyexit::rule::{FrameWalk, Metric, MetricThreshold, Signals};
use earlyexit::{Classifier, Decision, Frame, Mode, PixelFormat, SessionOptions};
use earlyexit_testkit::cut::{
    SEGMENT_MACS, agreement_gate, gated_bundle, parts, valid_dir, write_bundle,
};
use earlyexit_testkit::model;
use earlyexit_testkit::npy::read_npy;

/// The 16 reference images as 28×28 GRAY8 frames (pixel = round(value · 255)).
fn reference_frames() -> Vec<Vec<u8>> {
    let (shape, values) = read_npy(&model("fmnist_resnet20w32.ref_in.npy"));
    assert_eq!(shape, [16, 1, 28, 28]);
    values
        .chunks_exact(28 * 28)
        .map(|image| {
            image
                .iter()
                .map(|&v| {
                    let pixel = (v * 255.0).round();
                    assert!((0.0..=255.0).contains(&pixel), "{v}");
                    let pixel = pixel as u8;
                    // The stored values were made as pixel · (1/255) in float32, exactly, so
                    // the frame loses nothing. The bundle's (pixel - 0) / 255 rounds
                    // differently for about a fifth of them, by at most one unit in the last
                    // place, far below the 1e-4 the answers are compared with.
                    assert_eq!(
                        f32::from(pixel) * (1.0 / 255.0),
                        v,
                        "{v} is not pixel / 255"
                    );
                    let spec_value = f32::from(pixel) / 255.0;
                    assert!((spec_value - v).abs() <= f32::EPSILON * v, "{v}");
                    pixel
                })
                .collect()
        })
        .collect()
}

/// softmax of each reference logit row, in f64: (class, probability of that class).
fn reference_answers() -> Vec<(usize, f64)> {
    let (shape, logits) = read_npy(&model("fmnist_resnet20w32.ref_out.npy"));
    assert_eq!(shape, [16, 10]);
    logits
        .chunks_exact(10)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = row.iter().map(|&l| f64::from(l - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            let (class, p) = exps
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            (class, p / sum)
        })
        .collect()
}

fn classify_all(dir: &std::path::Path, mode: Mode) -> Vec<Decision> {
    let mut c = open(dir, mode);
    reference_frames()
        .iter()
        .map(|pixels| classify(&mut c, pixels))
        .collect()
}

fn open(dir: &std::path::Path, mode: Mode) -> Classifier {
    let (b, _) = bundle::read(dir).unwrap();
    Classifier::open(&b, mode, SessionOptions::default()).unwrap()
}

fn classify(c: &mut Classifier, pixels: &[u8]) -> Decision {
    let frame = Frame::new(PixelFormat::Gray8, 28, 28, 28, pixels).unwrap();
    c.classify(&frame).unwrap()
}

/// A decision without its timing, to compare runs.
fn outcome(d: &Decision) -> (usize, usize, f64, f64, Option<f64>) {
    (d.stage, d.class_id, d.confidence, d.score, d.cost)
}

/// The class of each reference image at exit 0, at exit 1 and at the last stage, from format-1
/// bundles whose thresholds send every frame out at one place.
fn classes_everywhere() -> [Vec<usize>; 3] {
    let classes = |thresholds: [f64; 2], mode: Mode, stage: usize| {
        let (_tmp, dir) = valid_dir(thresholds);
        let decisions = classify_all(&dir, mode);
        assert!(decisions.iter().all(|d| d.stage == stage));
        decisions.iter().map(|d| d.class_id).collect::<Vec<_>>()
    };
    [
        classes([-1.0, -1.0], Mode::EarlyExit, 0),
        classes([2.0, -1.0], Mode::EarlyExit, 1),
        classes([2.0, 2.0], Mode::Full, 2),
    ]
}

/// A format-2 bundle whose exits both use `gate` (threshold 0.5) over the one `input`.
fn gated_dir(
    input: GateInput,
    leave_when_agreeing: bool,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let gate = agreement_gate(leave_when_agreeing);
    let b = gated_bundle(vec![input], [gate.clone(), gate], [0.5, 0.5]);
    write_bundle(&dir, &b);
    (tmp, dir)
}

#[test]
fn agrees_last_frame_changes_a_decision_and_reset_stream_forgets_it() {
    // Leaves where the exit disagrees with the previous frame's answer, or there is none.
    let (_tmp, dir) = gated_dir(GateInput::AgreesLastFrame, false);
    let mut c = open(&dir, Mode::EarlyExit);
    let pixels = &reference_frames()[0];
    assert_eq!(c.stream().last_answer(), None);
    let first = classify(&mut c, pixels);
    assert_eq!(first.stage, 0, "no previous frame: the gate lets it go");
    assert_eq!(c.stream().last_answer(), Some(first.class_id));
    // The same frame again: exit 0 now agrees with the last answer, so the gate holds it.
    let second = classify(&mut c, pixels);
    assert!(second.stage > 0, "{second:?}");
    // The score stays the metric's (max-prob), not the gate's probability.
    assert_eq!(second.score, second.confidence);
    let saved = c.resume_point();
    let third = classify(&mut c, pixels);
    c.resume(saved);
    assert_eq!(outcome(&classify(&mut c, pixels)), outcome(&third));
    c.reset_stream();
    assert_eq!(c.stream().last_answer(), None);
    assert_eq!(outcome(&classify(&mut c, pixels)), outcome(&first));
}

#[test]
fn agrees_last_frame_follows_the_stream_answer_by_answer() {
    let [exit0, exit1, full] = classes_everywhere();
    // Leaves where the exit agrees with the previous frame's answer.
    let (_tmp, dir) = gated_dir(GateInput::AgreesLastFrame, true);
    let mut c = open(&dir, Mode::EarlyExit);
    let mut last = None;
    let mut stages = [0; 3];
    for (i, pixels) in reference_frames().iter().enumerate() {
        let want = if Some(exit0[i]) == last {
            (0, exit0[i])
        } else if Some(exit1[i]) == last {
            (1, exit1[i])
        } else {
            (2, full[i])
        };
        let d = classify(&mut c, pixels);
        assert_eq!((d.stage, d.class_id), want, "image {i}");
        last = Some(d.class_id);
        stages[d.stage] += 1;
    }
    // The images reach every branch above, so each could have failed.
    assert!(stages.iter().all(|&n| n > 0), "{stages:?}");
}

#[test]
fn agrees_previous_exit_compares_the_exits_of_one_frame() {
    let [exit0, exit1, full] = classes_everywhere();
    let (_tmp, dir) = gated_dir(GateInput::AgreesPreviousExit, true);
    let decisions = classify_all(&dir, Mode::EarlyExit);
    for (i, d) in decisions.iter().enumerate() {
        // Exit 0 has no previous exit, so it never agrees; exit 1 leaves when it agrees with 0.
        let want = if exit1[i] == exit0[i] {
            (1, exit1[i])
        } else {
            (2, full[i])
        };
        assert_eq!((d.stage, d.class_id), want, "image {i}");
    }
    let stages: Vec<usize> = decisions.iter().map(|d| d.stage).collect();
    assert!(stages.contains(&1) && stages.contains(&2), "{stages:?}");
}

#[test]
fn full_mode_runs_no_gate() {
    let (_tmp, dir) = gated_dir(GateInput::AgreesLastFrame, false);
    let (_tmp2, plain) = valid_dir(cut::THRESHOLDS);
    let gated = classify_all(&dir, Mode::Full);
    let full = classify_all(&plain, Mode::Full);
    let outcomes = |d: &[Decision]| d.iter().map(outcome).collect::<Vec<_>>();
    assert_eq!(outcomes(&gated), outcomes(&full));
}

#[test]
fn full_mode_matches_the_reference_logits() {
    let (_tmp, dir) = valid_dir(cut::THRESHOLDS);
    let answers = reference_answers();
    let decisions = classify_all(&dir, Mode::Full);
    assert_eq!(decisions.len(), 16);
    // The reference images are not all one class, so a constant answer cannot pass.
    let mut classes: Vec<usize> = answers.iter().map(|a| a.0).collect();
    classes.dedup();
    assert!(classes.len() > 3, "{classes:?}");
    for (i, (d, (class, p))) in decisions.iter().zip(&answers).enumerate() {
        assert_eq!((d.stage, d.stages), (2, 3), "image {i}");
        assert_eq!(d.class_id, *class, "image {i}");
        assert!(
            (d.confidence - p).abs() < 1e-4,
            "image {i}: {} vs {p}",
            d.confidence
        );
        // max-prob: the score is the confidence.
        assert_eq!(d.score, d.confidence, "image {i}");
        // No head ran: exactly the backbone's cost.
        assert_eq!(d.cost, Some(1.0), "image {i}");
    }
}

#[test]
fn early_exit_with_unreachable_thresholds_decides_like_full() {
    let (_tmp, full_dir) = valid_dir(cut::THRESHOLDS);
    let full = classify_all(&full_dir, Mode::Full);
    let (_tmp2, dir) = valid_dir([2.0, 2.0]);
    let early = classify_all(&dir, Mode::EarlyExit);
    let total: u64 = SEGMENT_MACS.iter().sum();
    let heads: u64 = parts().heads.iter().map(|h| h.macs).sum();
    assert!(heads > 0);
    for (i, (e, f)) in early.iter().zip(&full).enumerate() {
        assert_eq!((e.stage, e.class_id), (f.stage, f.class_id), "image {i}");
        assert!((e.confidence - f.confidence).abs() < 1e-6, "image {i}");
        assert!((e.score - f.score).abs() < 1e-6, "image {i}");
        // Every head ran and none let the frame go: a little more than the backbone.
        let cost = e.cost.unwrap();
        assert!(
            (cost - (total + heads) as f64 / total as f64).abs() < 1e-12,
            "image {i}: {cost}"
        );
        assert!(cost > 1.0);
    }
}

#[test]
fn a_threshold_below_every_score_sends_every_frame_out_at_stage_0() {
    let (_tmp, dir) = valid_dir([-1.0, 2.0]);
    let decisions = classify_all(&dir, Mode::EarlyExit);
    let total: u64 = SEGMENT_MACS.iter().sum();
    let expected = (SEGMENT_MACS[0] + parts().heads[0].macs) as f64 / total as f64;
    for (i, d) in decisions.iter().enumerate() {
        assert_eq!((d.stage, d.stages), (0, 3), "image {i}");
        assert!(d.class_id < 10, "image {i}");
        assert!(d.confidence > 0.0 && d.confidence <= 1.0, "image {i}");
        let cost = d.cost.unwrap();
        assert!(
            (cost - expected).abs() < 1e-12,
            "image {i}: {cost} vs {expected}"
        );
        assert!(cost < 0.36 && cost > 0.35, "image {i}: {cost}");
    }
}

#[test]
fn every_exit_answers_as_the_cascade_would_wherever_the_frame_left() {
    let [exit0, exit1, full] = classes_everywhere();
    let every_exit = |c: &mut Classifier| -> Vec<Vec<Signals>> {
        let mut signals = Vec::new();
        reference_frames()
            .iter()
            .map(|pixels| {
                let frame = Frame::new(PixelFormat::Gray8, 28, 28, 28, pixels).unwrap();
                c.every_exit(&frame, &mut signals).unwrap();
                signals.iter().map(|s| s.unwrap()).collect()
            })
            .collect()
    };
    let (_tmp, dir) = valid_dir(cut::THRESHOLDS);
    let all = every_exit(&mut open(&dir, Mode::EarlyExit));
    // Thresholds at each exit's median score, so that frames leave at every stage.
    let median = |exit: usize| {
        let mut scores: Vec<f64> = all.iter().map(|v| v[exit].score(Metric::MaxProb)).collect();
        scores.sort_by(f64::total_cmp);
        scores[scores.len() / 2]
    };
    let thresholds = [median(0), median(1)];
    let (_tmp, dir) = valid_dir(thresholds);
    let mut c = open(&dir, Mode::EarlyExit);
    assert_eq!(every_exit(&mut c), all, "the thresholds change no verdict");
    // Not a decision: the stream has no answer to remember.
    assert_eq!(c.stream().last_answer(), None);
    let mut left_at = std::collections::BTreeSet::new();
    for (i, (pixels, verdicts)) in reference_frames().iter().zip(&all).enumerate() {
        let classes: Vec<usize> = verdicts.iter().map(|v| v.class_id).collect();
        assert_eq!(classes, [exit0[i], exit1[i], full[i]], "image {i}");
        // The first exit whose score clears its threshold is where the cascade leaves.
        let leaves_at = verdicts[..2]
            .iter()
            .zip(thresholds)
            .position(|(v, t)| Metric::MaxProb.leaves(v.score(Metric::MaxProb), t))
            .unwrap_or(2);
        let d = classify(&mut c, pixels);
        let v = verdicts[leaves_at];
        assert_eq!(
            (d.stage, d.class_id, d.score),
            (leaves_at, v.class_id, v.score(Metric::MaxProb)),
            "image {i}"
        );
        left_at.insert(d.stage);
    }
    assert_eq!(left_at.len(), 3, "the images left only at {left_at:?}");
}

/// Every metric runs in the cascade, in a bundle of the first format that names it: with each
/// exit's threshold at the median of its scores under the metric, every frame leaves where the
/// walk of the exit rule, replayed on every exit's signals, says, with that stage's class and
/// the metric's score.
#[test]
fn every_metric_leaves_where_its_rule_says() {
    let frames = reference_frames();
    let (_tmp, dir) = valid_dir(cut::THRESHOLDS);
    let mut probe = open(&dir, Mode::EarlyExit);
    let mut signals = Vec::new();
    let all: Vec<Vec<Signals>> = frames
        .iter()
        .map(|pixels| {
            let frame = Frame::new(PixelFormat::Gray8, 28, 28, 28, pixels).unwrap();
            probe.every_exit(&frame, &mut signals).unwrap();
            signals.iter().map(|s| s.unwrap()).collect()
        })
        .collect();
    for metric in Metric::ALL {
        let median = |exit: usize| {
            let mut scores: Vec<f64> = all.iter().map(|s| s[exit].score(metric)).collect();
            scores.sort_by(f64::total_cmp);
            scores[scores.len() / 2]
        };
        let thresholds = [median(0), median(1)];
        let mut b = cut::valid_bundle(thresholds);
        b.metric = metric;
        b.format = bundle::Format::naming(metric);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        write_bundle(&dir, &b);
        let mut c = open(&dir, Mode::EarlyExit);
        let mut left_at = std::collections::BTreeSet::new();
        for (i, (pixels, signals)) in frames.iter().zip(&all).enumerate() {
            let exits = signals[..2]
                .iter()
                .zip(thresholds)
                .map(|(s, threshold)| (*s, MetricThreshold { metric, threshold }));
            let (stage, at) = FrameWalk::first_exit(None, exits).unwrap_or((2, signals[2]));
            let d = classify(&mut c, pixels);
            assert_eq!(
                (d.stage, d.class_id, d.score),
                (stage, at.class_id, at.score(metric)),
                "{metric:?}, image {i}"
            );
            left_at.insert(d.stage);
        }
        // Frames leave at more than one place, or the thresholds showed nothing.
        assert!(left_at.len() > 1, "{metric:?}: only at {left_at:?}");
    }
}

/// A format-3 bundle: the valid bundle, exits that never let a frame leave, and a stream rule.
fn reusing_dir(
    detector: Detector,
    threshold: f64,
    max_age: u32,
) -> (tempfile::TempDir, Classifier) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let mut b = earlyexit_testkit::cut::valid_bundle([2.0, 2.0]);
    b.format = bundle::Format::V3;
    b.reuse = Some(ReuseRule {
        detector,
        grid: 4,
        threshold,
        max_age,
    });
    write_bundle(&dir, &b);
    let c = open(&dir, Mode::EarlyExit);
    (tmp, c)
}

#[test]
fn the_stream_rule_reuses_the_last_answer_while_the_picture_holds() {
    let frames = reference_frames();
    let (_tmp, mut c) = reusing_dir(Detector::Pixels, 0.01, 2);
    let first = classify(&mut c, &frames[0]);
    assert_eq!((first.reused, first.stage), (None, 2));
    // One grey level of noise on a few pixels moves no block mean by 0.01 (in 0..1 units).
    let mut noisy = frames[0].clone();
    for p in noisy.iter_mut().step_by(7) {
        *p = p.saturating_add(1);
    }
    let again = classify(&mut c, &noisy);
    assert_eq!(again.reused, Some(1));
    assert_eq!(
        (again.stage, again.class_id, again.confidence, again.score),
        (first.stage, first.class_id, first.confidence, first.score),
        "a reused answer is the last one computed"
    );
    let cost = again.cost.unwrap();
    assert!(cost > 0.0 && cost < 0.01, "the detector alone: {cost}");
    assert!(
        first.cost.unwrap() > 1.0,
        "every stage, every head and the detector"
    );
    assert_eq!(classify(&mut c, &frames[0]).reused, Some(2));
    assert_eq!(
        classify(&mut c, &frames[0]).reused,
        None,
        "max-age 2: the third frame in a row runs"
    );
    // Another picture runs, and so does the first one after a reset.
    assert_eq!(classify(&mut c, &frames[1]).reused, None);
    assert_eq!(classify(&mut c, &frames[1]).reused, Some(1));
    c.reset_stream();
    assert_eq!(classify(&mut c, &frames[1]).reused, None);
}

#[test]
fn a_shape_detector_reuses_through_a_change_of_light_and_not_of_object() {
    let frames = reference_frames();
    let (_tmp, mut c) = reusing_dir(Detector::Shape, 0.05, 100);
    classify(&mut c, &frames[2]);
    let dimmer: Vec<u8> = frames[2]
        .iter()
        .map(|&p| (f32::from(p) * 0.8) as u8)
        .collect();
    assert_eq!(classify(&mut c, &dimmer).reused, Some(1));
    assert_eq!(classify(&mut c, &frames[3]).reused, None);
    let (_tmp, mut pixels) = reusing_dir(Detector::Pixels, 0.05, 100);
    classify(&mut pixels, &frames[2]);
    assert_eq!(classify(&mut pixels, &dimmer).reused, None);
}

/// Exits that let every frame leave at exit 0, with a promise the audit holds them to.
fn promising_dir(promise: f64) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let mut b = earlyexit_testkit::cut::valid_bundle([-1.0, -1.0]);
    b.promise = Some(bundle::Promise {
        measure: bundle::Measure::Agreement,
        target: promise,
        confidence: 0.95,
        frames: 1000,
    });
    write_bundle(&dir, &b);
    (tmp, dir)
}

#[test]
fn the_audit_compares_with_full_depth_and_falls_back_when_the_promise_breaks() {
    let [exit0, _, full] = classes_everywhere();
    let frames = reference_frames();
    let disagreeing = (0..16).filter(|&i| exit0[i] != full[i]).count();
    assert!(
        disagreeing > 0,
        "the reference frames must show exit 0 wrong somewhere"
    );
    let settings = |fallback| AuditSettings {
        rate: 1.0,
        seed: 1,
        fallback,
    };
    // Without the fallback: the bundle's answers, each audited against full depth, which the
    // segments after exit 0 compute.
    let (_tmp, dir) = promising_dir(0.999);
    let mut c = open(&dir, Mode::EarlyExit);
    c.set_audit(settings(false));
    for (i, pixels) in frames.iter().enumerate() {
        let d = classify(&mut c, pixels);
        assert!(d.audited && !d.fallback);
        assert_eq!((d.stage, d.class_id), (0, exit0[i]));
    }
    let a = c.auditor().unwrap();
    assert_eq!((a.audited, a.agreed), (16, (16 - disagreeing) as u64));
    assert_eq!(a.state(), AuditState::Broken);
    // With it: every frame is answered at full depth until the bundle is trusted, which a
    // promise of 0.999 never is here.
    let mut c = open(&dir, Mode::EarlyExit);
    c.set_audit(settings(true));
    let mut broken = 0;
    for (i, pixels) in frames.iter().enumerate() {
        let d = classify(&mut c, pixels);
        assert!(d.fallback);
        assert_eq!((d.stage, d.class_id), (2, full[i]));
        broken += usize::from(matches!(d.audit, Some(AuditEvent::Broken { .. })));
    }
    assert_eq!(
        broken, 1,
        "one warning, when the promise is first shown broken"
    );
    // A bundle without a promise has nothing to audit, nor has one that always answers as its
    // backbone (one stage, no stream rule), whatever it promises.
    let (_tmp, plain) = valid_dir([-1.0, -1.0]);
    let mut c = open(&plain, Mode::EarlyExit);
    c.set_audit(settings(true));
    assert!(c.auditor().is_none());
    assert!(!classify(&mut c, &frames[0]).audited);
    let one = earlyexit_testkit::fmnist_one_stage_bundle().unwrap();
    let (mut b, _) = bundle::read(&one.exits_yaml()).unwrap();
    b.promise = Some(bundle::Promise {
        measure: bundle::Measure::Agreement,
        target: 1.0,
        confidence: 1.0,
        frames: 0,
    });
    let mut c = Classifier::open(&b, Mode::EarlyExit, SessionOptions::default()).unwrap();
    c.set_audit(settings(true));
    assert!(c.auditor().is_none());
}
