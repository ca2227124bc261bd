//! Exit rules replayed on cached exit outputs: each frame walks the exits as the cascade would
//! ([`FrameWalk`]), after the stream rule when there is one ([`Replay`]), and [`tally`] counts
//! where frames left, what they answered and what they cost. Every strategy and the
//! certificate score structures this way.

use earlyexit::bundle::Measure;
use earlyexit::cost::CostTable;
use earlyexit::rule::{ExitDecision, FrameWalk, Metric, MetricThreshold, Signals};

use crate::goal::Goal;
use crate::outputs::ExitOutputs;
use crate::reuse::Replay;

/// The held-out frames' reference answers.
pub struct Reference<'a> {
    /// The full backbone's class per frame.
    pub teacher: &'a [u32],
    /// Ground truth per frame, when every held-out frame has it.
    pub labels: Option<&'a [u32]>,
}

impl Reference<'_> {
    pub fn frames(&self) -> usize {
        self.teacher.len()
    }

    pub fn label(&self, i: usize) -> Option<u32> {
        self.labels.map(|l| l[i])
    }

    /// Whether `class` is right for frame `i` under `measure`: the ground truth for accuracy
    /// when there is any, else the backbone's answer.
    pub fn right(&self, measure: Measure, i: usize, class: u32) -> bool {
        match (measure, self.labels) {
            (Measure::Accuracy, Some(l)) => class == l[i],
            _ => class == self.teacher[i],
        }
    }

    /// Whether answering `class` on frame `i` costs nothing under `goal`.
    pub fn harmless(&self, goal: &Goal, i: usize, class: u32) -> bool {
        goal.harmless(class, self.teacher[i], self.label(i))
    }
}

/// The cascade's figures on held-out frames for some exit rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Frames leaving at each stage (the last included).
    pub exits: Vec<usize>,
    /// Of those, how many agree with the backbone.
    pub agree: Vec<usize>,
    /// Of those, how many match the ground truth (when there is any).
    pub correct: Vec<usize>,
    pub frames: usize,
    pub mean_cost: f64,
    /// The class answered for each frame.
    pub answers: Vec<u32>,
    /// Frames that reused the last answer under the stream rule, counted apart from the
    /// stages.
    pub reused: Reused,
}

/// Frames that reused an answer, and of those, how many agree with the backbone and how many
/// match the ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reused {
    pub frames: usize,
    pub agree: usize,
    pub correct: usize,
}

impl Simulation {
    pub fn agreement(&self) -> f64 {
        (self.agree.iter().sum::<usize>() + self.reused.agree) as f64 / self.frames.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        (self.correct.iter().sum::<usize>() + self.reused.correct) as f64
            / self.frames.max(1) as f64
    }

    /// The rate of `measure`.
    pub fn rate(&self, measure: Measure) -> f64 {
        match measure {
            Measure::Agreement => self.agreement(),
            Measure::Accuracy => self.accuracy(),
        }
    }

    /// Per frame, in order: the goal's penalty for the answer given.
    pub fn penalties(&self, goal: &Goal, reference: &Reference) -> Vec<f64> {
        self.answers
            .iter()
            .enumerate()
            .map(|(i, &a)| goal.penalty(a, reference.teacher[i], reference.label(i)))
            .collect()
    }

    pub fn meets(&self, goal: &Goal, reference: &Reference) -> bool {
        let p = self.penalties(goal, reference);
        let mean = p.iter().sum::<f64>() / p.len().max(1) as f64;
        mean <= goal.limit() && goal.min_agreement.is_none_or(|a| self.agreement() >= a)
    }
}

/// The share of frames on which two lists of answers agree.
pub fn share_alike(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// Whether an exit also needs the previous exit's class to let a frame leave (the rules that
/// [`crate::gating::patient`] writes as gates): two heads at different depths that agree are
/// rarely both wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// The metric alone decides.
    None,
    /// Every exit after the first needs agreement; the first decides on its metric.
    AfterFirst,
    /// Every exit needs agreement, so the first, with no exit before it, only votes.
    Every,
}

impl Patience {
    /// From the least patient to the most.
    pub const ALL: [Patience; 3] = [Patience::None, Patience::AfterFirst, Patience::Every];

    /// Whether exit `k` may let a frame leave, given whether its class is exit k-1's.
    pub fn allows(self, k: usize, agrees: bool) -> bool {
        match self {
            Patience::None => true,
            Patience::AfterFirst => k == 0 || agrees,
            Patience::Every => k > 0 && agrees,
        }
    }
}

/// Exit `exit` of a metric rule with patience: its threshold, and agreement with the previous
/// exit where the patience asks for it.
struct PatientThreshold {
    rule: MetricThreshold,
    patience: Patience,
    exit: usize,
}

impl ExitDecision for PatientThreshold {
    fn leaves(&self, signals: &Signals) -> bool {
        let agrees = signals.previous_exit == Some(signals.class_id);
        self.rule.leaves(signals) && self.patience.allows(self.exit, agrees)
    }
}

