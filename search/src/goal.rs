//! What the search is asked to keep on held-out frames, and what each frame's answer costs
//! against it.

use earlyexit::bundle::Measure;

/// What must hold on held-out frames.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// What the promise certifies.
    pub measure: Measure,
    /// The lowest rate of `measure`; unused under `max_loss`.
    pub target: f64,
    /// With `--target-accuracy`, agreement may be constrained too.
    pub min_agreement: Option<f64>,
    /// With `--max-accuracy-loss`: accuracy may fall at most this far below the full
    /// backbone's on the same frames.
    pub max_loss: Option<f64>,
}

impl Goal {
    /// Agreement with the backbone at least `target`, nothing else.
    pub fn agreement(target: f64) -> Goal {
        Goal {
            measure: Measure::Agreement,
            target,
            min_agreement: None,
            max_loss: None,
        }
    }

    /// What the bundle's answer costs on one frame: 1 for a failure, and under `max_loss`
    /// -1 where the bundle is right and the backbone wrong (that gains accuracy back).
    pub fn penalty(&self, answer: u32, teacher: u32, label: Option<u32>) -> f64 {
        let wrong = |c: u32| f64::from(u8::from(label.is_none_or(|l| c != l)));
        match (self.measure, self.max_loss) {
            (Measure::Accuracy, Some(_)) => wrong(answer) - wrong(teacher),
            (Measure::Accuracy, None) => wrong(answer),
            (Measure::Agreement, _) => f64::from(u8::from(answer != teacher)),
        }
    }

    /// Whether an answer costs nothing under the goal: what exit thresholds and gates learn.
    pub fn harmless(&self, answer: u32, teacher: u32, label: Option<u32>) -> bool {
        self.penalty(answer, teacher, label) <= 0.0
    }

    /// The lowest rate of `measure` the goal allows, given the backbone's own on the same
    /// frames: under `max_loss` it moves with the backbone.
    pub fn level(&self, backbone_rate: f64) -> f64 {
        match self.max_loss {
            Some(loss) => backbone_rate - loss,
            None => self.target,
        }
    }

    /// The highest mean penalty the goal allows.
    pub fn limit(&self) -> f64 {
        self.max_loss.unwrap_or(1.0 - self.target)
    }
}
