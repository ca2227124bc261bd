//! The report's tables and plot data.

use std::fmt::Write;

use earlyexit::bundle::Measure;

use super::rules::rule_name;
use super::zoo::{Certificate, Found, HeadOption, Zoo, agreement};
use crate::calibrate::Simulation;
use crate::heads::HeadKind;
use crate::nas;
use crate::paired::Paired;
use crate::plot;
use crate::search::Problem;

/// Every head trained at the kept positions: its agreement with the backbone on the selecting
/// frames, and its cost (MACs, or nanoseconds with `--cost latency`).
pub(super) fn heads_table(
    notes: &mut String,
    problem: &Problem,
    kept: &[usize],
    options: &[Vec<Option<HeadOption>>],
    teacher: &[u32],
) {
    let _ = writeln!(
        notes,
        "\n## Heads (agreement on the selecting frames, and cost)\n"
    );
    let names: Vec<&str> = HeadKind::ALL.iter().map(|k| k.name()).collect();
    let _ = writeln!(notes, "| tensor | {} |", names.join(" | "));
    let _ = writeln!(notes, "|---|{}", "---|".repeat(names.len()));
    for &i in kept {
        let cells: Vec<String> = options[i]
            .iter()
            .map(|o| {
                o.as_ref().map_or("-".to_owned(), |o| {
                    format!(
                        "{:.2}% ({})",
                        100.0 * agreement(&o.select[0], teacher),
                        o.cost
                    )
                })
            })
            .collect();
        let _ = writeln!(
            notes,
            "| `{}` | {} |",
            problem.candidates[i].tensor,
            cells.join(" | ")
        );
    }
}

/// The non-dominated items by `objectives` (mean cost, error), cheapest first, one per point.
fn pareto_front<T>(items: &[T], objectives: impl Fn(&T) -> [f64; 2]) -> Vec<&T> {
    let mut front: Vec<&T> = items
        .iter()
        .filter(|a| {
            !items
                .iter()
                .any(|b| nas::dominates(&objectives(b), &objectives(a)))
        })
        .collect();
    front.sort_by(|a, b| objectives(a)[0].total_cmp(&objectives(b)[0]));
    front.dedup_by(|a, b| objectives(a) == objectives(b));
    front
}

/// Rows of the Pareto front the report shows.
const FRONT_ROWS: usize = 40;

/// The non-dominated configurations on the selecting frames, cheapest first: the rows around
/// the cheapest one within `limit`, where the choice is made.
pub(super) fn front_table(notes: &mut String, scored: &[(usize, nas::Scored)], limit: f64) {
    let front = pareto_front(scored, |s| s.1.objectives);
    let within = front
        .iter()
        .position(|s| s.1.objectives[1] <= limit)
        .unwrap_or(front.len());
    let start = within
        .saturating_sub(FRONT_ROWS / 2)
        .min(front.len().saturating_sub(FRONT_ROWS));
    let shown = &front[start..(start + FRONT_ROWS).min(front.len())];
    let _ = writeln!(
        notes,
        "Pareto front on the selecting frames: {} of its {} configurations, around the cheapest whose error is within the target's {limit:.4} (in bold). Error = 1 − the target's measure, or the accuracy loss under `--max-accuracy-loss`, as an upper bound (about one standard error).\n",
        shown.len(),
        front.len()
    );
    let _ = writeln!(notes, "| mean cost | error | metric | exits |");
    let _ = writeln!(notes, "|---|---|---|---|");
    for (row, (m, s)) in shown.iter().enumerate() {
        let exits = s
            .genome
            .split_last()
            .map_or(0, |(_, g)| g.iter().filter(|g| **g > 0).count());
        let bold = if start + row == within { "**" } else { "" };
        let _ = writeln!(
            notes,
            "| {bold}{:.4}{bold} | {bold}{:.4}{bold} | {} | {exits} |",
            s.objectives[0],
            s.objectives[1],
            rule_name(*m)
        );
    }
}

