//! The exit search's sections of the report: candidate positions, heads, the search and its
//! Pareto front, the certificate, learned gates and the baselines.

use std::fmt::Write;

use earlyexit::bundle::{Measure, Word};
use earlyexit::gate::GateInput;

use super::text::inputs_list;
use crate::gating;
use crate::heads::HeadKind;
use crate::paired::Paired;
use crate::problem::Problem;
use crate::select::{
    Certificate, Configuration, Findings, GateFindings, LEVELS, LOOSEST, RUNGS, Rule, TryAt,
};
use crate::simulate::Patience;

/// Every section, in the order the search ran.
pub fn sections(r: &mut String, problem: &Problem, findings: &Findings) {
    saliency(r, problem, findings);
    heads(r, problem, findings);
    search(r, problem, findings);
    certificate(r, problem, findings);
    if let Some(gates) = &findings.gates {
        learned_gate(r, findings, gates);
    }
    baselines(r, problem, findings);
}

/// A rule as the tables name it.
fn rule_name(rule: Rule) -> String {
    let word = rule.metric.word();
    match rule.patience {
        Patience::None => word.to_owned(),
        Patience::AfterFirst => format!("{word}, agreeing after exit 0"),
        Patience::Every => format!("{word}, agreeing (exit 0 votes)"),
    }
}

/// A certificate's bound as a cell: the accuracy loss under a loss goal, else the rate.
fn bound_cell(c: &Certificate) -> String {
    match c.loss_bound {
        Some(l) => format!("{:.2} pp", 100.0 * l),
        None => format!("{:.2}%", 100.0 * c.bound),
    }
}

fn saliency(r: &mut String, problem: &Problem, findings: &Findings) {
    let _ = writeln!(r, "\n## Candidate positions (saliency)\n");
    let _ = writeln!(
        r,
        "Saliency: the share of selecting frames a GAP → Linear probe at the position could let leave at ≥ 99% agreement (or the target, if higher), times the share of the backbone's cost (MACs, or measured time) it would save. The {} most salient positions are kept (of positions with no MACs between them, only the last may be: it costs the same, and a cut there leaves ONNX Runtime's fused Conv+Add+ReLU whole).\n",
        findings.kept.len()
    );
    let _ = writeln!(
        r,
        "| # | tensor | MACs before | probe agreement | saliency | kept |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for (i, s) in findings.saliency.iter().enumerate() {
        let _ = writeln!(
            r,
            "| {i} | `{}` | {:.1}% | {:.2}% | {:.4} | {} |",
            problem.candidates[i].tensor,
            100.0 * problem.macs_share_before(i),
            100.0 * s.agreement,
            s.score,
            if findings.kept.contains(&i) {
                "yes"
            } else {
                ""
            }
        );
    }
}

/// Every head trained at the kept positions: its agreement with the backbone on the selecting
/// frames, and its cost (MACs, or nanoseconds with `--cost latency`).
fn heads(r: &mut String, problem: &Problem, findings: &Findings) {
    let _ = writeln!(
        r,
        "\n## Heads (agreement on the selecting frames, and cost)\n"
    );
    let names: Vec<&str> = HeadKind::ALL.iter().map(|k| k.name()).collect();
    let _ = writeln!(r, "| tensor | {} |", names.join(" | "));
    let _ = writeln!(r, "|---|{}", "---|".repeat(names.len()));
    for row in &findings.heads {
        let cells: Vec<String> = row
            .heads
            .iter()
            .map(|h| {
                h.map_or("-".to_owned(), |h| {
                    format!("{:.2}% ({})", 100.0 * h.agreement, h.cost)
                })
            })
            .collect();
        let _ = writeln!(
            r,
            "| `{}` | {} |",
            problem.candidates[row.candidate].tensor,
            cells.join(" | ")
        );
    }
}

/// Rows of the Pareto front the report shows.
const FRONT_ROWS: usize = 40;

fn search(r: &mut String, problem: &Problem, findings: &Findings) {
    let searched = &findings.searched.explored;
    let _ = writeln!(r, "\n## Search\n");
    let _ = writeln!(
        r,
        "{} configurations scored ({} structures, each at every threshold level) over {} kept positions × {} head architectures × {} exit rules × {} threshold levels; {} selecting and {} certifying frames.\n",
        searched.configurations.len(),
        searched.structures,
        searched.positions,
        searched.kinds,
        searched.rules,
        LEVELS.len(),
        findings.select_frames,
        findings.certify_frames
    );
    front_table(r, &searched.front(), problem.goal.limit());
}

