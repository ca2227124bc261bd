//! Learned exit gates (format `earlyexit/2`): a per-exit logistic model over signals that an
//! exit knows about a frame, and the one place that decides whether a frame leaves at an exit,
//! under either rule (the bundle's metric, or a gate).
//!
//! The search trains gates on cached head outputs with the same [`Signals`] and
//! [`Gate::input_vector`] the cascade uses, and can replay a stream with [`FrameWalk`] as the
//! cascade does, so a trained gate decides in the element exactly as it did in training.

use crate::bundle::Metric;
use crate::rule::{self, Verdict};

/// One signal a gate reads. Each is computed on the exit's softmax probabilities, or on the
/// classes answered before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateInput {
    /// The largest probability.
    MaxProb,
    /// The top probability minus the second.
    Margin,
    /// −Σ p ln p, natural logarithm.
    Entropy,
    /// 1 when this exit's class is the class of the previous exit that ran for the same frame,
    /// else 0 (0 at the first exit).
    AgreesPreviousExit,
    /// 1 when this exit's class is the class the bundle answered for the previous frame of the
    /// stream, else 0 (0 when there is none since the stream was reset).
    AgreesLastFrame,
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

/// What an exit knows about a frame when it decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// The exit's arg-max class (the lowest on ties).
    pub class_id: usize,
    pub max_prob: f64,
    pub margin: f64,
    pub entropy: f64,
    /// The class of the previous exit that ran for this frame, if any.
    pub previous_exit: Option<usize>,
    /// The class the bundle answered for the stream's previous frame, if any.
    pub last_frame: Option<usize>,
}

impl Signals {
    /// The signals of an exit whose softmax probabilities are `probs`.
    pub fn new(probs: &[f32], previous_exit: Option<usize>, last_frame: Option<usize>) -> Signals {
        let top = rule::top_two(probs);
        Signals {
            class_id: top.class_id,
            max_prob: f64::from(top.first),
            margin: rule::margin(top),
            entropy: rule::entropy(probs),
            previous_exit,
            last_frame,
        }
    }

    /// The value of `metric`, as [`rule::verdict`] computes it.
    pub fn metric(&self, metric: Metric) -> f64 {
        match metric {
            Metric::MaxProb => self.max_prob,
            Metric::Margin => self.margin,
            Metric::Entropy => self.entropy,
        }
    }

    /// The verdict reported for a frame that leaves here: the score is always the metric's.
    pub fn verdict(&self, metric: Metric) -> Verdict {
        Verdict {
            class_id: self.class_id,
            confidence: self.max_prob,
            score: self.metric(metric),
        }
    }
}

/// The input that reads a metric's value.
impl From<Metric> for GateInput {
    fn from(metric: Metric) -> GateInput {
        match metric {
            Metric::MaxProb => GateInput::MaxProb,
            Metric::Margin => GateInput::Margin,
            Metric::Entropy => GateInput::Entropy,
        }
    }
}

impl GateInput {
    pub fn value(self, signals: &Signals) -> f64 {
        let agrees = |other: Option<usize>| f64::from(u8::from(other == Some(signals.class_id)));
        match self {
            GateInput::MaxProb => signals.max_prob,
            GateInput::Margin => signals.margin,
            GateInput::Entropy => signals.entropy,
            GateInput::AgreesPreviousExit => agrees(signals.previous_exit),
            GateInput::AgreesLastFrame => agrees(signals.last_frame),
        }
    }
}

impl Gate {
    /// The gate's inputs for these signals, in [`Gate::inputs`] order: a training row.
    pub fn input_vector(&self, signals: &Signals) -> Vec<f64> {
        self.inputs.iter().map(|i| i.value(signals)).collect()
    }

    /// The probability that `weights` gives these signals, without allocating.
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
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// How an exit decides whether a frame leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExitRule<'a> {
    /// Format 1, and format 2 without a gate: the bundle's metric against the threshold.
    Metric(Metric),
    /// The gate's probability against the threshold.
    Gate(&'a Gate, &'a GateWeights),
}

impl ExitRule<'_> {
    /// The rule of an exit: its gate when the bundle has one, else the metric.
    pub fn of<'a>(
        metric: Metric,
        gate: Option<&'a Gate>,
        weights: Option<&'a GateWeights>,
    ) -> ExitRule<'a> {
        match (gate, weights) {
            (Some(gate), Some(weights)) => ExitRule::Gate(gate, weights),
            _ => ExitRule::Metric(metric),
        }
    }

    /// The value compared with the threshold: the metric's value, or the gate's probability.
    pub fn value(&self, signals: &Signals) -> f64 {
        match self {
            ExitRule::Metric(metric) => signals.metric(*metric),
            ExitRule::Gate(gate, weights) => gate.probability(weights, signals),
        }
    }

    /// Whether the frame leaves at an exit with this threshold.
    pub fn leaves(&self, signals: &Signals, threshold: f64) -> bool {
        let value = self.value(signals);
        match self {
            ExitRule::Metric(metric) => rule::leaves(*metric, value, threshold),
            ExitRule::Gate(..) => value >= threshold,
        }
    }
}

/// One frame's way through the exits that run for it, in order. It carries what
/// `agrees-previous-exit` and `agrees-last-frame` read, for the cascade and for a replay on
/// cached head outputs alike. The stream's next `last_frame` is the class the frame is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameWalk {
    previous_exit: Option<usize>,
    last_frame: Option<usize>,
}

