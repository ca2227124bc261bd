//! Learned exit gates (format `earlyexit/2`): a per-exit logistic model over the [`Signals`]
//! an exit knows of a frame, and [`ExitRule`], how a bundle's exit decides under either rule
//! (its metric, or its gate).
//!
//! The search trains gates on cached head outputs with the same [`Signals`] and
//! [`Gate::input_vector`] the cascade uses, and replays them with the same
//! [`FrameWalk`](crate::rule::FrameWalk), so a trained gate decides in the element exactly as
//! it did in training.

use crate::rule::{ExitDecision, Metric, MetricThreshold, Signals};

/// One signal a gate reads. Each is computed on the exit's softmax probabilities, or on the
/// classes answered before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateInput {
    /// The exit's score under a metric.
    Metric(Metric),
    /// 1 when this exit's class is the class of the previous exit that ran for the same frame,
    /// else 0 (0 at the first exit).
    AgreesPreviousExit,
    /// 1 when this exit's class is the class the bundle answered for the previous frame of the
    /// stream, else 0 (0 when there is none since the stream was reset).
    AgreesLastFrame,
}

impl GateInput {
    /// Every input: each metric's score, then the two agreements.
    pub const ALL: [GateInput; Metric::COUNT + 2] = {
        let mut all = [GateInput::AgreesPreviousExit; Metric::COUNT + 2];
        let mut i = 0;
        while i < Metric::COUNT {
            all[i] = GateInput::Metric(Metric::ALL[i]);
            i += 1;
        }
        all[Metric::COUNT + 1] = GateInput::AgreesLastFrame;
        all
    };

    /// The input's name in bundles (`gate.inputs`) and reports.
    pub fn word(self) -> &'static str {
        match self {
            GateInput::Metric(metric) => metric.word(),
            GateInput::AgreesPreviousExit => "agrees-previous-exit",
            GateInput::AgreesLastFrame => "agrees-last-frame",
        }
    }

    #[inline]
    pub fn value(self, signals: &Signals) -> f64 {
        let agrees = |other: Option<usize>| f64::from(u8::from(other == Some(signals.class_id)));
        match self {
            GateInput::Metric(metric) => signals.score(metric),
            GateInput::AgreesPreviousExit => agrees(signals.previous_exit),
            GateInput::AgreesLastFrame => agrees(signals.last_frame),
        }
    }
}

/// The bundle-wide part of a gate: which signals every exit's gate reads, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub inputs: Vec<GateInput>,
}

/// One exit's gate: probability = sigmoid(bias + Σ weights[i] · input[i]).
#[derive(Debug, Clone, PartialEq)]
pub struct GateWeights {
    /// One per [`Gate::inputs`], in the same order.
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Gate {
    /// The gate's inputs for these signals, in [`Gate::inputs`] order: a training row.
    pub fn input_vector(&self, signals: &Signals) -> Vec<f64> {
        self.inputs.iter().map(|i| i.value(signals)).collect()
    }

    /// The probability that `weights` gives these signals, without allocating.
    #[inline]
    pub fn probability(&self, weights: &GateWeights, signals: &Signals) -> f64 {
        weights.probability_of(self.inputs.iter().map(|i| i.value(signals)))
    }
}

impl GateWeights {
    /// The probability for an input vector from [`Gate::input_vector`].
    pub fn probability(&self, inputs: &[f64]) -> f64 {
        self.probability_of(inputs.iter().copied())
    }

    // Both entry points sum in the same order, so they agree to the last bit.
    #[inline]
    fn probability_of(&self, inputs: impl Iterator<Item = f64>) -> f64 {
        let z = self
            .weights
            .iter()
            .zip(inputs)
            .fold(self.bias, |z, (w, x)| z + w * x);
        sigmoid(z)
    }
}

/// The logistic function, without overflow for large |z|.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// An exit's gate against its threshold: the frame leaves when the gate's probability is at
/// least the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateThreshold<'a> {
    pub gate: &'a Gate,
    pub weights: &'a GateWeights,
    pub threshold: f64,
}

