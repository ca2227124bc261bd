//! Thresholds from held-out frames: simulate the cascade with the shared exit rule, and pick the
//! cheapest thresholds that keep the target.

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

/// What must hold on held-out frames.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub measure: Measure,
    pub target: f64,
    /// With `--target-accuracy`, agreement may be constrained too.
    pub min_agreement: Option<f64>,
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
}

impl Simulation {
    pub fn agreement(&self) -> f64 {
        self.agree.iter().sum::<usize>() as f64 / self.frames.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct.iter().sum::<usize>() as f64 / self.frames.max(1) as f64
    }

    pub fn meets(&self, goal: &Goal) -> bool {
        let main = match goal.measure {
            Measure::Agreement => self.agreement(),
            Measure::Accuracy => self.accuracy(),
        };
        main >= goal.target && goal.min_agreement.is_none_or(|a| self.agreement() >= a)
    }
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

/// Runs the held-out frames through the exits with `thresholds`, as the element would.
pub fn simulate(
    metric: Metric,
    thresholds: &[f64],
    exits: &[ExitScores],
    reference: &Reference,
    costs: &CostTable,
) -> Simulation {
    let frames = reference.teacher.len();
    let stages = exits.len() + 1;
    let mut sim = Simulation {
        exits: vec![0; stages],
        agree: vec![0; stages],
        correct: vec![0; stages],
        frames,
        mean_cost: 0.0,
    };
    let mut cost = 0.0;
    for i in 0..frames {
        let (stage, class) = exits
            .iter()
            .zip(thresholds)
            .enumerate()
            .find(|(_, (e, t))| rule::leaves(metric, e.score[i], **t))
            .map_or((stages - 1, reference.teacher[i]), |(k, (e, _))| {
                (k, e.class[i])
            });
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
        simulate(metric, &nothing, exits, reference, costs),
    );
    for step in 0..=400 {
        let precision = 0.8 + 0.2 * f64::from(step) / 400.0;
        let thresholds = thresholds_for_precision(metric, precision, exits, &right, frames);
        let sim = simulate(metric, &thresholds, exits, reference, costs);
        if sim.meets(goal) && sim.mean_cost < best.1.mean_cost {
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
        let sim = simulate(Metric::MaxProb, &[0.9, 0.8], &exits, &reference, &costs());
        assert_eq!(sim.exits, vec![1, 1, 1]);
        assert_eq!(sim.agreement(), 1.0);
        let expected = (0.31 + 0.62 + 1.02) / 3.0;
        assert!((sim.mean_cost - expected).abs() < 1e-12);
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
        let goal = Goal {
            measure: Measure::Agreement,
            target: 1.0,
            min_agreement: None,
        };
        let (t, sim) = calibrate(Metric::MaxProb, &exits, &reference, &costs(), &goal);
        assert!(sim.meets(&goal));
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
        let goal = Goal {
            measure: Measure::Agreement,
            target: 0.99,
            min_agreement: None,
        };
        let (t, sim) = calibrate(Metric::MaxProb, &exits, &reference, &costs, &goal);
        assert_eq!(t, vec![never(Metric::MaxProb)]);
        assert_eq!(sim.exits, vec![0, 10]);
    }
}
