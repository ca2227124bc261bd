//! The exit-structure search (`--strategy nas`): prune candidate positions by saliency, train
//! every head architecture at the kept ones, search positions × heads × metric × thresholds
//! with NSGA-II on cached head outputs, and certify the choice on frames nothing was fitted on.
//!
//! The held-out frames of each footage are split in time: the first half selects (thresholds,
//! structure), the second half only certifies.

use std::fmt::Write;

use anyhow::Result;
use earlyexit::bundle::{Measure, Metric, Promise};
use earlyexit::cost::CostTable;

use crate::calibrate::{ExitScores, Reference, Simulation, simulate};
use crate::certify;
use crate::heads::{HeadKind, TrainedHead, Training};
use crate::nas::{self, Space};
use crate::search::{Choice, ChosenExit, Problem, head_macs, score, segment_macs, train_head};

const METRICS: [Metric; 3] = [Metric::MaxProb, Metric::Margin, Metric::Entropy];

/// Thresholds tried per exit: the score at these shares of the selecting frames (the most
/// confident share `1 - q` leaves).
const QUANTILES: [f64; 12] = [
    0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.94, 0.97, 0.99, 0.995,
];

/// Configurations certified at most; the confidence is split among them (Bonferroni).
const CERTIFY_TRIES: usize = 5;

/// A trained head at a kept position, with its outputs on the selecting and certifying frames.
struct HeadOption {
    head: TrainedHead,
    macs: u64,
    /// Per metric: scores on the selecting frames and on the certifying frames.
    select: Vec<ExitScores>,
    certify: Vec<ExitScores>,
    /// Per metric: the threshold grid.
    thresholds: Vec<Vec<f64>>,
}

