//! The Pareto plot's data: the search's configurations and front on the selecting frames; the
//! backbone, the baselines, the oracle and the chosen structure on the certifying frames, as in
//! the baselines table, and the chosen structure on the selecting frames too.

use earlyexit::bundle::{Measure, Word};

use super::plot::{Figure, Mark, Point};
use crate::nas;
use crate::problem::{CostKind, Problem};
use crate::select::Findings;
use crate::simulate::Simulation;

pub fn figure(problem: &Problem, findings: &Findings) -> Figure {
    let goal = &problem.goal;
    let measure = goal.measure;
    let baselines = &findings.baselines;
    let chosen = &findings.chosen;
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
    // Configurations in the plot's own measure; the front is theirs in that measure, which
    // the search's objective (a bound on the goal's penalty) need not order the same way.
    let scored: Vec<Point> = searched
        .configurations
        .iter()
        .map(|c| Point {
            cost: c.objectives[0],
            measure: c.rate,
        })
        .collect();
    let front = nas::pareto_front(&scored, |p| [p.cost, -p.measure])
        .into_iter()
        .copied()
        .collect();
    let level = goal.level(backbone);
    let target = match goal.max_loss {
        Some(loss) => format!(
            "target: {} at most {:.2} pp below the backbone's ({:.2}%)",
            measure.word(),
            100.0 * loss,
            100.0 * level
        ),
        None => format!("target: {} {:.2}%", measure.word(), 100.0 * level),
    };
    Figure {
        measure: measure.word(),
        cost: match problem.settings.cost {
            CostKind::Macs => "mean cost (MACs used / the backbone's MACs)",
            CostKind::Latency => "mean cost (time / the backbone's time, measured on this machine)",
        },
        target: level,
        target_label: target,
        front,
        scored,
        marked,
    }
}
