//! The exit rule. A head's probabilities become a score under each exit [`Metric`] (all that a
//! metric means lives in its one entry of the `metrics!` list below), what an exit knows of a frame is its
//! [`Signals`], and [`FrameWalk`] is the one walk of a frame through the exits: the cascade
//! takes it on live frames, and the search's calibration, gates and refit on cached head
//! outputs, so that they cannot decide a frame differently. Gates (format 2) are in
//! [`crate::gate`].

use std::cmp::Ordering;
use std::ops::Index;

/// Which way a metric's scores get surer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surer {
    Higher,
    Lower,
}

/// What one exit metric means: its name in bundles and reports, which way it is surer, a
/// threshold that no score clears, and how it scores probabilities.
struct Definition {
    word: &'static str,
    surer: Surer,
    /// Finite, because bundles write only finite thresholds.
    never: f64,
    score: fn(&Probabilities) -> f64,
}

/// Declares [`Metric`] and its table of [`Definition`]s from one list, so that adding a metric
/// is adding one entry here (with its tests below).
macro_rules! metrics {
    ($($(#[$doc:meta])* $variant:ident => $definition:expr,)+) => {
        /// The exit metric: how a head's probabilities become a score.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric {
            $($(#[$doc])* $variant,)+
        }

        impl Metric {
            /// Every metric, in the order bundles, reports and the search list them.
            pub const ALL: [Metric; [$(Metric::$variant),+].len()] = [$(Metric::$variant),+];

            #[inline]
            fn definition(self) -> &'static Definition {
                match self {
                    $(Metric::$variant => {
                        const DEFINITION: Definition = $definition;
                        &DEFINITION
                    })+
                }
            }
        }
    };
}

metrics! {
    /// The largest probability.
    MaxProb => Definition {
        word: "max-prob",
        surer: Surer::Higher,
        // Probabilities never exceed 1.
        never: 2.0,
        score: |p| f64::from(p.top.first),
    },
    /// The top probability minus the second; a single class has a margin of its probability.
    Margin => Definition {
        word: "margin",
        surer: Surer::Higher,
        never: 2.0,
        score: |p| f64::from(p.top.first) - f64::from(p.top.second.max(0.0)),
    },
    /// −Σ p ln p, natural logarithm. NaN when a probability is NaN (a NaN or infinite logit), so
    /// that such a frame never leaves: skipping the NaN would give 0, the surest entropy there is.
    Entropy => Definition {
        word: "entropy",
        surer: Surer::Lower,
        // Entropy is never negative.
        never: -1.0,
        score: |p| entropy(p.probs),
    },
    /// The second probability over the top one: 0 when one class takes everything, 1 at a tie.
    /// Relative where the margin is absolute: frames with the same margin differ in ratio.
    Top2Ratio => Definition {
        word: "top2-ratio",
        surer: Surer::Lower,
        // A ratio of probabilities is never negative.
        never: -1.0,
        // NaN unless the top probability is a positive number (NaN logits give none), so that
        // such a frame never leaves.
        score: |p| match f64::from(p.top.first) {
            first if first > 0.0 => f64::from(p.top.second.max(0.0)) / first,
            _ => f64::NAN,
        },
    },
}

/// The format's default.
impl Default for Metric {
    fn default() -> Metric {
        Metric::MaxProb
    }
}

impl Metric {
    /// How many metrics there are.
    pub const COUNT: usize = Metric::ALL.len();

    /// The metric's name in bundles (`metric:`, `gate.inputs`) and reports.
    pub fn word(self) -> &'static str {
        self.definition().word
    }

    #[inline]
    pub fn surer(self) -> Surer {
        self.definition().surer
    }

    /// +1 where a higher score is surer, −1 where a lower one is: the sign that turns a score
    /// into "sureness", for fits and gates that need one direction.
    #[inline]
    pub fn sign(self) -> f64 {
        match self.surer() {
            Surer::Higher => 1.0,
            Surer::Lower => -1.0,
        }
    }

    /// A threshold that no score clears, NaN included: an exit that never lets a frame leave.
    #[inline]
    pub fn never(self) -> f64 {
        self.definition().never
    }

    /// The score of probabilities.
    #[inline]
    pub fn score(self, probs: &Probabilities) -> f64 {
        (self.definition().score)(probs)
    }

    /// Whether a frame with this score leaves at an exit with this threshold. NaN never leaves.
    #[inline]
    pub fn leaves(self, score: f64, threshold: f64) -> bool {
        match self.surer() {
            Surer::Higher => score >= threshold,
            Surer::Lower => score <= threshold,
        }
    }

    /// Orders scores surest first (by `total_cmp`): for sorting frames by confidence.
    #[inline]
    pub fn surest_first(self, a: f64, b: f64) -> Ordering {
        match self.surer() {
            Surer::Higher => b.total_cmp(&a),
            Surer::Lower => a.total_cmp(&b),
        }
    }
}

/// One value per metric, looked up by [`Metric`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerMetric<T>([T; Metric::COUNT]);

impl<T> PerMetric<T> {
    pub fn from_fn(mut f: impl FnMut(Metric) -> T) -> PerMetric<T> {
        PerMetric(Metric::ALL.map(&mut f))
    }

    /// [`PerMetric::from_fn`] for a function that may fail: the first error, in
    /// [`Metric::ALL`] order.
    pub fn try_from_fn<E>(f: impl FnMut(Metric) -> Result<T, E>) -> Result<PerMetric<T>, E> {
        let values = Metric::ALL
            .into_iter()
            .map(f)
            .collect::<Result<Vec<T>, E>>()?;
        match values.try_into() {
            Ok(values) => Ok(PerMetric(values)),
            Err(_) => unreachable!("one value per metric"),
        }
    }

    /// Each metric with its value, in [`Metric::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Metric, &T)> {
        Metric::ALL.into_iter().zip(&self.0)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut()
    }
}

