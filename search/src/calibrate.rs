//! Thresholds from held-out frames for the evenly spaced strategy: the cheapest per-exit
//! thresholds found, in a one-parameter family, that keep the target.

use earlyexit::cost::CostTable;
use earlyexit::rule::Metric;

use crate::goal::Goal;
use crate::outputs::ExitOutputs;
use crate::simulate::{Patience, Reference, Simulation, simulate};

/// Thresholds under which each exit's own precision on the frames that reach it is at least
/// `precision`: at each exit, the loosest threshold whose leaving frames are right often enough.
fn thresholds_for_precision(
    metric: Metric,
    precision: f64,
    exits: &[&ExitOutputs],
    right: &dyn Fn(usize, u32) -> bool,
    frames: usize,
) -> Vec<f64> {
    let mut remaining: Vec<usize> = (0..frames).collect();
    let mut thresholds = Vec::with_capacity(exits.len());
    for e in exits {
        let score = |i: usize| e.score(i, metric);
        let mut order = remaining.clone();
        order.sort_by(|&a, &b| metric.surest_first(score(a), score(b)));
        let mut hits = 0usize;
        let mut best: Option<usize> = None;
        for (m, &i) in order.iter().enumerate() {
            hits += usize::from(right(i, e.class(i)));
            if hits as f64 >= precision * (m + 1) as f64 {
                best = Some(m);
            }
        }
        let threshold = best.map_or(metric.never(), |m| score(order[m]));
        remaining.retain(|&i| !metric.leaves(score(i), threshold));
        thresholds.push(threshold);
    }
    thresholds
}

/// The cheapest thresholds found that meet `goal` on the held-out frames, with their simulation.
/// Scans a one-parameter family (the per-exit precision), which always contains "no exit
/// leaves", so a goal the backbone itself meets is always met.
pub fn calibrate(
    metric: Metric,
    exits: &[&ExitOutputs],
    reference: &Reference,
    costs: &CostTable,
    goal: &Goal,
) -> (Vec<f64>, Simulation) {
    let right = |i: usize, class: u32| reference.right(goal.measure, i, class);
    let nothing = vec![metric.never(); exits.len()];
    let mut best = (
        nothing.clone(),
        simulate(
            metric,
            &nothing,
            exits,
            reference,
            costs,
            Patience::None,
            None,
        ),
    );
    for step in 0..=400 {
        let precision = 0.8 + 0.2 * f64::from(step) / 400.0;
        let thresholds =
            thresholds_for_precision(metric, precision, exits, &right, reference.frames());
        let sim = simulate(
            metric,
            &thresholds,
            exits,
            reference,
            costs,
            Patience::None,
            None,
        );
        if sim.meets(goal, reference) && sim.mean_cost < best.1.mean_cost {
            best = (thresholds, sim);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::tests::{costs, outputs};

    #[test]
    fn calibration_meets_the_goal_and_saves_cost() {
        // Exit 0 is right when confident (score > 0.7), wrong otherwise.
        let n = 200;
        let teacher: Vec<u32> = (0..n).map(|i| (i % 5) as u32).collect();
        let score: Vec<f64> = (0..n).map(|i| (i % 100) as f64 / 100.0).collect();
        let class: Vec<u32> = (0..n)
            .map(|i| if score[i] > 0.7 { teacher[i] } else { 9 })
            .collect();
        let exits = [
            outputs(class, score),
            outputs(teacher.clone(), vec![0.0; n]),
        ];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let goal = Goal::agreement(1.0);
        let views: Vec<&ExitOutputs> = exits.iter().collect();
        let (t, sim) = calibrate(Metric::MaxProb, &views, &reference, &costs(), &goal);
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
        let exits = [outputs(vec![1; 10], vec![0.99; 10])];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let costs = CostTable::new(vec![50, 50], vec![1, 0]).unwrap();
        let goal = Goal::agreement(0.99);
        let (t, sim) = calibrate(Metric::MaxProb, &[&exits[0]], &reference, &costs, &goal);
        assert_eq!(t, vec![Metric::MaxProb.never()]);
        assert_eq!(sim.exits, vec![0, 10]);
    }
}
