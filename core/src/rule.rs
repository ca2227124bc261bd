//! The exit rule: a head's logits become probabilities, a score under the bundle's metric, and a
//! decision to leave or go on. Gates (format 2) are in [`crate::gate`].

use crate::bundle::Metric;

/// What one exit (or the last stage) says about a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub class_id: usize,
    /// The probability of `class_id`.
    pub confidence: f64,
    /// The metric's value.
    pub score: f64,
}

/// Numerically stable softmax of float32 logits into `probs`.
pub fn softmax_into(logits: &[f32], probs: &mut Vec<f32>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    probs.clear();
    probs.extend(logits.iter().map(|&l| (l - max).exp()));
    let sum: f32 = probs.iter().sum();
    for p in probs.iter_mut() {
        *p /= sum;
    }
}

/// The two largest probabilities and the arg-max class (the lowest on ties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopTwo {
    pub class_id: usize,
    pub first: f32,
    pub second: f32,
}

pub fn top_two(probs: &[f32]) -> TopTwo {
    let (mut top1, mut top2) = ((0usize, f32::NEG_INFINITY), f32::NEG_INFINITY);
    for (i, &p) in probs.iter().enumerate() {
        if p > top1.1 {
            top2 = top1.1;
            top1 = (i, p);
        } else if p > top2 {
            top2 = p;
        }
    }
    TopTwo {
        class_id: top1.0,
        first: top1.1,
        second: top2,
    }
}

/// Top probability minus the second; a single class has a margin of its probability.
pub fn margin(top: TopTwo) -> f64 {
    f64::from(top.first) - f64::from(top.second.max(0.0))
}

/// −Σ p ln p, natural logarithm; zero probabilities add nothing. NaN when a probability is
/// NaN (a NaN or infinite logit), so that such a frame never leaves: skipping the NaN would
/// give 0, the surest entropy there is.
pub fn entropy(probs: &[f32]) -> f64 {
    if probs.iter().any(|p| p.is_nan()) {
        return f64::NAN;
    }
    -probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| f64::from(p) * f64::from(p).ln())
        .sum::<f64>()
}

/// Scores probabilities under `metric`.
pub fn verdict(metric: Metric, probs: &[f32]) -> Verdict {
    let top = top_two(probs);
    let score = match metric {
        Metric::MaxProb => f64::from(top.first),
        Metric::Margin => margin(top),
        Metric::Entropy => entropy(probs),
    };
    Verdict {
        class_id: top.class_id,
        confidence: f64::from(top.first),
        score,
    }
}

/// +1 where a higher score is surer (max-prob, margin), −1 where a lower one is (entropy):
/// the direction in which [`leaves`] compares.
pub fn surer(metric: Metric) -> f64 {
    match metric {
        Metric::MaxProb | Metric::Margin => 1.0,
        Metric::Entropy => -1.0,
    }
}

/// Whether a frame with this score leaves at an exit with this threshold, under the metric
/// alone (format 1). [`crate::gate::ExitRule`] decides for either rule.
pub fn leaves(metric: Metric, score: f64, threshold: f64) -> bool {
    match metric {
        Metric::MaxProb | Metric::Margin => score >= threshold,
        Metric::Entropy => score <= threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_surer_score_leaves_and_a_less_sure_one_stays() {
        for metric in [Metric::MaxProb, Metric::Margin, Metric::Entropy] {
            let step = 0.1 * surer(metric);
            assert!(leaves(metric, 0.5 + step, 0.5), "{metric:?}");
            assert!(!leaves(metric, 0.5 - step, 0.5), "{metric:?}");
        }
    }

    fn probs(logits: &[f32]) -> Vec<f32> {
        let mut p = Vec::new();
        softmax_into(logits, &mut p);
        p
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = probs(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0);
        let p = probs(&[0.1, -2.0, 3.5, 0.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn max_prob_leaves_at_or_above_threshold() {
        // ln 3 vs 0 vs 0: p = [0.6, 0.2, 0.2].
        let p = probs(&[3f32.ln(), 0.0, 0.0]);
        let v = verdict(Metric::MaxProb, &p);
        assert_eq!(v.class_id, 0);
        assert!((v.score - 0.6).abs() < 1e-6 && (v.confidence - 0.6).abs() < 1e-6);
        assert!(leaves(Metric::MaxProb, v.score, 0.59));
        assert!(!leaves(Metric::MaxProb, v.score, 0.61));
    }

    #[test]
    fn margin_is_top1_minus_top2() {
        // p = [0.2, 0.5, 0.3]
        let p = probs(&[2f32.ln(), 5f32.ln(), 3f32.ln()]);
        let v = verdict(Metric::Margin, &p);
        assert_eq!(v.class_id, 1);
        assert!((v.score - 0.2).abs() < 1e-6, "{}", v.score);
        assert!(leaves(Metric::Margin, v.score, 0.19));
        assert!(!leaves(Metric::Margin, v.score, 0.21));
    }

    #[test]
    fn entropy_leaves_at_or_below_threshold() {
        let uniform = probs(&[0.0; 4]);
        let v = verdict(Metric::Entropy, &uniform);
        assert!((v.score - 4f64.ln()).abs() < 1e-6);
        assert!(!leaves(Metric::Entropy, v.score, 1.0));
        let sharp = probs(&[10.0, 0.0, 0.0, 0.0]);
        let v = verdict(Metric::Entropy, &sharp);
        assert_eq!(v.class_id, 0);
        assert!(v.score < 0.01 && leaves(Metric::Entropy, v.score, 0.01));
    }

    #[test]
    fn a_nan_or_infinite_logit_never_leaves() {
        for logits in [[f32::NAN, 1.0, 2.0], [f32::INFINITY, 0.0, 0.0]] {
            let p = probs(&logits);
            for (metric, loosest) in [
                (Metric::MaxProb, 0.0),
                (Metric::Margin, 0.0),
                (Metric::Entropy, f64::MAX),
            ] {
                let v = verdict(metric, &p);
                assert!(
                    !leaves(metric, v.score, loosest),
                    "{logits:?} {metric:?} {v:?}"
                );
            }
        }
    }

    #[test]
    fn ties_pick_the_lowest_class() {
        let v = verdict(Metric::Margin, &probs(&[1.0, 1.0, 0.0]));
        assert_eq!(v.class_id, 0);
        assert!(v.score.abs() < 1e-7);
    }
}
