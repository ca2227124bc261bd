//! The Pareto plot's data: the search's configurations and front on the selecting frames; the
//! backbone, the baselines, the oracle and the chosen structure on the certifying frames, as in
//! the baselines table, and the chosen structure on the selecting frames too.

use earlyexit::bundle::{Measure, Word};

use super::plot::{Figure, Mark, Point};
use crate::problem::Problem;
use crate::select::Findings;
use crate::simulate::Simulation;

pub fn figure(problem: &Problem, findings: &Findings) -> Figure {
    let measure = problem.goal.measure;
    let baselines = &findings.baselines;
    let chosen = &findings.chosen;
    // The measure, less any shortfall from a --target-agreement floor (see `Zoo::error`).
    let point = |[cost, error]: [f64; 2]| Point {
        cost,
        measure: 1.0 - error,
    };
    let sim = |s: &Simulation| Point {
        cost: s.mean_cost,
        measure: s.rate(measure),
    };
    // Both give the backbone's answer on every frame.
    let backbone = match measure {
        Measure::Accuracy => baselines.backbone_accuracy.unwrap_or(1.0),
        Measure::Agreement => 1.0,
    };
    let marked = vec![
        (
            Mark::Backbone,
            Point {
                cost: 1.0,
                measure: backbone,
            },
        ),
        (Mark::ShallowDeep, sim(&baselines.shallow_deep.certify)),
        (Mark::Even, sim(&baselines.even.certify)),
        (Mark::ChosenSelect, sim(&chosen.select)),
        (Mark::ChosenCertify, sim(&chosen.certify)),
        (
            Mark::Oracle,
            Point {
                cost: baselines.oracle,
                measure: backbone,
            },
        ),
    ];
    let searched = &findings.searched.explored;
    Figure {
        measure: measure.word(),
        target: problem.goal.target,
        front: searched
            .front()
            .into_iter()
            .map(|c| point(c.objectives))
            .collect(),
        scored: searched
            .configurations
            .iter()
            .map(|c| point(c.objectives))
            .collect(),
        marked,
    }
}