pub fn choose(problem: &Problem) -> Result<Choice> {
    let args = problem.args;
    let held = &problem.frames.held;
    let (select, certify_frames) = split(&problem.frames.held_ranges);
    let labels = held.all_labels();
    let pick = |v: &[u32], idx: &[usize]| -> Vec<u32> { idx.iter().map(|&i| v[i]).collect() };
    let teacher_s = pick(&held.teacher, &select);
    let teacher_c = pick(&held.teacher, &certify_frames);
    let labels_s = labels.as_ref().map(|l| pick(l, &select));
    let labels_c = labels.as_ref().map(|l| pick(l, &certify_frames));
    let reference_s = Reference {
        teacher: &teacher_s,
        labels: labels_s.as_deref(),
    };
    let reference_c = Reference {
        teacher: &teacher_c,
        labels: labels_c.as_deref(),
    };
    let mut notes = String::new();

    // Saliency: a GAP → Linear probe at every candidate; what it could save alone.
    let bar = crate::progress::bar("saliency probes", Some(problem.candidates.len() as u64));
    let mut probes = Vec::new();
    for (i, cut) in problem.candidates.iter().enumerate() {
        let training = Training {
            seed: args.seed.wrapping_add(i as u64),
            ..Training::default()
        };
        let head = train_head(problem, i, HeadKind::LinearGap, &training)?;
        let scores = subset(&score(&head, held, i, &[Metric::MaxProb])?[0], &select);
        let share = cut.macs_before as f64 / problem.total_macs as f64;
        let coverage = coverage_at(
            &scores,
            &reference_s,
            problem.goal.measure,
            problem.goal.target.max(0.99),
        );
        probes.push((
            i,
            head,
            coverage * (1.0 - share),
            agreement(&scores, &teacher_s),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut ranked: Vec<usize> = (0..probes.len()).collect();
    ranked.sort_by(|&a, &b| probes[b].2.total_cmp(&probes[a].2).then(a.cmp(&b)));
    // Positions with no MACs between them (a block's Add and its ReLU) are one position for
    // cost: keep the more salient only.
    let mut kept: Vec<usize> = Vec::new();
    for i in ranked {
        let at = problem.candidates[i].macs_before;
        if kept.len() < args.candidates.max(1)
            && !kept
                .iter()
                .any(|&k| problem.candidates[k].macs_before == at)
        {
            kept.push(i);
        }
    }
    kept.sort_unstable();
    let _ = writeln!(notes, "\n## Candidate positions (saliency)\n");
    let _ = writeln!(
        notes,
        "Saliency: the share of selecting frames a GAP → Linear probe at the position could let leave at ≥ 99% agreement (or the target, if higher), times the share of MACs it would save. The {} most salient are kept.\n",
        kept.len()
    );
    let _ = writeln!(
        notes,
        "| # | tensor | MACs before | probe agreement | saliency | kept |"
    );
    let _ = writeln!(notes, "|---|---|---|---|---|---|");
    for (i, _, s, a) in &probes {
        let cut = &problem.candidates[*i];
        let _ = writeln!(
            notes,
            "| {i} | `{}` | {:.1}% | {:.2}% | {:.4} | {} |",
            cut.tensor,
            100.0 * cut.macs_before as f64 / problem.total_macs as f64,
            100.0 * a,
            s,
            if kept.contains(i) { "yes" } else { "" }
        );
    }

    // Every architecture at every kept position, scored once on every held-out frame.
    let bar = crate::progress::bar(
        "training heads",
        Some((kept.len() * HeadKind::ALL.len()) as u64),
    );
    let mut options: Vec<Vec<Option<HeadOption>>> = Vec::new();
    for &i in &kept {
        let cut = &problem.candidates[i];
        let mut per_kind = Vec::new();
        for (h, kind) in HeadKind::ALL.iter().enumerate() {
            bar.inc(1);
            if kind.pool_index() >= crate::features::pools_for(&cut.shape).len() {
                per_kind.push(None);
                continue;
            }
            let head = if *kind == HeadKind::LinearGap {
                probes[i].1.clone()
            } else {
                let training = Training {
                    seed: args.seed.wrapping_add((1000 * h + i) as u64),
                    ..Training::default()
                };
                train_head(problem, i, *kind, &training)?
            };
            let all = score(&head, held, i, &METRICS)?;
            let select_scores: Vec<ExitScores> = all.iter().map(|s| subset(s, &select)).collect();
            let thresholds = METRICS
                .iter()
                .zip(&select_scores)
                .map(|(m, s)| grid(*m, &s.score))
                .collect();
            per_kind.push(Some(HeadOption {
                macs: head_macs(problem, cut, &head)?,
                certify: all.iter().map(|s| subset(s, &certify_frames)).collect(),
                select: select_scores,
                thresholds,
                head,
            }));
        }
        options.push(per_kind);
    }
    bar.finish_and_clear();

    // NSGA-II per metric, on the selecting frames.
    let space = Space {
        positions: kept.len(),
        heads: HeadKind::ALL.len(),
        thresholds: QUANTILES.len(),
    };
    // The exits a genome places, with their cost table; None when a head does not exist there.
    let structure = |genome: &[u16]| -> Option<(Vec<nas::Gene>, CostTable)> {
        let genes = nas::decode(&space, genome);
        let mut heads = Vec::new();
        let mut cuts = Vec::new();
        for g in &genes {
            heads.push(options[g.position][g.head].as_ref()?.macs);
            cuts.push(&problem.candidates[kept[g.position]]);
        }
        heads.push(0);
        Some((genes, CostTable::new(segment_macs(problem, &cuts), heads)?))
    };
    let simulate_on = |metric: usize, genome: &[u16], certifying: bool| -> Option<Simulation> {
        let (genes, costs) = structure(genome)?;
        let option = |g: &nas::Gene| {
            options[g.position][g.head]
                .as_ref()
                .expect("checked by structure")
        };
        let scores: Vec<ExitScores> = genes
            .iter()
            .map(|g| {
                let o = option(g);
                if certifying {
                    o.certify[metric].clone()
                } else {
                    o.select[metric].clone()
                }
            })
            .collect();
        let thresholds: Vec<f64> = genes
            .iter()
            .map(|g| option(g).thresholds[metric][g.threshold])
            .collect();
        let reference = if certifying {
            &reference_c
        } else {
            &reference_s
        };
        Some(simulate(
            METRICS[metric],
            &thresholds,
            &scores,
            reference,
            &costs,
        ))
    };
    let error = |sim: &Simulation| -> f64 {
        let main = match problem.goal.measure {
            Measure::Agreement => sim.agreement(),
            Measure::Accuracy => sim.accuracy(),
        };
        let shortfall = problem
            .goal
            .min_agreement
            .map_or(0.0, |a| (a - sim.agreement()).max(0.0));
        1.0 - main + shortfall
    };
    let mut scored = Vec::new();
    let budget = (args.budget / METRICS.len()).max(10);
    let bar = crate::progress::bar(
        "searching structures",
        Some((budget * METRICS.len()) as u64),
    );
    for m in 0..METRICS.len() {
        let settings = nas::Settings {
            budget,
            population: 48,
            seed: args.seed.wrapping_add(m as u64),
        };
        let outcome = nas::search(&space, &settings, &[vec![0; space.positions]], |g| {
            bar.inc(1);
            simulate_on(m, g, false).map_or([f64::INFINITY; 2], |s| [s.mean_cost, error(&s)])
        });
        scored.extend(outcome.scored.into_iter().map(|s| (m, s)));
    }
    bar.finish_and_clear();
    let max_error = 1.0 - problem.goal.target;
    let mut feasible: Vec<&(usize, nas::Scored)> = scored
        .iter()
        .filter(|(_, s)| s.objectives[1] <= max_error)
        .collect();
    feasible.sort_by(|a, b| a.1.objectives[0].total_cmp(&b.1.objectives[0]));
    let _ = writeln!(notes, "\n## Search\n");
    let _ = writeln!(
        notes,
        "{} configurations scored ({} per metric) over {} kept positions × {} heads × {} thresholds; {} selecting and {} certifying frames.\n",
        scored.len(),
        budget,
        kept.len(),
        HeadKind::ALL.len(),
        QUANTILES.len(),
        select.len(),
        certify_frames.len()
    );
    front_table(&mut notes, &scored);

    // Certify the cheapest feasible configurations, the confidence split among the tries.
    let confidence = 1.0 - (1.0 - args.confidence) / CERTIFY_TRIES as f64;
    let _ = writeln!(notes, "\n## Certificate\n");
    let _ = writeln!(
        notes,
        "Each configuration tried is scored once on the certifying frames; its lower bound holds with {:.2}% confidence each, so {:.0}% for all {CERTIFY_TRIES} together (Bonferroni). Correlated neighbouring frames count as fewer samples.\n",
        100.0 * confidence,
        100.0 * args.confidence
    );
    let _ = writeln!(
        notes,
        "| cost (select) | {} (select) | {} (certify) | lower bound | effective frames |",
        measure_name(problem.goal.measure),
        measure_name(problem.goal.measure)
    );
    let _ = writeln!(notes, "|---|---|---|---|---|");
    let mut chosen: Option<(usize, nas::Genome, f64)> = None;
    let mut best_tried: Option<(usize, nas::Genome, f64)> = None;
    let mut tried = std::collections::HashSet::new();
    for (m, s) in feasible {
        if tried.len() >= CERTIFY_TRIES {
            break;
        }
        if !tried.insert((*m, s.genome.clone())) {
            continue;
        }
        let Some(sim) = simulate_on(*m, &s.genome, true) else {
            continue;
        };
        let failures = failures(
            problem.goal.measure,
            *m,
            &s.genome,
            &options,
            &space,
            &reference_c,
        );
        let bound = certify::rate_lower_bound(&failures, confidence);
        let _ = writeln!(
            notes,
            "| {:.4} | {:.2}% | {:.2}% | {:.2}% | {:.0} |",
            s.objectives[0],
            100.0 * (1.0 - s.objectives[1]),
            100.0 * measure_of(problem.goal.measure, &sim),
            100.0 * bound,
            certify::effective_samples(&failures)
        );
        if best_tried.as_ref().is_none_or(|b| bound > b.2) {
            best_tried = Some((*m, s.genome.clone(), bound));
        }
        if bound >= problem.goal.target {
            chosen = Some((*m, s.genome.clone(), bound));
            break;
        }
    }
    let (metric, genome, bound) = match (chosen, best_tried) {
        (Some(c), _) => c,
        (None, Some(b)) => {
            let _ = writeln!(
                notes,
                "\nNo configuration tried certifies the target on {} frames: the best certified bound is kept as the promise.",
                certify_frames.len()
            );
            b
        }
        (None, None) => {
            let _ = writeln!(
                notes,
                "\nNo configuration meets the target on the selecting frames: the bundle has no exit."
            );
            (0, vec![0; space.positions], 0.0)
        }
    };

    let exits: Vec<ChosenExit> = nas::decode(&space, &genome)
        .into_iter()
        .map(|g| {
            let o = options[g.position][g.head]
                .as_ref()
                .expect("a scored configuration");
            ChosenExit {
                cut: problem.candidates[kept[g.position]].clone(),
                head: o.head.clone(),
                threshold: o.thresholds[metric][g.threshold],
            }
        })
        .collect();
    let held_sim =
        simulate_on(metric, &genome, false).unwrap_or_else(|| empty_simulation(select.len()));
    oracle_note(
        &mut notes,
        &exits,
        &genome,
        &space,
        &options,
        metric,
        &reference_c,
        problem,
    );
    let promise = Promise {
        measure: problem.goal.measure,
        // Four decimals, rounded down, so the written promise never exceeds the bound.
        target: (bound * 10_000.0).floor() / 10_000.0,
        confidence: args.confidence,
        frames: certify_frames.len() as u64,
    };
    Ok(Choice {
        exits,
        metric: METRICS[metric],
        promise: Some(promise),
        held: held_sim,
        notes,
    })
}

/// The first half in time of each footage's held-out frames selects, the second certifies.
fn split(ranges: &[std::ops::Range<usize>]) -> (Vec<usize>, Vec<usize>) {
    let (mut select, mut certify) = (Vec::new(), Vec::new());
    for r in ranges {
        let mid = r.start + (r.end - r.start) / 2;
        select.extend(r.start..mid);
        certify.extend(mid..r.end);
    }
    (select, certify)
}

fn subset(s: &ExitScores, idx: &[usize]) -> ExitScores {
    ExitScores {
        class: idx.iter().map(|&i| s.class[i]).collect(),
        score: idx.iter().map(|&i| s.score[i]).collect(),
    }
}

fn agreement(s: &ExitScores, teacher: &[u32]) -> f64 {
    s.class.iter().zip(teacher).filter(|(a, b)| a == b).count() as f64 / teacher.len().max(1) as f64
}

/// The share of frames an exit could let leave with at least `precision` of them right.
fn coverage_at(s: &ExitScores, reference: &Reference, measure: Measure, precision: f64) -> f64 {
    let mut order: Vec<usize> = (0..s.score.len()).collect();
    order.sort_by(|&a, &b| s.score[b].total_cmp(&s.score[a]));
    let right = |i: usize| match (measure, reference.labels) {
        (Measure::Accuracy, Some(l)) => s.class[i] == l[i],
        _ => s.class[i] == reference.teacher[i],
    };
    let mut hits = 0usize;
    let mut best = 0usize;
    for (m, &i) in order.iter().enumerate() {
        hits += usize::from(right(i));
        if hits as f64 >= precision * (m + 1) as f64 {
            best = m + 1;
        }
    }
    best as f64 / order.len().max(1) as f64
}

/// Thresholds at [`QUANTILES`] of the scores, on the confident side of `metric`.
fn grid(metric: Metric, scores: &[f64]) -> Vec<f64> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at =
        |q: f64| sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)];
    QUANTILES
        .iter()
        .map(|&q| match metric {
            Metric::Entropy => at(1.0 - q),
            _ => at(q),
        })
        .collect()
}

