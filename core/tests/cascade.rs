//! The cascade on the valid 3-stage Fashion-MNIST bundle against the stored reference logits.

mod common;

use common::npy::read_npy;
use common::{SEGMENT_MACS, asset, parts, valid_dir};
use earlyexit::bundle;
use earlyexit::{Classifier, Decision, Frame, Mode, PixelFormat, SessionOptions};

/// The 16 reference images as 28×28 GRAY8 frames (pixel = round(value · 255)).
fn reference_frames() -> Vec<Vec<u8>> {
    let (shape, values) = read_npy(&asset("fmnist_resnet20w32.ref_in.npy"));
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
    let (shape, logits) = read_npy(&asset("fmnist_resnet20w32.ref_out.npy"));
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
    let (b, _) = bundle::read(dir).unwrap();
    let mut c = Classifier::open(&b, mode, SessionOptions::default()).unwrap();
    reference_frames()
        .iter()
        .map(|pixels| {
            let frame = Frame::new(PixelFormat::Gray8, 28, 28, 28, pixels).unwrap();
            c.classify(&frame).unwrap()
        })
        .collect()
}

#[test]
fn full_mode_matches_the_reference_logits() {
    let (_tmp, dir) = valid_dir(common::THRESHOLDS);
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
    let (_tmp, full_dir) = valid_dir(common::THRESHOLDS);
    let full = classify_all(&full_dir, Mode::Full);
    let (_tmp2, dir) = valid_dir([2.0, 2.0]);
    let early = classify_all(&dir, Mode::EarlyExit);
    let total: u64 = SEGMENT_MACS.iter().sum();
    let heads: u64 = parts().heads.iter().map(|h| h.1).sum();
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
    let expected = (SEGMENT_MACS[0] + parts().heads[0].1) as f64 / total as f64;
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
