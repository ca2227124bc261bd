//! The exit rules the search chooses among (a metric, and how patient it is) and the
//! threshold levels each exit is tried at.

use anyhow::Result;
use earlyexit::bundle::{Metric, Word};

use crate::calibrate::{ExitScores, Goal, Patience, Reference, never};
use crate::heads::Training;

pub(super) const METRICS: [Metric; 3] = [Metric::MaxProb, Metric::Margin, Metric::Entropy];

/// How patient the exit rules are, in the order of [`rule_of`]; format 2 writes the patient
/// ones as gates.
pub(super) const PATIENCE: [Patience; 3] = [Patience::None, Patience::AfterFirst, Patience::Every];

/// An exit rule the search may choose, by index: each of [`METRICS`] at each of [`PATIENCE`].
/// Returns the metric's index and the patience.
pub(super) fn rule_of(rule: usize) -> (usize, Patience) {
    (rule % METRICS.len(), PATIENCE[rule / METRICS.len()])
}

pub(super) fn rule_name(rule: usize) -> String {
    let (m, patience) = rule_of(rule);
    let word = METRICS[m].word();
    match patience {
        Patience::None => word.to_owned(),
        Patience::AfterFirst => format!("{word}, agreeing after exit 0"),
        Patience::Every => format!("{word}, agreeing (exit 0 votes)"),
    }
}

/// Threshold levels tried: at level τ, every exit of a structure lets a frame leave when a
/// logistic fit of "leaving here costs nothing" on its metric value says so with probability
/// at least τ. One level per structure, not one threshold per exit: selecting among
/// thresholds per exit on the same frames overfits them by about a point of accuracy.
pub(super) const LEVELS: [f64; 16] = [
    0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.993, 0.996,
    0.998,
];

/// The exit's threshold at each of [`LEVELS`]: a logistic fit, on the selecting frames, of
/// the chance that leaving costs nothing given the metric's value, solved for each level. A fit
/// with two parameters moves little with the frames it saw, unlike the frames' own ranks.
pub(super) fn level_thresholds(
    metric: Metric,
    s: &ExitScores,
    reference: &Reference,
    goal: &Goal,
    seed: u64,
) -> Result<Vec<f64>> {
    let x: Vec<f32> = s.score.iter().map(|&v| v as f32).collect();
    let harmless: Vec<bool> = s
        .class
        .iter()
        .enumerate()
        .map(|(i, &c)| goal.penalty(c, reference.teacher[i], reference.labels.map(|l| l[i])) <= 0.0)
        .collect();
    let training = Training {
        seed,
        ..Training::default()
    };
    let (w, bias) = crate::heads::logistic(&x, 1, &harmless, &training)?;
    let w = w[0];
    // Confidence must raise the chance: higher max-prob or margin, lower entropy.
    let sensible = earlyexit::rule::surer(metric) * w > 0.0;
    Ok(LEVELS
        .iter()
        .map(|&level| {
            if sensible {
                ((level / (1.0 - level)).ln() - bias) / w
            } else {
                never(metric)
            }
        })
        .collect())
}