fn measure_of(measure: Measure, sim: &Simulation) -> f64 {
    match measure {
        Measure::Agreement => sim.agreement(),
        Measure::Accuracy => sim.accuracy(),
    }
}

fn measure_name(measure: Measure) -> &'static str {
    match measure {
        Measure::Agreement => "agreement",
        Measure::Accuracy => "accuracy",
    }
}

/// Per certifying frame, in time order: whether the bundle's answer fails the measure.
fn failures(
    measure: Measure,
    metric: usize,
    genome: &[u16],
    options: &[Vec<Option<HeadOption>>],
    space: &Space,
    reference: &Reference,
) -> Vec<bool> {
    let genes = nas::decode(space, genome);
    (0..reference.teacher.len())
        .map(|i| {
            let answer = genes
                .iter()
                .find_map(|g| {
                    let o = options[g.position][g.head].as_ref()?;
                    let s = &o.certify[metric];
                    earlyexit::rule::leaves(
                        METRICS[metric],
                        s.score[i],
                        o.thresholds[metric][g.threshold],
                    )
                    .then_some(s.class[i])
                })
                .unwrap_or(reference.teacher[i]);
            match (measure, reference.labels) {
                (Measure::Accuracy, Some(l)) => answer != l[i],
                _ => answer != reference.teacher[i],
            }
        })
        .collect()
}