/// Runs the frames through exits that decide by `metric` against `thresholds` (one per exit)
/// with `patience`, after the stream rule of `reuse`, as the element would.
pub fn simulate(
    metric: Metric,
    thresholds: &[f64],
    exits: &[&ExitOutputs],
    reference: &Reference,
    costs: &CostTable,
    patience: Patience,
    reuse: Option<&Replay>,
) -> Simulation {
    tally(exits.len() + 1, reference, costs, reuse, |i, _| {
        let decided = exits
            .iter()
            .zip(thresholds)
            .enumerate()
            .map(|(k, (e, &t))| {
                let rule = PatientThreshold {
                    rule: MetricThreshold {
                        metric,
                        threshold: t,
                    },
                    patience,
                    exit: k,
                };
                (e.signals(i), rule)
            });
        FrameWalk::first_exit(None, decided).map(|(k, s)| (k, s.class_id as u32))
    })
}

/// The figures of a cascade of `stages` stages over the reference frames, in order. A frame
/// that the stream rule of `reuse` lets reuse the last answer computed answers with it;
/// otherwise `leave` tells, for frame i and the answer given to the frame before it (None at
/// the first frame), the exit where the frame leaves and its class, or None when it reaches
/// the last stage. Costs include `reuse`'s detector when `costs` does.
pub fn tally(
    stages: usize,
    reference: &Reference,
    costs: &CostTable,
    reuse: Option<&Replay>,
    mut leave: impl FnMut(usize, Option<u32>) -> Option<(usize, u32)>,
) -> Simulation {
    let frames = reference.frames();
    let mut sim = Simulation {
        exits: vec![0; stages],
        agree: vec![0; stages],
        correct: vec![0; stages],
        frames,
        mean_cost: 0.0,
        answers: Vec::with_capacity(frames),
        reused: Reused::default(),
    };
    let mut cost = 0.0;
    for i in 0..frames {
        let last = sim.answers.last().copied();
        // A frame reuses only after a frame of its stream ran, so `last` is there.
        if reuse.is_some_and(|r| r.reuses(i))
            && let Some(class) = last
        {
            sim.answers.push(class);
            sim.reused.frames += 1;
            sim.reused.agree += usize::from(class == reference.teacher[i]);
            sim.reused.correct += usize::from(reference.label(i) == Some(class));
            cost += costs.reused_cost();
            continue;
        }
        let (stage, class) = leave(i, last).unwrap_or((stages - 1, reference.teacher[i]));
        sim.answers.push(class);
        sim.exits[stage] += 1;
        sim.agree[stage] += usize::from(class == reference.teacher[i]);
        if let Some(labels) = reference.labels {
            sim.correct[stage] += usize::from(class == labels[i]);
        }
        cost += costs.cost(stage, true);
    }
    sim.mean_cost = cost / frames.max(1) as f64;
    sim
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Exit outputs whose every metric scores `score`, with these classes.
    pub(crate) fn outputs(class: Vec<u32>, score: Vec<f64>) -> ExitOutputs {
        ExitOutputs::from_columns(
            &class,
            &earlyexit::rule::PerMetric::from_fn(|_| score.clone()),
        )
    }

    pub(crate) fn costs() -> CostTable {
        CostTable::new(vec![30, 30, 40], vec![1, 1, 0]).unwrap()
    }

    #[test]
    fn simulation_follows_the_exit_rule() {
        let exits = vec![
            outputs(vec![1, 2, 3], vec![0.9, 0.5, 0.2]),
            outputs(vec![1, 2, 0], vec![0.95, 0.8, 0.3]),
        ];
        let teacher = [1, 2, 3];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let views: Vec<&ExitOutputs> = exits.iter().collect();
        let sim = simulate(
            Metric::MaxProb,
            &[0.9, 0.8],
            &views,
            &reference,
            &costs(),
            Patience::None,
            None,
        );
        assert_eq!(sim.exits, vec![1, 1, 1]);
        assert_eq!(sim.agreement(), 1.0);
        let expected = (0.31 + 0.62 + 1.02) / 3.0;
        assert!((sim.mean_cost - expected).abs() < 1e-12);

        // Frame 1's exit 1 is confident but not of exit 0's mind: a patient cascade goes on.
        let mut disagreeing = exits.clone();
        disagreeing[1] = outputs(vec![1, 3, 0], vec![0.95, 0.8, 0.3]);
        let views: Vec<&ExitOutputs> = disagreeing.iter().collect();
        let leave = |patience| {
            simulate(
                Metric::MaxProb,
                &[0.9, 0.8],
                &views,
                &reference,
                &costs(),
                patience,
                None,
            )
            .exits
        };
        assert_eq!(leave(Patience::None), vec![1, 1, 1]);
        assert_eq!(leave(Patience::AfterFirst), vec![1, 0, 2]);
        // With every exit patient, frame 0 leaves at exit 1, where both exits agree.
        assert_eq!(leave(Patience::Every), vec![0, 1, 2]);
    }
}
