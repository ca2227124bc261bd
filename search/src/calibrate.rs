//! Thresholds from held-out frames: simulate the cascade with the shared exit rule, and pick the
//! cheapest thresholds that keep the target.

use std::borrow::Borrow;

use earlyexit::bundle::{Measure, Metric};
use earlyexit::cost::CostTable;
use earlyexit::rule;

/// What one exit said about every held-out frame.
#[derive(Debug, Clone)]
pub struct ExitScores {
    pub class: Vec<u32>,
    pub score: Vec<f64>,
}

/// The held-out frames' reference answers.
pub struct Reference<'a> {
    /// The full backbone's class per frame.
    pub teacher: &'a [u32],
    /// Ground truth per frame, when every held-out frame has it.
    pub labels: Option<&'a [u32]>,
}

impl Reference<'_> {
    /// Whether `class` is right for frame `i` under `measure`: the ground truth for accuracy
    /// when there is any, else the backbone's answer.
    pub fn right(&self, measure: Measure, i: usize, class: u32) -> bool {
        match (measure, self.labels) {
            (Measure::Accuracy, Some(l)) => class == l[i],
            _ => class == self.teacher[i],
        }
    }
}

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

    /// The highest mean penalty the goal allows.
    pub fn limit(&self) -> f64 {
        self.max_loss.unwrap_or(1.0 - self.target)
    }
}

/// The cascade's figures on held-out frames for some thresholds.
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
}

impl Simulation {
    pub fn agreement(&self) -> f64 {
        self.agree.iter().sum::<usize>() as f64 / self.frames.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct.iter().sum::<usize>() as f64 / self.frames.max(1) as f64
    }