impl ExitDecision for GateThreshold<'_> {
    #[inline]
    fn leaves(&self, signals: &Signals) -> bool {
        self.gate.probability(self.weights, signals) >= self.threshold
    }
}

/// How a bundle's exit decides whether a frame leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExitRule<'a> {
    /// Format 1, and format 2 without a gate: the bundle's metric against the threshold.
    Metric(MetricThreshold),
    /// The gate's probability against the threshold.
    Gate(GateThreshold<'a>),
}

impl ExitRule<'_> {
    /// The rule of an exit: its gate when the bundle has one, else the metric.
    pub fn of<'a>(
        metric: Metric,
        gate: Option<&'a Gate>,
        weights: Option<&'a GateWeights>,
        threshold: f64,
    ) -> ExitRule<'a> {
        match (gate, weights) {
            (Some(gate), Some(weights)) => ExitRule::Gate(GateThreshold {
                gate,
                weights,
                threshold,
            }),
            _ => ExitRule::Metric(MetricThreshold { metric, threshold }),
        }
    }

    /// The value compared with the threshold: the metric's value, or the gate's probability.
    pub fn value(&self, signals: &Signals) -> f64 {
        match self {
            ExitRule::Metric(rule) => signals.score(rule.metric),
            ExitRule::Gate(rule) => rule.gate.probability(rule.weights, signals),
        }
    }
}