impl<T> Index<Metric> for PerMetric<T> {
    type Output = T;

    #[inline]
    fn index(&self, metric: Metric) -> &T {
        &self.0[metric as usize]
    }
}

/// Softmax probabilities with what every metric reads from them.
pub struct Probabilities<'a> {
    pub probs: &'a [f32],
    pub top: TopTwo,
}

impl<'a> Probabilities<'a> {
    pub fn new(probs: &'a [f32]) -> Probabilities<'a> {
        Probabilities {
            probs,
            top: top_two(probs),
        }
    }
}

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
    let mut top = TopTwo {
        class_id: 0,
        first: f32::NEG_INFINITY,
        second: f32::NEG_INFINITY,
    };
    for (i, &p) in probs.iter().enumerate() {
        if p > top.first {
            top.second = top.first;
            top.first = p;
            top.class_id = i;
        } else if p > top.second {
            top.second = p;
        }
    }
    top
}

/// −Σ p ln p, natural logarithm; zero probabilities add nothing, and a NaN makes it NaN.
fn entropy(probs: &[f32]) -> f64 {
    if probs.iter().any(|p| p.is_nan()) {
        return f64::NAN;
    }
    -probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| f64::from(p) * f64::from(p).ln())
        .sum::<f64>()
}

/// Scores probabilities under `metric` alone.
pub fn verdict(metric: Metric, probs: &[f32]) -> Verdict {
    let probs = Probabilities::new(probs);
    Verdict {
        class_id: probs.top.class_id,
        confidence: f64::from(probs.top.first),
        score: metric.score(&probs),
    }
}

/// What the last stage returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Logits,
    /// The backbone already ends with a softmax.
    Probabilities,
}