fn empty_simulation(frames: usize) -> Simulation {
    Simulation {
        exits: vec![frames],
        agree: vec![frames],
        correct: vec![0],
        frames,
        mean_cost: 1.0,
    }
}

/// The non-dominated configurations on the selecting frames, cheapest first.
fn front_table(notes: &mut String, scored: &[(usize, nas::Scored)]) {
    let all: Vec<&(usize, nas::Scored)> = scored.iter().collect();
    let mut front: Vec<&(usize, nas::Scored)> = all
        .iter()
        .copied()
        .filter(|a| {
            !all.iter()
                .any(|b| nas::dominates(&b.1.objectives, &a.1.objectives))
        })
        .collect();
    front.sort_by(|a, b| a.1.objectives[0].total_cmp(&b.1.objectives[0]));
    front.dedup_by(|a, b| a.1.objectives == b.1.objectives);
    let _ = writeln!(notes, "Pareto front on the selecting frames:\n");
    let _ = writeln!(notes, "| mean cost | error | metric | exits |");
    let _ = writeln!(notes, "|---|---|---|---|");
    for (m, s) in front.iter().take(30) {
        let exits = s.genome.iter().filter(|g| **g > 0).count();
        let _ = writeln!(
            notes,
            "| {:.4} | {:.4} | {} | {exits} |",
            s.objectives[0],
            s.objectives[1],
            earlyexit::bundle::Word::word(METRICS[*m])
        );
    }
}

