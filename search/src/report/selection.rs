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
    CERTIFY_TRIES, Certificate, Configuration, Findings, GateFindings, GateRow, GateRowRule,
    LEVELS, Rule, per_try,
};
use crate::simulate::Patience;

/// Every section, in the order the search ran.
pub fn sections(r: &mut String, problem: &Problem, findings: &Findings) {
    saliency(r, problem, findings);
    heads(r, problem, findings);
    search(r, problem, findings);
    certificate(r, problem, findings);
    if let Some(gates) = &findings.gates {
        learned_gate(r, problem, gates);
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
    let searched = &findings.searched;
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
    let _ = writeln!(
        r,
        "The cheapest configurations that meet the target on the selecting frames are scored once each on the certifying frames, at most {CERTIFY_TRIES}; each bound holds with {:.2}% confidence, so {:.0}% for all together (Bonferroni). Correlated neighbouring frames count as fewer samples (effective frames).\n",
        100.0 * per_try(findings.confidence),
        100.0 * findings.confidence
    );
    let m = goal.measure.word();
    let bound = if goal.max_loss.is_some() {
        "accuracy loss, upper bound"
    } else {
        "lower bound"
    };
    let _ = writeln!(
        r,
        "| cost (select) | metric | {m} (select) | {m} (certify) | {bound} | effective frames |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for t in &searched.tries {
        let _ = writeln!(
            r,
            "| {:.4} | {} | {:.2}% | {:.2}% | {}{} | {:.0} |",
            t.select.mean_cost,
            rule_name(t.rule),
            100.0 * t.select.rate(goal.measure),
            100.0 * t.certify.rate(goal.measure),
            bound_cell(&t.certificate),
            if t.certificate.refuted {
                " (refuted)"
            } else {
                ""
            },
            t.certificate.effective
        );
    }
    if searched.all_refuted() {
        let _ = writeln!(
            r,
            "\nThe certifying frames refute every configuration tried: even the upper bound of what they show, with the same confidence, misses the target. What the selecting frames showed did not carry over (the footage changed between the halves, or too few selecting frames for the configurations compared), so the bundle keeps no exits. More held-out frames, from more of the footage (more clips, or `--holdout`), help with both."
        );
    } else if !searched.found.certificate.certified {
        let _ = writeln!(
            r,
            "\nNo configuration tried certifies the target on {} frames: the bundle keeps the best tried, and its promise is the bound it did certify.{}",
            findings.certify_frames,
            if searched.refuted() > 0 {
                " A try marked refuted is not kept: even the upper bound of what these frames show misses the target. After one, only configurations stricter on the selecting frames are tried."
            } else {
                ""
            }
        );
    }
}

fn learned_gate(r: &mut String, problem: &Problem, gates: &GateFindings) {
    let _ = writeln!(r, "\n## Learned gate\n");
    let compared = match gates {
        GateFindings::NoExits => {
            let _ = writeln!(r, "No structure with exits to gate.");
            return;
        }
        GateFindings::NoThreshold => {
            let _ = writeln!(
                r,
                "Gates on the found structure's exits meet the target at no threshold on the selecting frames."
            );
            return;
        }
        GateFindings::Compared(compared) => compared,
    };
    let last_frame = GateInput::AgreesLastFrame.word();
    let measure = problem.goal.measure;
    let m = measure.word();
    let _ = writeln!(
        r,
        "Each exit of the found structure gets a logistic gate over {}, trained on the selecting frames to tell when leaving costs nothing; one threshold on the gates' probability, the cheapest that meets the target there, is certified as one more try. The same gates without `{last_frame}`, fitted the same way, show what the stream signal buys; they are not a candidate.\n",
        inputs_list(&gating::inputs()),
    );
    let _ = writeln!(
        r,
        "| rule | cost (select) | {m} (select) | cost (certify) | {m} (certify) | bound |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    let rows = [Some(&compared.found), Some(&compared.learned)];
    for row in rows
        .into_iter()
        .chain([compared.stream_blind.as_ref()])
        .flatten()
    {
        gate_row(r, row, measure);
    }
    if compared.stream_blind.is_none() {
        let _ = writeln!(
            r,
            "\nWithout `{last_frame}`, gates meet the target at no threshold on the selecting frames."
        );
    }
    if compared.kept {
        let _ = writeln!(
            r,
            "\nThe gates are kept (bundle format `earlyexit/2`); the gates without `{last_frame}` are written under `baselines/no-last-frame`."
        );
    } else {
        let _ = writeln!(r, "\nThe metric rule stays: its certificate is better.");
    }
}

fn gate_row(r: &mut String, row: &GateRow, measure: Measure) {
    let name = match &row.rule {
        GateRowRule::Patient(inputs) => format!("patient: gate over {}", inputs_list(inputs)),
        GateRowRule::Metric(metric) => format!("metric `{}`", metric.word()),
        GateRowRule::Learned(threshold) => format!("gate ≥ {threshold:.4}"),
        GateRowRule::StreamBlind(threshold) => format!(
            "gate ≥ {threshold:.4} without `{}`",
            GateInput::AgreesLastFrame.word()
        ),
    };
    let c = &row.certificate;
    let _ = writeln!(
        r,
        "| {name} | {:.4} | {:.2}% | {:.4} | {:.2}% | {}{} |",
        row.select.mean_cost,
        100.0 * row.select.rate(measure),
        row.certify.mean_cost,
        100.0 * row.certify.rate(measure),
        bound_cell(c),
        match (c.certified, c.refuted) {
            (true, _) => "",
            (false, false) => " (not certified)",
            (false, true) => " (refuted)",
        }
    );
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
            against.map_or("-".to_owned(), paired_cell)
        );
    }
    let _ = writeln!(
        r,
        "| oracle for the chosen heads | {} | {:.3} | 100.00% |{} - | - |",
        chosen.placed.len(),
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