/// The plot's data: the search's configurations and front on the selecting frames; the
/// backbone, the baselines, the oracle and the chosen structure on the certifying frames, as in
/// the baselines table, and the chosen structure on the selecting frames too.
pub(super) fn figure(
    zoo: &Zoo,
    found: &Found,
    baselines: &[(plot::Mark, &Found)],
    oracle: f64,
    backbone_accuracy: Option<f64>,
) -> plot::Figure {
    let measure = zoo.problem.goal.measure;
    // The measure, less any shortfall from a --target-agreement floor (see `Zoo::error`).
    let point = |[cost, error]: [f64; 2]| plot::Point {
        cost,
        measure: 1.0 - error,
    };
    let sim = |s: &Simulation| plot::Point {
        cost: s.mean_cost,
        measure: measure_of(measure, s),
    };
    // Both give the backbone's answer on every frame.
    let backbone = match measure {
        Measure::Accuracy => backbone_accuracy.unwrap_or(1.0),
        Measure::Agreement => 1.0,
    };
    let mut marked = vec![(
        plot::Mark::Backbone,
        plot::Point {
            cost: 1.0,
            measure: backbone,
        },
    )];
    marked.extend(baselines.iter().map(|(m, f)| (*m, sim(&f.certify))));
    marked.extend([
        (plot::Mark::ChosenSelect, sim(&found.select)),
        (plot::Mark::ChosenCertify, sim(&found.certify)),
        (
            plot::Mark::Oracle,
            plot::Point {
                cost: oracle,
                measure: backbone,
            },
        ),
    ]);
    plot::Figure {
        measure: measure_name(measure),
        target: zoo.problem.goal.target,
        front: pareto_front(&found.scored, |o| *o)
            .into_iter()
            .map(|o| point(*o))
            .collect(),
        scored: found.scored.iter().map(|o| point(*o)).collect(),
        marked,
    }
}

/// The oracle's mean cost on the certifying frames for the found structure's heads.
pub(super) fn oracle_cost(zoo: &Zoo, f: &Found) -> f64 {
    let Some(costs) = zoo.costs(&f.placed) else {
        return 1.0;
    };
    let n = zoo.certify.teacher.len();
    let total: f64 = (0..n)
        .map(|i| {
            let stage = f
                .placed
                .iter()
                .position(|&(c, k, _)| {
                    zoo.options[c][k]
                        .as_ref()
                        .is_some_and(|o| o.certify[f.metric].class[i] == zoo.certify.teacher[i])
                })
                .unwrap_or(f.placed.len());
            costs.cost(stage, true)
        })
        .sum();
    total / n.max(1) as f64
}

pub(super) fn bound_cell(c: &Certificate) -> String {
    match c.loss_bound {
        Some(l) => format!("{:.2} pp", 100.0 * l),
        None => format!("{:.2}%", 100.0 * c.bound),
    }
}

pub(super) fn measure_of(measure: Measure, sim: &Simulation) -> f64 {
    match measure {
        Measure::Agreement => sim.agreement(),
        Measure::Accuracy => sim.accuracy(),
    }
}

pub(super) fn measure_name(measure: Measure) -> &'static str {
    match measure {
        Measure::Agreement => "agreement",
        Measure::Accuracy => "accuracy",
    }
}

