//! What the certifying frames show of a configuration: bounds on the promised rate (or the
//! accuracy loss) that hold with a confidence, and whether they refute the target.

use earlyexit::bundle::Measure;

use crate::certify;
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
    /// The certifying frames show, with the same confidence, that the target is missed: what
    /// the selecting frames showed did not carry over (the footage changed, or the choice fits
    /// too few frames), which is more than bad luck.
    pub refuted: bool,
    /// Independent samples the certifying frames are worth, their correlation counted.
    pub effective: f64,
}

impl Certificate {
    /// What `cert`, a structure's run over the certifying frames of `reference`, shows about
    /// `goal`, each bound holding with `confidence`.
    pub fn of(
        cert: &Simulation,
        goal: &Goal,
        reference: &Reference,
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
        let bound = certify::rate_lower_bound(&failures, confidence);
        let loss_bound = goal
            .max_loss
            .map(|_| certify::mean_upper_bound(&penalties, confidence));
        let certified = match (goal.max_loss, loss_bound) {
            (Some(max), Some(b)) => b <= max,
            _ => bound >= goal.target,
        } && goal.min_agreement.is_none_or(|a| cert.agreement() >= a);
        let refuted = match goal.max_loss {
            Some(max) => certify::mean_lower_bound(&penalties, confidence) > max,
            None => certify::rate_upper_bound(&failures, confidence) < goal.target,
        };
        Certificate {
            bound,
            loss_bound,
            certified,
            refuted,
            effective: certify::effective_samples_of(&penalties),
        }
    }

    /// Higher is better: the least loss, or the highest rate.
    fn merit(&self) -> f64 {
        self.loss_bound.map_or(self.bound, |l| -l)
    }

    /// Between configurations none of which certifies: whether this one is better kept than
    /// `kept`. A refuted one never is; else the better bound wins.
    pub fn better_uncertified_than(&self, kept: Option<&Certificate>) -> bool {
        !self.refuted && kept.is_none_or(|k| self.merit() > k.merit())
    }
}
