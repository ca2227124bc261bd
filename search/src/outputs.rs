//! One exit's outputs on many frames, cached: each frame's class and its score under every
//! metric. The search and `evaluate --refit` replay exit rules on them with the same walk the
//! cascade takes, without running any model again.

use std::ops::Range;

use earlyexit::rule::{Metric, PerMetric, Signals};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExitOutputs {
    /// The exit's class per frame.
    pub class: Vec<u32>,
    /// Per metric, the exit's score per frame.
    pub scores: PerMetric<Vec<f64>>,
}

impl ExitOutputs {
    pub fn frames(&self) -> usize {
        self.class.len()
    }

    /// Adds a frame the exit said `signals` of.
    pub fn push(&mut self, signals: &Signals) {
        self.class.push(signals.class_id as u32);
        for ((_, score), column) in signals.scores.iter().zip(self.scores.values_mut()) {
            column.push(*score);
        }
    }

    /// Adds a frame the exit said nothing of: a class no model has and NaN scores, which clear
    /// no threshold.
    pub fn push_missing(&mut self) {
        self.class.push(u32::MAX);
        for column in self.scores.values_mut() {
            column.push(f64::NAN);
        }
    }

    /// The scores of every frame under `metric`.
    pub fn scores(&self, metric: Metric) -> &[f64] {
        &self.scores[metric]
    }

    /// What the exit knew of frame `i`, before a walk says what came before it.
    pub fn signals(&self, i: usize) -> Signals {
        Signals {
            class_id: self.class[i] as usize,
            scores: PerMetric::from_fn(|m| self.scores[m][i]),
            previous_exit: None,
            last_frame: None,
        }
    }

    /// The frames at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ExitOutputs {
        let mut scores = PerMetric::<Vec<f64>>::default();
        for ((metric, _), column) in self.scores.iter().zip(scores.values_mut()) {
            *column = indices.iter().map(|&i| self.scores[metric][i]).collect();
        }
        ExitOutputs {
            class: indices.iter().map(|&i| self.class[i]).collect(),
            scores,
        }
    }

    /// Appends the frames of `other` in `range`.
    pub fn extend_from(&mut self, other: &ExitOutputs, range: Range<usize>) {
        self.class.extend(&other.class[range.clone()]);
        for ((metric, _), column) in other.scores.iter().zip(self.scores.values_mut()) {
            column.extend(&other.scores[metric][range.clone()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_as_they_went_in() {
        let mut probs = Vec::new();
        let mut outputs = ExitOutputs::default();
        for logits in [[0.0, 2.0, 1.0], [3.0, 0.0, 0.5], [0.1, 0.2, 0.3]] {
            earlyexit::rule::softmax_into(&logits, &mut probs);
            outputs.push(&Signals::of(&probs));
        }
        outputs.push_missing();
        assert_eq!(outputs.frames(), 4);
        assert_eq!(outputs.class[..3], [1, 0, 2]);
        earlyexit::rule::softmax_into(&[3.0, 0.0, 0.5], &mut probs);
        assert_eq!(outputs.signals(1), Signals::of(&probs));
        assert!(outputs.signals(3).scores.iter().all(|(_, s)| s.is_nan()));

        let picked = outputs.subset(&[2, 1]);
        assert_eq!(picked.signals(1), outputs.signals(1));
        assert_eq!(picked.signals(0), outputs.signals(2));
        let mut joined = ExitOutputs::default();
        joined.extend_from(&outputs, 1..3);
        assert_eq!(joined, outputs.subset(&[1, 2]));
    }
}