    /// Per frame, in order: the goal's penalty for the answer given.
    pub fn penalties(&self, goal: &Goal, reference: &Reference) -> Vec<f64> {
        self.answers
            .iter()
            .enumerate()
            .map(|(i, &a)| goal.penalty(a, reference.teacher[i], reference.labels.map(|l| l[i])))
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

/// A threshold no frame passes under `metric`.
pub fn never(metric: Metric) -> f64 {
    match metric {
        // Probabilities and margins never exceed 1.
        Metric::MaxProb | Metric::Margin => 2.0,
        // Entropy is never negative.
        Metric::Entropy => -1.0,
    }
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
    /// Whether exit `k` may let a frame leave, given whether its class is exit k-1's.
    pub fn allows(self, k: usize, agrees: bool) -> bool {
        match self {
            Patience::None => true,
            Patience::AfterFirst => k == 0 || agrees,
            Patience::Every => k > 0 && agrees,
        }
    }
}

/// Runs the held-out frames through the exits with `thresholds`, as the element would.
pub fn simulate(
    metric: Metric,
    thresholds: &[f64],
    exits: &[impl Borrow<ExitScores>],
    reference: &Reference,
    costs: &CostTable,
    patience: Patience,
) -> Simulation {
    tally(exits.len() + 1, reference, costs, |i, _| {
        let class = |k: usize| exits[k].borrow().class[i];
        exits
            .iter()
            .zip(thresholds)
            .enumerate()
            .find(|(k, (e, t))| {
                rule::leaves(metric, (*e).borrow().score[i], **t)
                    && patience.allows(*k, *k > 0 && class(*k) == class(*k - 1))
            })
            .map(|(k, _)| (k, class(k)))
    })
}

/// The figures of a cascade of `stages` stages over the reference frames, in order. `leave`
/// tells, for frame i and the answer given to the frame before it (None at the first frame),
/// the exit where the frame leaves and its class, or None when it reaches the last stage.
pub fn tally(
    stages: usize,
    reference: &Reference,
    costs: &CostTable,
    mut leave: impl FnMut(usize, Option<u32>) -> Option<(usize, u32)>,
) -> Simulation {
    let frames = reference.teacher.len();
    let mut sim = Simulation {
        exits: vec![0; stages],
        agree: vec![0; stages],
        correct: vec![0; stages],
        frames,
        mean_cost: 0.0,
        answers: Vec::with_capacity(frames),
    };
    let mut cost = 0.0;
    for i in 0..frames {
        let last = sim.answers.last().copied();
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

/// Thresholds under which each exit's own precision on the frames that reach it is at least
/// `precision`: at each exit, the loosest threshold whose leaving frames are right often enough.
fn thresholds_for_precision(
    metric: Metric,
    precision: f64,
    exits: &[ExitScores],
    right: &dyn Fn(usize, u32) -> bool,
    frames: usize,
) -> Vec<f64> {
    let mut remaining: Vec<usize> = (0..frames).collect();
    let mut thresholds = Vec::with_capacity(exits.len());
    for e in exits {
        // Most confident first.
        let mut order = remaining.clone();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (e.score[a], e.score[b]);
            match metric {
                Metric::Entropy => sa.total_cmp(&sb),
                _ => sb.total_cmp(&sa),
            }
        });
        let mut hits = 0usize;
        let mut best: Option<usize> = None;
        for (m, &i) in order.iter().enumerate() {
            hits += usize::from(right(i, e.class[i]));
            if hits as f64 >= precision * (m + 1) as f64 {
                best = Some(m);
            }
        }
        let threshold = best.map_or(never(metric), |m| e.score[order[m]]);
        remaining.retain(|&i| !rule::leaves(metric, e.score[i], threshold));
        thresholds.push(threshold);
    }
    thresholds
}

/// The cheapest thresholds found that meet `goal` on the held-out frames, with their simulation.
/// Scans a one-parameter family (the per-exit precision), which always contains "no exit
/// leaves", so a goal the backbone itself meets is always met.
pub fn calibrate(
    metric: Metric,
    exits: &[ExitScores],
    reference: &Reference,
    costs: &CostTable,
    goal: &Goal,
) -> (Vec<f64>, Simulation) {
    let frames = reference.teacher.len();
    let right = |i: usize, class: u32| match (goal.measure, reference.labels) {
        (Measure::Accuracy, Some(labels)) => class == labels[i],
        _ => class == reference.teacher[i],
    };
    let nothing = vec![never(metric); exits.len()];
    let mut best = (
        nothing.clone(),
        simulate(metric, &nothing, exits, reference, costs, Patience::None),
    );
    for step in 0..=400 {
        let precision = 0.8 + 0.2 * f64::from(step) / 400.0;
        let thresholds = thresholds_for_precision(metric, precision, exits, &right, frames);
        let sim = simulate(metric, &thresholds, exits, reference, costs, Patience::None);
        if sim.meets(goal, reference) && sim.mean_cost < best.1.mean_cost {
            best = (thresholds, sim);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs() -> CostTable {
        CostTable::new(vec![30, 30, 40], vec![1, 1, 0]).unwrap()
    }

    #[test]
    fn simulation_follows_the_exit_rule() {
        let exits = vec![
            ExitScores {
                class: vec![1, 2, 3],
                score: vec![0.9, 0.5, 0.2],
            },
            ExitScores {
                class: vec![1, 2, 0],
                score: vec![0.95, 0.8, 0.3],
            },
        ];
        let teacher = [1, 2, 3];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let sim = simulate(
            Metric::MaxProb,
            &[0.9, 0.8],
            &exits,
            &reference,
            &costs(),
            Patience::None,
        );
        assert_eq!(sim.exits, vec![1, 1, 1]);
        assert_eq!(sim.agreement(), 1.0);
        let expected = (0.31 + 0.62 + 1.02) / 3.0;
        assert!((sim.mean_cost - expected).abs() < 1e-12);

        // Frame 1's exit 1 is confident but not of exit 0's mind: a patient cascade goes on.
        let mut disagreeing = exits.clone();
        disagreeing[1].class[1] = 3;
        let leave = |patience| {
            simulate(
                Metric::MaxProb,
                &[0.9, 0.8],
                &disagreeing,
                &reference,
                &costs(),
                patience,
            )
            .exits
        };
        assert_eq!(leave(Patience::None), vec![1, 1, 1]);
        assert_eq!(leave(Patience::AfterFirst), vec![1, 0, 2]);
        // With every exit patient, frame 0 leaves at exit 1, where both exits agree.
        assert_eq!(leave(Patience::Every), vec![0, 1, 2]);
    }

    #[test]
    fn calibration_meets_the_goal_and_saves_cost() {
        // Exit 0 is right when confident (score > 0.7), wrong otherwise.
        let n = 200;
        let teacher: Vec<u32> = (0..n).map(|i| (i % 5) as u32).collect();
        let score: Vec<f64> = (0..n).map(|i| (i % 100) as f64 / 100.0).collect();
        let class: Vec<u32> = (0..n)
            .map(|i| if score[i] > 0.7 { teacher[i] } else { 9 })
            .collect();
        let exits = vec![
            ExitScores { class, score },
            ExitScores {
                class: teacher.clone(),
                score: vec![0.0; n],
            },
        ];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let goal = Goal::agreement(1.0);
        let (t, sim) = calibrate(Metric::MaxProb, &exits, &reference, &costs(), &goal);
        assert!(sim.meets(&goal, &reference));
        assert_eq!(
            sim.exits[0], 58,
            "every confident frame (0.71..0.99) leaves early: {t:?}"
        );
        assert!(sim.mean_cost < 1.0);
    }

    #[test]
    fn an_unreachable_goal_keeps_every_frame_to_the_end() {
        let teacher = vec![0u32; 10];
        let exits = vec![ExitScores {
            class: vec![1; 10],
            score: vec![0.99; 10],
        }];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let costs = CostTable::new(vec![50, 50], vec![1, 0]).unwrap();
        let goal = Goal::agreement(0.99);
        let (t, sim) = calibrate(Metric::MaxProb, &exits, &reference, &costs, &goal);
        assert_eq!(t, vec![never(Metric::MaxProb)]);
        assert_eq!(sim.exits, vec![0, 10]);
    }
}
