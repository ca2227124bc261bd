//! One family searched with NSGA-II on the selecting frames, then its cheapest configurations
//! that meet the target there certified one by one on frames nothing was fitted on.

use std::fmt::Write;

use super::rules::{LEVELS, rule_name};
use super::tables::{bound_cell, front_table, measure_name, measure_of};
use super::zoo::{Family, Found, Zoo};
use crate::calibrate::Simulation;
use crate::nas;

/// Configurations certified at most; the confidence is split among them (Bonferroni).
pub(super) const CERTIFY_TRIES: usize = 5;

/// The confidence each try's bound holds with, so that all of them hold with `confidence`.
pub(super) fn per_try(confidence: f64) -> f64 {
    1.0 - (1.0 - confidence) / CERTIFY_TRIES as f64
}

/// NSGA-II over `family` for each of its exit rules on the selecting frames, then the cheapest
/// configurations that meet the target there, certified one by one.
pub(super) fn search_and_certify(
    zoo: &Zoo,
    family: &Family,
    budget: usize,
    seed: u64,
    confidence: f64,
    tries: usize,
    notes: Option<&mut String>,
) -> Found {
    let space = family.space();
    // Every (structure, level) scored, the level as a last gene.
    let mut scored: Vec<(usize, nas::Scored)> = Vec::new();
    let mut structures = 0;
    let per_rule = (budget / family.rules.len()).max(10);
    let bar = crate::progress::bar(
        "searching structures",
        Some((per_rule * family.rules.len()) as u64),
    );
    for &m in &family.rules {
        let settings = nas::Settings {
            budget: per_rule,
            population: 48,
            seed: seed.wrapping_add(m as u64),
        };
        let max_error = zoo.problem.goal.limit();
        // A structure is worth its cheapest feasible level, else its most accurate one.
        let outcome = nas::search(&space, &settings, &[vec![0; space.positions]], |g| {
            bar.inc(1);
            let mut best = [f64::INFINITY; 2];
            let Some(mut placed) = zoo.placed(family, g, 0) else {
                return best;
            };
            let Some(costs) = zoo.costs(&placed) else {
                return best;
            };
            for level in 0..LEVELS.len() {
                for p in &mut placed {
                    p.2 = level;
                }
                let Some(sim) = zoo.simulate_costed(m, &placed, false, &costs) else {
                    continue;
                };
                let objectives = [sim.mean_cost, zoo.error(&sim)];
                let mut genome = g.to_vec();
                genome.push(level as u16);
                scored.push((m, nas::Scored { genome, objectives }));
                let feasible = |o: &[f64; 2]| o[1] <= max_error;
                let better = match (feasible(&objectives), feasible(&best)) {
                    (true, true) => objectives[0] < best[0],
                    (true, false) => true,
                    (false, true) => false,
                    (false, false) => objectives[1] < best[1],
                };
                if better {
                    best = objectives;
                }
            }
            best
        });
        structures += outcome.scored.len();
    }
    bar.finish_and_clear();
    let max_error = zoo.problem.goal.limit();
    let mut feasible: Vec<&(usize, nas::Scored)> = scored
        .iter()
        .filter(|(_, s)| s.objectives[1] <= max_error)
        .collect();
    feasible.sort_by(|a, b| a.1.objectives[0].total_cmp(&b.1.objectives[0]));

    let each = per_try(confidence);
    let mut table = String::new();
    // No exit at all is what is left when no structure meets the target on the selecting
    // frames, or the certifying frames refute every one that does. When some do but none
    // certifies, the best certified of those not refuted is kept, with the promise it did
    // certify: the backbone alone would certify more and save nothing.
    let placed = Vec::new();
    let sel = zoo
        .simulate(0, &placed, false)
        .unwrap_or_else(|| empty_simulation(zoo.select.teacher.len()));
    let cert = zoo
        .simulate(0, &placed, true)
        .unwrap_or_else(|| empty_simulation(zoo.certify.teacher.len()));
    let no_exit = Found {
        metric: 0,
        placed,
        gated: None,
        certificate: zoo.certificate(&cert, each),
        select: sel,
        certify: cert,
        scored: Vec::new(),
    };
    let mut best: Option<Found> = None;
    let mut tried = std::collections::HashSet::new();
    let mut refuted = 0;
    // After a refuted try, only configurations stricter on the selecting frames are worth a
    // try: those as lax as it are likely refuted too.
    let mut laxest_worth_trying = f64::INFINITY;
    for (m, s) in feasible {
        if tried.len() >= tries {
            break;
        }
        if s.objectives[1] >= laxest_worth_trying {
            continue;
        }
        let Some((level, genome)) = s.genome.split_last() else {
            continue;
        };
        let Some(placed) = zoo.placed(family, genome, usize::from(*level)) else {
            continue;
        };
        let (Some(sel), Some(cert)) = (
            zoo.simulate(*m, &placed, false),
            zoo.simulate(*m, &placed, true),
        ) else {
            continue;
        };
        // Structures that answer every frame alike (an exit nobody leaves at) would certify
        // alike: one try, the cheapest of them.
        if !tried.insert((sel.answers.clone(), cert.answers.clone())) {
            continue;
        }
        let certificate = zoo.certificate(&cert, each);
        if certificate.refuted {
            refuted += 1;
            laxest_worth_trying = laxest_worth_trying.min(s.objectives[1]);
        }
        let _ = writeln!(
            table,
            "| {:.4} | {} | {:.2}% | {:.2}% | {}{} | {:.0} |",
            sel.mean_cost,
            rule_name(*m),
            100.0 * measure_of(zoo.problem.goal.measure, &sel),
            100.0 * measure_of(zoo.problem.goal.measure, &cert),
            bound_cell(&certificate),
            if certificate.refuted {
                " (refuted)"
            } else {
                ""
            },
            certificate.effective
        );
        let found = Found {
            metric: *m,
            placed,
            gated: None,
            certificate,
            select: sel,
            certify: cert,
            scored: Vec::new(),
        };
        if found.certificate.certified {
            best = Some(found);
            break;
        }
        if found
            .certificate
            .better_uncertified_than(best.as_ref().map(|b| &b.certificate))
        {
            best = Some(found);
        }
    }
    // Every try refuted: none is kept, however well it did on the selecting frames.
    let all_refuted = refuted > 0 && refuted == tried.len();
    let mut found = best.unwrap_or(no_exit);
    found.scored = scored.iter().map(|(_, s)| s.objectives).collect();
    if let Some(notes) = notes {
        let _ = writeln!(notes, "\n## Search\n");
        let _ = writeln!(
            notes,
            "{} configurations scored ({structures} structures, each at every threshold level) over {} kept positions × {} head architectures × {} exit rules × {} threshold levels; {} selecting and {} certifying frames.\n",
            found.scored.len(),
            family.positions.len(),
            family.kinds.len(),
            family.rules.len(),
            LEVELS.len(),
            zoo.select.teacher.len(),
            zoo.certify.teacher.len()
        );
        front_table(notes, &scored, zoo.problem.goal.limit());
        let _ = writeln!(notes, "\n## Certificate\n");
        let _ = writeln!(
            notes,
            "The cheapest configurations that meet the target on the selecting frames are scored once each on the certifying frames, at most {CERTIFY_TRIES}; each bound holds with {:.2}% confidence, so {:.0}% for all together (Bonferroni). Correlated neighbouring frames count as fewer samples (effective frames).\n",
            100.0 * each,
            100.0 * confidence
        );
        let m = measure_name(zoo.problem.goal.measure);
        let bound = if zoo.problem.goal.max_loss.is_some() {
            "accuracy loss, upper bound"
        } else {
            "lower bound"
        };
        let _ = writeln!(
            notes,
            "| cost (select) | metric | {m} (select) | {m} (certify) | {bound} | effective frames |"
        );
        let _ = writeln!(notes, "|---|---|---|---|---|---|");
        notes.push_str(&table);
        if all_refuted {
            let _ = writeln!(
                notes,
                "\nThe certifying frames refute every configuration tried: even the upper bound of what they show, with the same confidence, misses the target. What the selecting frames showed did not carry over (the footage changed between the halves, or too few selecting frames for the configurations compared), so the bundle keeps no exits. More held-out frames, from more of the footage (more clips, or `--holdout`), help with both."
            );
        } else if !found.certificate.certified {
            let _ = writeln!(
                notes,
                "\nNo configuration tried certifies the target on {} frames: the bundle keeps the best tried, and its promise is the bound it did certify.{}",
                zoo.certify.teacher.len(),
                if refuted > 0 {
                    " A try marked refuted is not kept: even the upper bound of what these frames show misses the target. After one, only configurations stricter on the selecting frames are tried."
                } else {
                    ""
                }
            );
        }
    }
    found
}

fn empty_simulation(frames: usize) -> Simulation {
    Simulation {
        exits: vec![frames],
        agree: vec![frames],
        correct: vec![0],
        frames,
        mean_cost: 1.0,
        answers: Vec::new(),
    }
}