/// The non-dominated configurations on the selecting frames, cheapest first: the rows around
/// the cheapest one within `limit`, where the choice is made.
fn front_table(r: &mut String, front: &[&Configuration], limit: f64) {
    let within = front
        .iter()
        .position(|c| c.objectives[1] <= limit)
        .unwrap_or(front.len());
    let start = within
        .saturating_sub(FRONT_ROWS / 2)
        .min(front.len().saturating_sub(FRONT_ROWS));
    let shown = &front[start..(start + FRONT_ROWS).min(front.len())];
    let _ = writeln!(
        r,
        "Pareto front on the selecting frames: {} of its {} configurations, around the cheapest whose error is within the target's {limit:.4} (in bold). Error = 1 − the target's measure, or the accuracy loss under `--max-accuracy-loss`, as an upper bound (about one standard error).\n",
        shown.len(),
        front.len()
    );
    let _ = writeln!(r, "| mean cost | error | metric | exits |");
    let _ = writeln!(r, "|---|---|---|---|");
    for (row, c) in shown.iter().enumerate() {
        let bold = if start + row == within { "**" } else { "" };
        let _ = writeln!(
            r,
            "| {bold}{:.4}{bold} | {bold}{:.4}{bold} | {} | {} |",
            c.objectives[0],
            c.objectives[1],
            rule_name(c.rule),
            c.exits()
        );
    }
}

fn certificate(r: &mut String, problem: &Problem, findings: &Findings) {
    let goal = &problem.goal;
    let searched = &findings.searched;
    let _ = writeln!(r, "\n## Certificate\n");
    let ladders = searched.ladders.len();
    let _ = writeln!(
        r,
        "The structure the selecting frames prefer (the cheapest that meets the target there) is certified on the certifying frames up a ladder of thresholds: at each exit, from none of the frames leaving early to {LOOSEST} times as many as at the structure's own thresholds (counted on the selecting frames), in {RUNGS} rungs{}. A ladder is climbed by fixed-sequence testing (Learn then Test): its steps are tested in order, each with {:.2}% confidence, until the first that fails, and the steps passed hold all together with that confidence, however many they are{}. The bundle keeps the cheapest step passed, else no exit at all. Scenes are the statistical units: the backbone's answers show the {} certifying frames to be about {:.0} independent scenes, and a step's variance is counted over blocks that long, with one whole failing block that was not seen; correlated failures count as fewer samples (effective frames).",
        if ladders > 1 {
            format!(
                "; with a stream rule, one ladder walks the exits' rungs and the rule's threshold together (its detector and cap as the selecting frames prefer, its threshold from reusing no answer up through {RUNGS} quantiles of the distances between neighbouring selecting frames), each step moving one of the two a rung: the one along which some rung ahead saves cost for less error on the selecting frames per cost saved; learned gates' thresholds are a ladder of their own"
            )
        } else {
            String::new()
        },
        100.0 * searched.each,
        if ladders > 1 {
            format!(
                ". The {:.0}% confidence of the promise is split evenly among the {ladders} ladders (Bonferroni)",
                100.0 * findings.confidence
            )
        } else {
            String::new()
        },
        findings.certify_frames,
        findings.certify_scenes,
    );
    if ladders == 0 {
        let _ = writeln!(r, "\nNo ladder to climb.");
    }
    for (l, ladder) in searched.ladders.iter().enumerate() {
        let _ = writeln!(
            r,
            "\nLadder {} ({}): {} of its {} steps tested.\n",
            l + 1,
            match ladder.tries.first().map(|t| &t.structure) {
                Some(s) if s.gated.is_some() => "learned gates",
                Some(s) if s.reuse.is_some() => "stream rule and exit thresholds",
                _ => "exit thresholds",
            },
            ladder.tries.len(),
            ladder.steps
        );
        tries_table(r, goal.measure, goal.max_loss.is_some(), findings, l);
    }
    if let Some(shortfall) = shortfall(problem, findings) {
        let _ = writeln!(r, "\n{shortfall}");
    }
}