impl Output {
    /// Its name, as the search's `--output` flag spells it.
    pub fn word(self) -> &'static str {
        match self {
            Output::Logits => "logits",
            Output::Probabilities => "probabilities",
        }
    }

    /// The last stage's output `out` as probabilities, into `probs`.
    pub fn probabilities_into(self, out: &[f32], probs: &mut Vec<f32>) {
        match self {
            Output::Logits => softmax_into(out, probs),
            Output::Probabilities => {
                probs.clear();
                probs.extend_from_slice(out);
            }
        }
    }
}

/// What an exit knows about a frame when it decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// The exit's arg-max class (the lowest on ties).
    pub class_id: usize,
    /// The exit's score under every metric.
    pub scores: PerMetric<f64>,
    /// The class of the previous exit that ran for this frame, if any.
    pub previous_exit: Option<usize>,
    /// The class the bundle answered for the stream's previous frame, if any.
    pub last_frame: Option<usize>,
}

impl Signals {
    /// The signals of an exit whose softmax probabilities are `probs`, before a walk says what
    /// came before it.
    pub fn of(probs: &[f32]) -> Signals {
        let probs = Probabilities::new(probs);
        Signals {
            class_id: probs.top.class_id,
            scores: PerMetric::from_fn(|m| m.score(&probs)),
            previous_exit: None,
            last_frame: None,
        }
    }

    #[inline]
    pub fn score(&self, metric: Metric) -> f64 {
        self.scores[metric]
    }

    /// The probability of the exit's class.
    #[inline]
    pub fn confidence(&self) -> f64 {
        self.scores[Metric::MaxProb]
    }

    /// The verdict reported for a frame that leaves here: the score is always the metric's.
    pub fn verdict(&self, metric: Metric) -> Verdict {
        Verdict {
            class_id: self.class_id,
            confidence: self.confidence(),
            score: self.score(metric),
        }
    }
}

/// How one exit decides whether a frame leaves, from what it knows of the frame.
pub trait ExitDecision {
    fn leaves(&self, signals: &Signals) -> bool;
}

/// The bundle's metric against an exit's threshold: format 1, and format 2 without a gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricThreshold {
    pub metric: Metric,
    pub threshold: f64,
}

impl ExitDecision for MetricThreshold {
    #[inline]
    fn leaves(&self, signals: &Signals) -> bool {
        self.metric
            .leaves(signals.score(self.metric), self.threshold)
    }
}

/// One frame's way through the exits that run for it, in order. It carries what an exit may
/// know of the others (the class of the previous exit, and the class answered for the stream's
/// previous frame), for the cascade and for a replay on cached head outputs alike. The
/// stream's next `last_frame` is the class the frame is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameWalk {
    previous_exit: Option<usize>,
    last_frame: Option<usize>,
}

impl FrameWalk {
    /// A frame whose stream answered `last_frame` for the previous frame.
    #[inline]
    pub fn new(last_frame: Option<usize>) -> FrameWalk {
        FrameWalk {
            previous_exit: None,
            last_frame,
        }
    }

    /// The next exit, with its own signals: the signals with what came before filled in, and
    /// whether the frame leaves there.
    #[inline]
    pub fn exit(&mut self, signals: Signals, decision: &impl ExitDecision) -> (Signals, bool) {
        let signals = Signals {
            previous_exit: self.previous_exit,
            last_frame: self.last_frame,
            ..signals
        };
        self.previous_exit = Some(signals.class_id);
        (signals, decision.leaves(&signals))
    }