/// The baselines against the chosen structure on the certifying frames, with the backbone and
/// the oracle. Returns the backbone's accuracy there, when there is ground truth.
pub(super) fn baselines_table(
    notes: &mut String,
    zoo: &Zoo,
    found: &Found,
    sdn_found: &Found,
    even_found: &Found,
    oracle: f64,
) -> Option<f64> {
    let problem = zoo.problem;
    let _ = writeln!(notes, "\n## Against the baselines (certifying frames)\n");
    let _ = writeln!(
        notes,
        "Every row is built from the same heads with the same target, search and certificate; each is written as a bundle under `baselines/` for `evaluate` to score on other footage.\n"
    );
    // With an agreement target, the agreement column is the measure itself.
    let accuracy_too = problem.goal.measure == Measure::Accuracy;
    let accuracy_cell = |x: Option<f64>| match (accuracy_too, x) {
        (false, _) => String::new(),
        (true, Some(v)) => format!(" {:.2}% |", 100.0 * v),
        (true, None) => " - |".to_owned(),
    };
    let _ = writeln!(
        notes,
        "| structure | exits | mean cost | agreement |{} certified bound | frames only the chosen / only this one gets right, p |",
        if accuracy_too { " accuracy |" } else { "" }
    );
    let _ = writeln!(
        notes,
        "|---|---|---|---|{}---|---|",
        if accuracy_too { "---|" } else { "" }
    );
    let backbone_accuracy = zoo
        .certify
        .labels
        .map(|l| crate::calibrate::share_alike(l, zoo.certify.teacher));
    let _ = writeln!(
        notes,
        "| full backbone | 0 | 1.000 | 100.00% |{} - | {} |",
        accuracy_cell(backbone_accuracy),
        against_chosen(zoo, found, zoo.certify.teacher)
    );
    for (name, f, baseline) in [
        ("chosen (searched)", found, false),
        (
            "an exit at every kept position, max-prob (Shallow-Deep Networks)",
            sdn_found,
            true,
        ),
        ("evenly spaced (first version's rule)", even_found, true),
    ] {
        let _ = writeln!(
            notes,
            "| {name} | {} | {:.3} | {:.2}% |{} {:.2}%{} | {} |",
            f.placed.len(),
            f.certify.mean_cost,
            100.0 * f.certify.agreement(),
            accuracy_cell(Some(f.certify.accuracy())),
            100.0 * f.certificate.bound,
            if f.certificate.certified {
                ""
            } else {
                " (target not certified)"
            },
            if baseline {
                against_chosen(zoo, found, &f.certify.answers)
            } else {
                "-".to_owned()
            }
        );
    }
    let _ = writeln!(
        notes,
        "| oracle for the chosen heads | {} | {oracle:.3} | 100.00% |{} - | - |",
        found.placed.len(),
        accuracy_cell(None)
    );
    let _ = writeln!(
        notes,
        "\nThe last column counts, under the target's measure, the frames where only one of the chosen structure and that row is right; p is McNemar's exact test of whether a split that uneven could be chance.\n\nThe oracle lets each frame leave at the earliest chosen exit that gives the backbone's answer: no exit rule can cost less at full agreement with these heads."
    );
    backbone_accuracy
}

/// The frames where only the chosen structure, or only a structure answering `answers`, is
/// right on the certifying frames, with McNemar's p.
fn against_chosen(zoo: &Zoo, found: &Found, answers: &[u32]) -> String {
    let measure = zoo.problem.goal.measure;
    let mut paired = Paired::default();
    for (i, (&ours, &theirs)) in found.certify.answers.iter().zip(answers).enumerate() {
        paired.add(
            zoo.certify.right(measure, i, ours),
            zoo.certify.right(measure, i, theirs),
        );
    }
    format!(
        "{} / {}, {:.3}",
        paired.only_a,
        paired.only_b,
        paired.p_value()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cost: f64, error: f64) -> (usize, nas::Scored) {
        (
            0,
            nas::Scored {
                genome: vec![1, 0, 3],
                objectives: [cost, error],
            },
        )
    }

    #[test]
    fn the_front_table_shows_the_rows_around_the_cheapest_within_the_target() {
        // A front of 100 configurations, error falling as cost rises, and dominated ones
        // beside it that must not show.
        let mut scored: Vec<_> = (0..100)
            .map(|i| config(0.01 * i as f64, 0.1 - 0.001 * i as f64))
            .collect();
        scored.extend((0..100).map(|i| config(0.01 * i as f64 + 0.005, 0.2)));
        let mut notes = String::new();
        // Configurations 70 and up are within the limit.
        front_table(&mut notes, &scored, 0.0305);
        let rows: Vec<&str> = notes.lines().filter(|l| l.starts_with("| ")).collect();
        // The header, then FRONT_ROWS rows.
        assert_eq!(rows.len(), 1 + FRONT_ROWS, "{notes}");
        assert!(notes.contains("40 of its 100 configurations"), "{notes}");
        let bold: Vec<&&str> = rows.iter().filter(|r| r.contains("**")).collect();
        assert_eq!(bold.len(), 1, "{notes}");
        assert!(
            bold[0].starts_with("| **0.7000** | **0.0300** |"),
            "{notes}"
        );
        // Twenty rows before it, the rest after, up to the front's end.
        assert!(rows[1].starts_with("| 0.5000 |"), "{notes}");
        assert!(rows[FRONT_ROWS].starts_with("| 0.8900 |"), "{notes}");
    }
}