/// The steps of ladder `l` tested on the certifying frames, the one kept in bold.
fn tries_table(r: &mut String, measure: Measure, loss: bool, findings: &Findings, l: usize) {
    let m = measure.word();
    let bound = if loss {
        "accuracy loss, upper bound"
    } else {
        "lower bound"
    };
    let _ = writeln!(
        r,
        "| step | rule | cost (select) | cost (certify) | {m} (select) | {m} (certify) | {bound} | effective frames |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
    let searched = &findings.searched;
    for (k, t) in searched.ladders[l].tries.iter().enumerate() {
        let bold = if searched.kept == Some(TryAt { ladder: l, step: k }) {
            "**"
        } else {
            ""
        };
        let mut rule = match &t.structure.gated {
            Some(g) => format!("gates ≥ {:.4}", g.threshold),
            None => rule_name(t.structure.rule),
        };
        if let Some(reuse) = &t.structure.reuse {
            let _ = write!(
                rule,
                ", reuse ≤ {:.4} ({}, ≤ {} frames): {:.2}% reused",
                reuse.threshold,
                reuse.detector.word(),
                reuse.max_age,
                100.0 * t.certify.reused.frames as f64 / t.certify.frames.max(1) as f64
            );
        }
        let _ = writeln!(
            r,
            "| {bold}{}{bold} | {rule} | {:.4} | {:.4} | {:.2}% | {:.2}% | {}{} | {:.0} |",
            k + 1,
            t.select.mean_cost,
            t.certify.mean_cost,
            100.0 * t.select.rate(measure),
            100.0 * t.certify.rate(measure),
            bound_cell(&t.certificate),
            if t.certificate.certified {
                ""
            } else {
                " (fails: the climb stops)"
            },
            t.certificate.effective
        );
    }
}

/// When the bundle keeps no exit: why, with what the certifying frames could certify, how much
/// more footage the target needs, and, for an absolute accuracy, what the backbone itself
/// scores. For the report, and for the search's warning.
pub fn shortfall(problem: &Problem, findings: &Findings) -> Option<String> {
    let chosen = &findings.chosen;
    if !chosen.structure.placed.is_empty() || chosen.structure.reuse.is_some() {
        return None;
    }
    let goal = &problem.goal;
    let m = goal.measure.word();
    let asked = match goal.max_loss {
        Some(l) => format!("an accuracy loss of at most {:.2} pp", 100.0 * l),
        None => format!("{m} of at least {:.2}%", 100.0 * goal.target),
    };
    let frames = findings.certify_frames;
    let ladder = findings.searched.ladders.first();
    let mut s = match ladder.and_then(|l| l.tries.last()) {
        None => format!(
            "No configuration with exits meets {asked} on the {} selecting frames, so none could be certified.",
            findings.select_frames
        ),
        Some(t) if t.certificate.certified => format!(
            "{asked} is certified on {frames} held-out frames only by rungs that cost as much as the backbone."
        ),
        Some(t) => {
            let c = &t.certificate;
            let could = match c.loss_bound {
                Some(l) => format!("a loss of at most {:.2} pp", 100.0 * l),
                None => format!("{m} of at least {:.2}%", 100.0 * c.bound),
            };
            let mut s = format!(
                "{asked} cannot be certified below full cost on {frames} held-out frames ({:.0} effective): the climb stopped at rung {} (mean cost {:.3}), which certifies only {could} with {:.0}% confidence",
                c.effective,
                ladder.map_or(0, |l| l.tries.len()),
                t.certify.mean_cost,
                100.0 * findings.searched.each
            );
            let _ = match c.frames_needed {
                Some(n) => write!(
                    s,
                    "; about {n:.0} held-out frames like these would certify the target."
                ),
                None => write!(
                    s,
                    "; its own {} on these frames misses the target, and more frames like them would not change that.",
                    match goal.max_loss {
                        Some(_) => format!(
                            "loss, {:.2} pp,",
                            100.0 * (chosen.certify.accuracy() - t.certify.accuracy())
                        ),
                        None => format!("{m}, {:.2}%,", 100.0 * t.certify.rate(goal.measure)),
                    }
                ),
            };
            s
        }
    };
    if goal.max_loss.is_none() && goal.measure == Measure::Accuracy {
        let backbone = chosen.certify.accuracy();
        let _ = write!(
            s,
            " The backbone alone scores {:.2}% on the held-out frames{}.",
            100.0 * backbone,
            if backbone < goal.target {
                ", below the target itself"
            } else {
                ""
            }
        );
    }
    s.push_str(" The bundle is the backbone alone, and promises agreement 1.");
    Some(s)
}

fn learned_gate(r: &mut String, findings: &Findings, gates: &GateFindings) {
    let _ = writeln!(r, "\n## Learned gate\n");
    let fit = match gates {
        GateFindings::NoExits => {
            let _ = writeln!(r, "The search found no structure with exits to gate.");
            return;
        }
        GateFindings::Fitted(fit) => fit,
    };
    let last_frame = GateInput::AgreesLastFrame.word();
    let _ = writeln!(
        r,
        "Each of the {} exits of the structure the selecting frames prefer gets a logistic gate over {}, trained on the selecting frames to tell when leaving costs nothing. The thresholds on the gates' probability are the second ladder above (rule `gates ≥ t`). {}",
        fit.exits,
        inputs_list(&gating::inputs()),
        if findings.searched.found.structure.gated.is_some() {
            "The bundle keeps a gate step (bundle format `earlyexit/2`)."
        } else {
            "The bundle keeps a metric rule: no step of the gates' ladder was both certified and the cheapest."
        }
    );
    match &fit.stream_blind {
        Some(f) => {
            let _ = writeln!(
                r,
                "\nThe same gates without `{last_frame}`, at their cheapest threshold that meets the target on the selecting frames, certified alone: mean cost {:.4} on the certifying frames, agreement {:.2}%, bound {}{}. They are on no ladder{}.",
                f.certify.mean_cost,
                100.0 * f.certify.agreement(),
                bound_cell(&f.certificate),
                if f.certificate.certified {
                    ""
                } else {
                    " (target not certified)"
                },
                if findings.searched.found.structure.gated.is_some() {
                    "; they are written under `baselines/no-last-frame`"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(
                r,
                "\nWithout `{last_frame}`, gates meet the target at no threshold on the selecting frames."
            );
        }
    }
}

/// The baselines against the chosen structure on the certifying frames, with the backbone and
/// the oracle.
fn baselines(r: &mut String, problem: &Problem, findings: &Findings) {
    let b = &findings.baselines;
    let chosen = &findings.chosen;
    let _ = writeln!(r, "\n## Against the baselines (certifying frames)\n");
    let _ = writeln!(
        r,
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
        r,
        "| structure | exits | mean cost | agreement |{} certified bound | frames only the chosen / only this one gets right, p |",
        if accuracy_too { " accuracy |" } else { "" }
    );
    let _ = writeln!(
        r,
        "|---|---|---|---|{}---|---|",
        if accuracy_too { "---|" } else { "" }
    );
    let _ = writeln!(
        r,
        "| full backbone | 0 | 1.000 | 100.00% |{} - | {} |",
        accuracy_cell(b.backbone_accuracy),
        paired_cell(&b.against_backbone)
    );
    for (name, f, against) in [
        ("chosen (searched)", chosen, None),
        (
            "an exit at every kept position, max-prob (Shallow-Deep Networks)",
            &b.shallow_deep,
            Some(&b.against_shallow_deep),
        ),
        (
            "evenly spaced (first version's rule)",
            &b.even,
            Some(&b.against_even),
        ),
    ] {
        let _ = writeln!(
            r,
            "| {name} | {} | {:.3} | {:.2}% |{} {:.2}%{} | {} |",
            f.structure.placed.len(),
            f.certify.mean_cost,
            100.0 * f.certify.agreement(),
            accuracy_cell(Some(f.certify.accuracy())),
            100.0 * f.certificate.bound,
            if f.certificate.certified {
                ""
            } else {
                " (target not certified)"
            },
            against.map_or("-".to_owned(), paired_cell)
        );
    }
    let _ = writeln!(
        r,
        "| oracle for the chosen heads | {} | {:.3} | 100.00% |{} - | - |",
        chosen.structure.placed.len(),
        b.oracle,
        accuracy_cell(None)
    );
    let _ = writeln!(
        r,
        "\nThe last column counts, under the target's measure, the frames where only one of the chosen structure and that row is right; p is McNemar's exact test of whether a split that uneven could be chance.\n\nThe oracle lets each frame leave at the earliest chosen exit that gives the backbone's answer: no exit rule can cost less at full agreement with these heads."
    );
}

/// Frames only the chosen structure / only the other gets right, with McNemar's p.
fn paired_cell(p: &Paired) -> String {
    format!("{} / {}, {:.3}", p.only_a, p.only_b, p.p_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nas;

    fn config(cost: f64, error: f64) -> Configuration {
        Configuration {
            rule: Rule::PLAIN,
            genome: vec![1, 0, 3],
            objectives: [cost, error],
            rate: 1.0 - error,
        }
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
        let front = nas::pareto_front(&scored, |c| c.objectives);
        front_table(&mut notes, &front, 0.0305);
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
