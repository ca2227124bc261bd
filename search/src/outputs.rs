//! One exit's outputs on many frames, cached: each frame's class and its score under every
//! metric. The search and `evaluate --refit` replay exit rules on them with the same walk the
//! cascade takes, without running any model again.

use earlyexit::rule::{Metric, PerMetric, Signals};

/// What the exit said of one frame. Kept together, so that a replay reads one row per exit and
/// frame.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    class: u32,
    scores: PerMetric<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExitOutputs {
    rows: Vec<Row>,
}

impl ExitOutputs {
    /// From a class per frame and, per metric, a score per frame (all as long): for tests that
    /// make up an exit.
    #[cfg(test)]
    pub fn from_columns(class: &[u32], scores: &PerMetric<Vec<f64>>) -> ExitOutputs {
        ExitOutputs {
            rows: class
                .iter()
                .enumerate()
                .map(|(i, &class)| Row {
                    class,
                    scores: PerMetric::from_fn(|m| scores[m][i]),
                })
                .collect(),
        }
    }

    pub fn frames(&self) -> usize {
        self.rows.len()
    }

    /// Adds a frame the exit said `signals` of.
    pub fn push(&mut self, signals: &Signals) {
        self.rows.push(Row {
            class: signals.class_id as u32,
            scores: signals.scores,
        });
    }

    /// Adds a frame the exit said nothing of: a class no model has and NaN scores, which clear
    /// no threshold.
    pub fn push_missing(&mut self) {
        self.rows.push(Row {
            class: u32::MAX,
            scores: PerMetric::from_fn(|_| f64::NAN),
        });
    }

    /// The exit's class on frame `i`.
    pub fn class(&self, i: usize) -> u32 {
        self.rows[i].class
    }

    /// The exit's class on every frame.
    pub fn classes(&self) -> Vec<u32> {
        self.rows.iter().map(|r| r.class).collect()
    }

    /// The exit's score on frame `i` under `metric`.
    pub fn score(&self, i: usize, metric: Metric) -> f64 {
        self.rows[i].scores[metric]
    }

    /// The exit's score on every frame under `metric`.
    pub fn scores(&self, metric: Metric) -> Vec<f64> {
        self.rows.iter().map(|r| r.scores[metric]).collect()
    }

    /// What the exit knew of frame `i`, before a walk says what came before it.
    pub fn signals(&self, i: usize) -> Signals {
        let row = &self.rows[i];
        Signals {
            class_id: row.class as usize,
            scores: row.scores,
            previous_exit: None,
            last_frame: None,
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
        let columns = PerMetric::from_fn(|m| outputs.scores(m));
        assert_eq!(
            ExitOutputs::from_columns(&outputs.classes(), &columns),
            outputs
        );
        outputs.push_missing();
        assert_eq!(outputs.frames(), 4);
        assert_eq!(outputs.classes()[..3], [1, 0, 2]);
        earlyexit::rule::softmax_into(&[3.0, 0.0, 0.5], &mut probs);
        assert_eq!(outputs.signals(1), Signals::of(&probs));
        assert!(outputs.signals(3).scores.iter().all(|(_, s)| s.is_nan()));
        for metric in Metric::ALL {
            assert_eq!(outputs.score(1, metric), Signals::of(&probs).score(metric));
            assert_eq!(outputs.scores(metric)[1], outputs.score(1, metric));
        }
    }
}