    /// Walks a frame through exits whose signals are known already (a replay on cached head
    /// outputs): the first exit it leaves at, by its index, with its signals.
    #[inline]
    pub fn first_exit<D: ExitDecision>(
        last_frame: Option<usize>,
        exits: impl IntoIterator<Item = (Signals, D)>,
    ) -> Option<(usize, Signals)> {
        let mut walk = FrameWalk::new(last_frame);
        // A plain loop: replays run it millions of times, and it compiles tighter than an
        // iterator chain.
        for (k, (signals, decision)) in exits.into_iter().enumerate() {
            let (signals, leaves) = walk.exit(signals, &decision);
            if leaves {
                return Some((k, signals));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(logits: &[f32]) -> Vec<f32> {
        let mut p = Vec::new();
        softmax_into(logits, &mut p);
        p
    }

    #[test]
    fn a_surer_score_leaves_and_a_less_sure_one_stays() {
        for metric in Metric::ALL {
            let step = 0.1 * metric.sign();
            assert!(metric.leaves(0.5 + step, 0.5), "{metric:?}");
            assert!(!metric.leaves(0.5 - step, 0.5), "{metric:?}");
            assert_eq!(
                metric.surest_first(0.5 + step, 0.5 - step),
                Ordering::Less,
                "{metric:?}"
            );
        }
    }

    #[test]
    fn no_score_clears_the_never_threshold() {
        let cases = [
            probs(&[0.0; 5]),
            probs(&[30.0, 0.0, 0.0]),
            probs(&[1.0, 1.0]),
            vec![1.0],
            probs(&[f32::NAN, 1.0]),
        ];
        for p in &cases {
            let s = Signals::of(p);
            for metric in Metric::ALL {
                assert!(metric.never().is_finite(), "{metric:?}");
                assert!(
                    !metric.leaves(s.score(metric), metric.never()),
                    "{metric:?} {p:?} {s:?}"
                );
            }
        }
    }

    /// The user's guide to the format lists every metric in its exit-rule table.
    #[test]
    fn the_bundle_format_documents_every_metric() {
        let guide = include_str!("../../docs/bundle-format.md");
        for metric in Metric::ALL {
            let row = format!("| `{}` |", metric.word());
            assert!(
                guide.contains(&row),
                "docs/bundle-format.md has no row {row}"
            );
        }
    }

    #[test]
    fn every_metric_has_its_own_name() {
        let mut words: Vec<&str> = Metric::ALL.iter().map(|m| m.word()).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), Metric::COUNT);
        assert_eq!(Metric::default(), Metric::MaxProb);
    }

    #[test]
    fn per_metric_values_are_found_by_metric() {
        let v = PerMetric::from_fn(|m| m.word());
        for (metric, word) in v.iter() {
            assert_eq!(v[metric], *word);
            assert_eq!(*word, metric.word());
        }
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
        assert!(Metric::MaxProb.leaves(v.score, 0.59));
        assert!(!Metric::MaxProb.leaves(v.score, 0.61));
    }

    #[test]
    fn margin_is_top1_minus_top2() {
        // p = [0.2, 0.5, 0.3]
        let p = probs(&[2f32.ln(), 5f32.ln(), 3f32.ln()]);
        let v = verdict(Metric::Margin, &p);
        assert_eq!(v.class_id, 1);
        assert!((v.score - 0.2).abs() < 1e-6, "{}", v.score);
        assert!(Metric::Margin.leaves(v.score, 0.19));
        assert!(!Metric::Margin.leaves(v.score, 0.21));
        // A single class has a margin of its probability.
        assert_eq!(verdict(Metric::Margin, &[1.0]).score, 1.0);
    }

    #[test]
    fn entropy_leaves_at_or_below_threshold() {
        let uniform = probs(&[0.0; 4]);
        let v = verdict(Metric::Entropy, &uniform);
        assert!((v.score - 4f64.ln()).abs() < 1e-6);
        assert!(!Metric::Entropy.leaves(v.score, 1.0));
        let sharp = probs(&[10.0, 0.0, 0.0, 0.0]);
        let v = verdict(Metric::Entropy, &sharp);
        assert_eq!(v.class_id, 0);
        assert!(v.score < 0.01 && Metric::Entropy.leaves(v.score, 0.01));
    }

    #[test]
    fn top2_ratio_is_the_second_over_the_first_and_leaves_at_or_below_threshold() {
        // p = [0.2, 0.5, 0.3]: 0.3 / 0.5.
        let p = probs(&[2f32.ln(), 5f32.ln(), 3f32.ln()]);
        let v = verdict(Metric::Top2Ratio, &p);
        assert_eq!(v.class_id, 1);
        assert!((v.score - 0.6).abs() < 1e-6, "{}", v.score);
        assert!(Metric::Top2Ratio.leaves(v.score, 0.61));
        assert!(!Metric::Top2Ratio.leaves(v.score, 0.59));
        // A tie is 1, one class alone 0.
        assert!((verdict(Metric::Top2Ratio, &probs(&[1.0, 1.0, 0.0])).score - 1.0).abs() < 1e-6);
        assert_eq!(verdict(Metric::Top2Ratio, &[1.0]).score, 0.0);
        // The same margin, 0.1, and two ratios: the metric is not the margin in disguise.
        let (a, b) = (
            Signals::of(&[0.55, 0.45]),
            Signals::of(&[0.25, 0.15, 0.15, 0.15, 0.15, 0.15]),
        );
        assert!((a.score(Metric::Margin) - b.score(Metric::Margin)).abs() < 1e-6);
        assert!((a.score(Metric::Top2Ratio) - 0.45 / 0.55).abs() < 1e-6);
        assert!((b.score(Metric::Top2Ratio) - 0.15 / 0.25).abs() < 1e-6);
    }

    #[test]
    fn a_nan_or_infinite_logit_never_leaves() {
        for logits in [[f32::NAN, 1.0, 2.0], [f32::INFINITY, 0.0, 0.0]] {
            let p = probs(&logits);
            for metric in Metric::ALL {
                let loosest = match metric.surer() {
                    Surer::Higher => 0.0,
                    Surer::Lower => f64::MAX,
                };
                let v = verdict(metric, &p);
                assert!(
                    !metric.leaves(v.score, loosest),
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

    #[test]
    fn signals_give_the_verdict_of_every_metric() {
        let p = probs(&[0.3, 2.0, -1.0, 1.2]);
        let s = Signals::of(&p);
        for metric in Metric::ALL {
            let v = s.verdict(metric);
            assert_eq!(v.class_id, 1);
            assert_eq!(v.confidence, f64::from(p[1]));
            assert_eq!(v.score, metric.score(&Probabilities::new(&p)), "{metric:?}");
            assert_eq!(v, verdict(metric, &p), "{metric:?}");
        }
    }

    #[test]
    fn a_walk_stops_at_the_first_exit_that_lets_the_frame_leave() {
        // Leaves when max-prob is at least 0.9.
        let rule = MetricThreshold {
            metric: Metric::MaxProb,
            threshold: 0.9,
        };
        let unsure_2 = Signals::of(&probs(&[0.0, 0.0, 1.0]));
        let unsure_0 = Signals::of(&probs(&[1.0, 0.0, 0.0]));
        let sure_1 = Signals::of(&probs(&[0.0, 9.0, 0.0]));
        let exits = [unsure_2, unsure_0, sure_1, sure_1].map(|s| (s, rule));
        let (k, s) = FrameWalk::first_exit(Some(2), exits).unwrap();
        // The third exit, knowing what came before it: the second exit's class and the
        // stream's last answer. (gate.rs tests what each exit passes on, gate by gate.)
        assert_eq!(
            (k, s.class_id, s.previous_exit, s.last_frame),
            (2, 1, Some(0), Some(2))
        );
        assert_eq!(FrameWalk::first_exit(None, [(unsure_0, rule)]), None);
    }

    #[test]
    fn output_probabilities_are_taken_as_they_are() {
        let mut p = Vec::new();
        Output::Probabilities.probabilities_into(&[0.25, 0.75], &mut p);
        assert_eq!(p, [0.25, 0.75]);
        Output::Logits.probabilities_into(&[0.0, 0.0], &mut p);
        assert_eq!(p, [0.5, 0.5]);
    }
}
