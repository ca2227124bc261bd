//! The exit rules the search chooses among (a metric, and how patient it is) and the
//! threshold levels each exit is tried at.

use anyhow::Result;
use earlyexit::bundle::Format;
use earlyexit::rule::Metric;

use crate::goal::Goal;
use crate::heads::Training;
use crate::outputs::ExitOutputs;
use crate::simulate::{Patience, Reference};

/// An exit rule the search may choose: a metric, and how patient the exits are. Format 2
/// writes the patient ones as gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub metric: Metric,
    pub patience: Patience,
}

impl Rule {
    /// The rule of the baselines: the largest probability, no patience.
    pub const PLAIN: Rule = Rule {
        metric: Metric::MaxProb,
        patience: Patience::None,
    };

    /// The rules a bundle of `format` can write: each metric it names alone and, in format 2,
    /// where patient rules are written as gates, each at every patience.
    pub fn all(format: Format) -> Vec<Rule> {
        let patience: &[Patience] = match format {
            Format::V1 => &Patience::ALL[..1],
            Format::V2 | Format::V3 => &Patience::ALL,
        };
        patience
            .iter()
            .flat_map(|&patience| {
                format
                    .metrics()
                    .iter()
                    .map(move |&metric| Rule { metric, patience })
            })
            .collect()
    }

    /// The rule's place among every rule (each metric at each patience): each rule's search is
    /// seeded apart by it.
    pub fn ordinal(self) -> usize {
        let patience = Patience::ALL
            .iter()
            .position(|p| *p == self.patience)
            .unwrap_or(0);
        patience * Metric::COUNT + self.metric as usize
    }
}

/// Threshold levels tried: at level τ, every exit of a structure lets a frame leave when a
/// logistic fit of "leaving here costs nothing" on its metric value says so with probability
/// at least τ. One level per structure, not one threshold per exit: selecting among
/// thresholds per exit on the same frames overfits them by about a point of accuracy.
pub const LEVELS: [f64; 16] = [
    0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.993, 0.996,
    0.998,
];

/// The exit's threshold under `metric` at each of [`LEVELS`]: a logistic fit, on the selecting
/// frames, of the chance that leaving costs nothing given the metric's value, solved for each
/// level. A fit with two parameters moves little with the frames it saw, unlike the frames' own
/// ranks.
pub fn level_thresholds(
    metric: Metric,
    outputs: &ExitOutputs,
    reference: &Reference,
    goal: &Goal,
    seed: u64,
) -> Result<Vec<f64>> {
    let x: Vec<f32> = outputs.scores(metric).iter().map(|&v| v as f32).collect();
    let harmless: Vec<bool> = (0..outputs.frames())
        .map(|i| reference.harmless(goal, i, outputs.class(i)))
        .collect();
    let training = Training {
        seed,
        ..Training::default()
    };
    let (w, bias) = crate::heads::logistic(&x, 1, &harmless, &training)?;
    let w = w[0];
    // Confidence must raise the chance: a surer score, a likelier harmless exit.
    let sensible = metric.sign() * w > 0.0;
    Ok(LEVELS
        .iter()
        .map(|&level| {
            if sensible {
                ((level / (1.0 - level)).ln() - bias) / w
            } else {
                metric.never()
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_its_own_ordinal_and_plain_rules_come_first() {
        let all = Rule::all(Format::V2);
        assert_eq!(all.len(), Metric::COUNT * Patience::ALL.len());
        let ordinals: Vec<usize> = all.iter().map(|r| r.ordinal()).collect();
        assert_eq!(ordinals, (0..all.len()).collect::<Vec<_>>());
        assert_eq!(all[0], Rule::PLAIN);
    }

    #[test]
    fn format_1_tries_its_own_metrics_alone() {
        let plain = Rule::all(Format::V1);
        let metrics: Vec<Metric> = plain.iter().map(|r| r.metric).collect();
        assert_eq!(metrics, Format::V1.metrics());
        assert!(plain.iter().all(|r| r.patience == Patience::None));
        // Format 1's metrics come first in every list, so format-1 searches keep their seeds.
        assert_eq!(
            plain.iter().map(|r| r.ordinal()).collect::<Vec<_>>(),
            (0..plain.len()).collect::<Vec<_>>()
        );
    }
}