/// The oracle for the chosen heads: each certifying frame leaves at the earliest exit that gives
/// the backbone's answer. No rule can cost less at full agreement.
#[allow(clippy::too_many_arguments)]
fn oracle_note(
    notes: &mut String,
    exits: &[ChosenExit],
    genome: &[u16],
    space: &Space,
    options: &[Vec<Option<HeadOption>>],
    metric: usize,
    reference: &Reference,
    problem: &Problem,
) {
    let genes = nas::decode(space, genome);
    let cuts: Vec<&earlyexit::graph::CutPoint> = exits.iter().map(|e| &e.cut).collect();
    let mut heads: Vec<u64> = genes
        .iter()
        .filter_map(|g| options[g.position][g.head].as_ref().map(|o| o.macs))
        .collect();
    heads.push(0);
    let Some(costs) = CostTable::new(segment_macs(problem, &cuts), heads) else {
        return;
    };
    let n = reference.teacher.len();
    let total: f64 = (0..n)
        .map(|i| {
            let stage = genes
                .iter()
                .position(|g| {
                    options[g.position][g.head]
                        .as_ref()
                        .is_some_and(|o| o.certify[metric].class[i] == reference.teacher[i])
                })
                .unwrap_or(genes.len());
            costs.cost(stage, true)
        })
        .sum();
    let _ = writeln!(
        notes,
        "\nThe oracle for the chosen heads (each certifying frame leaves at the earliest exit that gives the backbone's answer) costs {:.3}.",
        total / n.max(1) as f64
    );
}