impl FrameWalk {
    /// A frame whose stream answered `last_frame` for the previous frame.
    pub fn new(last_frame: Option<usize>) -> FrameWalk {
        FrameWalk {
            previous_exit: None,
            last_frame,
        }
    }

    /// The next exit, with its softmax probabilities: its signals, and whether the frame leaves.
    pub fn exit(&mut self, probs: &[f32], rule: ExitRule<'_>, threshold: f64) -> (Signals, bool) {
        self.exit_with(Signals::new(probs, None, None), rule, threshold)
    }

    /// [`FrameWalk::exit`] for an exit whose signals are known already (a replay on cached
    /// head outputs): their `previous_exit` and `last_frame` are the walk's.
    pub fn exit_with(
        &mut self,
        signals: Signals,
        rule: ExitRule<'_>,
        threshold: f64,
    ) -> (Signals, bool) {
        let signals = Signals {
            previous_exit: self.previous_exit,
            last_frame: self.last_frame,
            ..signals
        };
        self.previous_exit = Some(signals.class_id);
        (signals, rule.leaves(&signals, threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(logits: &[f32]) -> Vec<f32> {
        let mut p = Vec::new();
        rule::softmax_into(logits, &mut p);
        p
    }

    const ALL: [GateInput; 5] = [
        GateInput::MaxProb,
        GateInput::Margin,
        GateInput::Entropy,
        GateInput::AgreesPreviousExit,
        GateInput::AgreesLastFrame,
    ];

    #[test]
    fn signals_match_the_verdict_of_every_metric() {
        let p = probs(&[0.3, 2.0, -1.0, 1.2]);
        let s = Signals::new(&p, None, None);
        for metric in [Metric::MaxProb, Metric::Margin, Metric::Entropy] {
            assert_eq!(s.verdict(metric), rule::verdict(metric, &p), "{metric:?}");
        }
    }

    #[test]
    fn agreement_inputs_compare_classes() {
        // p = [0.2, 0.5, 0.3]: class 1.
        let p = probs(&[2f32.ln(), 5f32.ln(), 3f32.ln()]);
        let gate = Gate {
            inputs: ALL.to_vec(),
        };
        let x = gate.input_vector(&Signals::new(&p, Some(1), Some(2)));
        assert!(
            (x[0] - 0.5).abs() < 1e-6 && (x[1] - 0.2).abs() < 1e-6,
            "{x:?}"
        );
        let entropy = -(0.2f64 * 0.2f64.ln() + 0.5 * 0.5f64.ln() + 0.3 * 0.3f64.ln());
        assert!((x[2] - entropy).abs() < 1e-6, "{x:?}");
        assert_eq!(&x[3..], [1.0, 0.0]);
        let x = gate.input_vector(&Signals::new(&p, None, Some(1)));
        assert_eq!(&x[3..], [0.0, 1.0]);
    }

    #[test]
    fn gate_probability_is_the_sigmoid_of_the_weighted_sum() {
        // p = [0.6, 0.2, 0.2]: max-prob 0.6, margin 0.4; class 0 agrees with the last frame only.
        let p = probs(&[3f32.ln(), 0.0, 0.0]);
        let s = Signals::new(&p, Some(2), Some(0));
        let gate = Gate {
            inputs: vec![
                GateInput::AgreesLastFrame,
                GateInput::MaxProb,
                GateInput::Margin,
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
        let rule = ExitRule::of(Metric::MaxProb, Some(&gate), Some(&weights));
        assert_eq!(rule.value(&s), got);
        assert!(rule.leaves(&s, 0.42) && !rule.leaves(&s, 0.43));
        // The metric alone would leave at 0.43: the gate, not the metric, decided.
        let metric = ExitRule::of(Metric::MaxProb, Some(&gate), None);
        assert_eq!(metric, ExitRule::Metric(Metric::MaxProb));
        assert!(metric.leaves(&s, 0.43));
    }

    #[test]
    fn metric_rule_keeps_each_metric_direction() {
        let p = probs(&[0.0; 4]);
        let s = Signals::new(&p, None, None);
        assert!(ExitRule::Metric(Metric::Entropy).leaves(&s, 1.5));
        assert!(!ExitRule::Metric(Metric::Entropy).leaves(&s, 1.0));
        assert!(ExitRule::Metric(Metric::MaxProb).leaves(&s, 0.25));
        assert!(!ExitRule::Metric(Metric::Margin).leaves(&s, 0.01));
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
        let rule = ExitRule::Gate(&gate, &weights);
        let class_2 = probs(&[0.0, 0.0, 5.0]);
        let class_0 = probs(&[5.0, 0.0, 0.0]);
        let mut walk = FrameWalk::new(Some(2));
        let (s, leaves) = walk.exit(&class_2, rule, 0.5);
        assert_eq!(
            (s.previous_exit, s.last_frame, leaves),
            (None, Some(2), false)
        );
        let (s, leaves) = walk.exit(&class_0, rule, 0.5);
        assert_eq!((s.previous_exit, leaves), (Some(2), false));
        let (s, leaves) = walk.exit(&class_2, rule, 0.5);
        assert_eq!((s.previous_exit, leaves), (Some(0), false));
        let (s, leaves) = walk.exit(&class_2, rule, 0.5);
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