impl ExitDecision for ExitRule<'_> {
    #[inline]
    fn leaves(&self, signals: &Signals) -> bool {
        match self {
            ExitRule::Metric(rule) => rule.leaves(signals),
            ExitRule::Gate(rule) => rule.leaves(signals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{self, FrameWalk};

    fn probs(logits: &[f32]) -> Vec<f32> {
        let mut p = Vec::new();
        rule::softmax_into(logits, &mut p);
        p
    }

    /// The signals of probabilities `p` with what came before them.
    fn signals(p: &[f32], previous_exit: Option<usize>, last_frame: Option<usize>) -> Signals {
        Signals {
            previous_exit,
            last_frame,
            ..Signals::of(p)
        }
    }

    #[test]
    fn every_input_has_its_own_name_metrics_first() {
        let words: Vec<&str> = GateInput::ALL.iter().map(|i| i.word()).collect();
        let metrics: Vec<&str> = Metric::ALL.iter().map(|m| m.word()).collect();
        assert_eq!(words[..Metric::COUNT], metrics[..]);
        assert_eq!(
            words[Metric::COUNT..],
            ["agrees-previous-exit", "agrees-last-frame"]
        );
    }

    #[test]
    fn agreement_inputs_compare_classes() {
        // p = [0.2, 0.5, 0.3]: class 1.
        let p = probs(&[2f32.ln(), 5f32.ln(), 3f32.ln()]);
        let gate = Gate {
            inputs: GateInput::ALL.to_vec(),
        };
        let x = gate.input_vector(&signals(&p, Some(1), Some(2)));
        let at = |input: GateInput| {
            let i = GateInput::ALL.iter().position(|i| *i == input).unwrap();
            x[i]
        };
        assert!(
            (at(GateInput::Metric(Metric::MaxProb)) - 0.5).abs() < 1e-6,
            "{x:?}"
        );
        assert!(
            (at(GateInput::Metric(Metric::Margin)) - 0.2).abs() < 1e-6,
            "{x:?}"
        );
        let entropy = -(0.2f64 * 0.2f64.ln() + 0.5 * 0.5f64.ln() + 0.3 * 0.3f64.ln());
        assert!(
            (at(GateInput::Metric(Metric::Entropy)) - entropy).abs() < 1e-6,
            "{x:?}"
        );
        assert_eq!(
            [
                at(GateInput::AgreesPreviousExit),
                at(GateInput::AgreesLastFrame)
            ],
            [1.0, 0.0]
        );
        let x = gate.input_vector(&signals(&p, None, Some(1)));
        assert_eq!(&x[Metric::COUNT..], [0.0, 1.0]);
    }

    #[test]
    fn gate_probability_is_the_sigmoid_of_the_weighted_sum() {
        // p = [0.6, 0.2, 0.2]: max-prob 0.6, margin 0.4; class 0 agrees with the last frame only.
        let p = probs(&[3f32.ln(), 0.0, 0.0]);
        let s = signals(&p, Some(2), Some(0));
        let gate = Gate {
            inputs: vec![
                GateInput::AgreesLastFrame,
                GateInput::Metric(Metric::MaxProb),
                GateInput::Metric(Metric::Margin),
                GateInput::AgreesPreviousExit,
            ],
        };
        let weights = GateWeights {
            weights: vec![2.0, 1.5, -0.5, 4.0],
            bias: -3.0,
        };
        // z = -3 + 2·1 + 1.5·0.6 − 0.5·0.4 + 4·0 = -0.3; sigmoid(-0.3) = 0.425557483188341.
        let want = 0.425_557_483_188_341;
        let got = gate.probability(&weights, &s);
        assert!((got - want).abs() < 1e-6, "{got}");
        assert_eq!(weights.probability(&gate.input_vector(&s)), got);
        let rule =
            |threshold| ExitRule::of(Metric::MaxProb, Some(&gate), Some(&weights), threshold);
        assert_eq!(rule(0.42).value(&s), got);
        assert!(rule(0.42).leaves(&s) && !rule(0.43).leaves(&s));
        // The metric alone would leave at 0.43: the gate, not the metric, decided.
        let metric = ExitRule::of(Metric::MaxProb, Some(&gate), None, 0.43);
        assert_eq!(
            metric,
            ExitRule::Metric(MetricThreshold {
                metric: Metric::MaxProb,
                threshold: 0.43
            })
        );
        assert!(metric.leaves(&s));
    }

    #[test]
    fn metric_rule_keeps_each_metric_direction() {
        let p = probs(&[0.0; 4]);
        let s = Signals::of(&p);
        let rule = |metric, threshold| ExitRule::Metric(MetricThreshold { metric, threshold });
        assert!(rule(Metric::Entropy, 1.5).leaves(&s));
        assert!(!rule(Metric::Entropy, 1.0).leaves(&s));
        assert!(rule(Metric::MaxProb, 0.25).leaves(&s));
        assert!(!rule(Metric::Margin, 0.01).leaves(&s));
    }

    #[test]
    fn a_walk_passes_each_exit_class_to_the_next() {
        let gate = Gate {
            inputs: vec![GateInput::AgreesPreviousExit, GateInput::AgreesLastFrame],
        };
        // Leaves only when both agree: z = -15 + 10 + 10.
        let weights = GateWeights {
            weights: vec![10.0, 10.0],
            bias: -15.0,
        };
        let rule = ExitRule::Gate(GateThreshold {
            gate: &gate,
            weights: &weights,
            threshold: 0.5,
        });
        let class_2 = Signals::of(&probs(&[0.0, 0.0, 5.0]));
        let class_0 = Signals::of(&probs(&[5.0, 0.0, 0.0]));
        let mut walk = FrameWalk::new(Some(2));
        let (s, leaves) = walk.exit(class_2, &rule);
        assert_eq!(
            (s.previous_exit, s.last_frame, leaves),
            (None, Some(2), false)
        );
        let (s, leaves) = walk.exit(class_0, &rule);
        assert_eq!((s.previous_exit, leaves), (Some(2), false));
        let (s, leaves) = walk.exit(class_2, &rule);
        assert_eq!((s.previous_exit, leaves), (Some(0), false));
        let (s, leaves) = walk.exit(class_2, &rule);
        assert_eq!((s.previous_exit, leaves), (Some(2), true));
    }

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }
}
