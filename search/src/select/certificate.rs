//! What the certifying frames show of a configuration: bounds on the promised rate (or the
//! accuracy loss) that hold with a confidence, and, short of the target, how many frames like
//! them would certify it.

use earlyexit::bundle::Measure;

use crate::certify::Evidence;
use crate::goal::Goal;
use crate::simulate::{Reference, Simulation};

/// What the certifying frames show of a structure.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Lower bound on the promised rate (agreement, or accuracy with ground truth).
    pub bound: f64,
    /// Under a loss goal: upper bound on the accuracy loss against the backbone.
    pub loss_bound: Option<f64>,
    pub certified: bool,
    /// Independent samples the certifying frames are worth, their correlation counted.
    pub effective: f64,
    /// Roughly how many certifying frames like these (the same rates, the same correlation)
    /// would certify the target; `None` when the structure's own figure on them misses it, which
    /// more frames would not fix.
    pub frames_needed: Option<f64>,
}

impl Certificate {
    /// What `cert`, a structure's run over the certifying frames of `reference`, shows about
    /// `goal`, each bound holding with `confidence`, the frames worth at most `scenes`
    /// independent samples (see [`effective_scenes`](crate::certify::effective_scenes)).
    pub fn of(
        cert: &Simulation,
        goal: &Goal,
        reference: &Reference,
        scenes: f64,
        confidence: f64,
    ) -> Certificate {
        let penalties = cert.penalties(goal, reference);
        // The promise is a rate: of agreement, or of accuracy (also under a loss goal).
        let failures: Vec<bool> = match (goal.measure, reference.labels) {
            (Measure::Accuracy, Some(l)) => {
                cert.answers.iter().zip(l).map(|(a, l)| a != l).collect()
            }
            _ => penalties.iter().map(|&p| p > 0.0).collect(),
        };
        let failures = Evidence::of_failures(&failures, scenes);
        let penalties = Evidence::new(penalties, scenes);
        let bound = failures.rate_lower_bound(confidence);
        let loss_bound = goal
            .max_loss
            .map(|_| penalties.mean_upper_bound(confidence));
        let certified = match (goal.max_loss, loss_bound) {
            (Some(max), Some(b)) => b <= max,
            _ => bound >= goal.target,
        } && goal.min_agreement.is_none_or(|a| cert.agreement() >= a);
        let frames_needed = match goal.max_loss {
            Some(max) => penalties.frames_to_reach_mean(max, confidence),
            None => failures.frames_to_reach_rate(goal.target, confidence),
        };
        Certificate {
            bound,
            loss_bound,
            certified,
            effective: penalties.effective(),
            frames_needed,
        }
    }
}
