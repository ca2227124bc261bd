//! The exit-structure search (`--strategy nas`): prune candidate positions by saliency, train
//! every head architecture at the kept ones, search positions × heads × metric × thresholds
//! with NSGA-II on cached head outputs, and certify the choice on frames nothing was fitted on.
//!
//! The held-out frames of each footage are split in time: the first half selects (thresholds,
//! structure), the second half only certifies. The baselines (an exit at every kept position,
//! and evenly spaced exits) go through the same search, restricted, and the same certificate.

use std::fmt::Write;
use std::ops::Range;

use anyhow::Result;
use earlyexit::bundle::{Measure, Metric, Promise, Word};
use earlyexit::cost::CostTable;
use earlyexit::graph::CutPoint;

use crate::calibrate::{ExitScores, Goal, Patience, Reference, Simulation, never, simulate};
use crate::certify;
use crate::gating::{self, Gated};
use crate::heads::{HeadKind, TrainedHead, Training};
use crate::nas::{self, Space};
use crate::plot;
use crate::search::{Choice, ChosenExit, Problem, score, train_head};

const METRICS: [Metric; 3] = [Metric::MaxProb, Metric::Margin, Metric::Entropy];

/// How patient the exit rules are, in the order of [`rule_of`]; format 2 writes the patient
/// ones as gates.
const PATIENCE: [Patience; 3] = [Patience::None, Patience::AfterFirst, Patience::Every];

/// An exit rule the search may choose, by index: each of [`METRICS`] at each of [`PATIENCE`].
/// Returns the metric's index and the patience.
fn rule_of(rule: usize) -> (usize, Patience) {
    (rule % METRICS.len(), PATIENCE[rule / METRICS.len()])
}

fn rule_name(rule: usize) -> String {
    let (m, patience) = rule_of(rule);
    let word = METRICS[m].word();
    match patience {
        Patience::None => word.to_owned(),
        Patience::AfterFirst => format!("{word}, agreeing after exit 0"),
        Patience::Every => format!("{word}, agreeing (exit 0 votes)"),
    }
}

/// Threshold levels tried: at level τ, every exit of a structure lets a frame leave when a
/// logistic fit of "leaving here costs nothing" on its metric value says so with probability
/// at least τ. One level per structure, not one threshold per exit: selecting among
/// thresholds per exit on the same frames overfits them by about a point of accuracy.
const LEVELS: [f64; 16] = [
    0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.993, 0.996,
    0.998,
];

/// Configurations certified at most; the confidence is split among them (Bonferroni).
const CERTIFY_TRIES: usize = 5;

/// Selection ranks thousands of configurations on the same frames, so a configuration is
/// feasible only when an upper bound on its mean penalty there, at this one-sided confidence
/// (about one standard error), is within the goal. The certificate is what the promise rests on.
const SELECT_CONFIDENCE: f64 = 0.84;

/// A trained head at a candidate position, with its outputs on the selecting and certifying
/// frames under every metric.
struct HeadOption {
    head: TrainedHead,
    /// MACs, or measured nanoseconds with `--cost latency`.
    cost: u64,
    select: Vec<ExitScores>,
    certify: Vec<ExitScores>,
    /// Per metric: the threshold at each of [`LEVELS`].
    thresholds: Vec<Vec<f64>>,
}

/// Everything scored once, that every structure is built from.
struct Zoo<'p> {
    problem: &'p Problem<'p>,
    /// `[candidate][kind]`: the heads trained there.
    options: Vec<Vec<Option<HeadOption>>>,
    select: Reference<'p>,
    certify: Reference<'p>,
    /// Each footage's frames within the selecting and the certifying frames.
    select_streams: Vec<Range<usize>>,
    certify_streams: Vec<Range<usize>>,
    /// All held-out frames, in time order: what `evaluate` on the held-out footage sees.
    held: Reference<'p>,
}

/// A family of structures: the positions (candidate indices) and head kinds a genome chooses
/// from, and the exit rules tried (see [`rule_of`]).
struct Family {
    positions: Vec<usize>,
    kinds: Vec<HeadKind>,
    rules: Vec<usize>,
}

impl Family {
    /// Genes choose a head per position; the level is searched per structure.
    fn space(&self) -> Space {
        Space {
            positions: self.positions.len(),
            heads: self.kinds.len(),
            thresholds: 1,
        }
    }
}

/// One exit of a structure: candidate, head kind, threshold level.
type Placed = (usize, usize, usize);

impl Zoo<'_> {
    fn option(&self, candidate: usize, kind: HeadKind) -> Option<&HeadOption> {
        self.options[candidate][kind_index(kind)].as_ref()
    }

    /// The exits of a structure's genome at threshold `level`.
    fn placed(&self, family: &Family, genome: &[u16], level: usize) -> Option<Vec<Placed>> {
        nas::decode(&family.space(), genome)
            .into_iter()
            .map(|g| {
                let candidate = family.positions[g.position];
                let kind = family.kinds[g.head];
                self.option(candidate, kind)
                    .map(|_| (candidate, kind_index(kind), level))
            })
            .collect()
    }

    fn costs(&self, placed: &[Placed]) -> Option<CostTable> {
        let cuts: Vec<&CutPoint> = placed
            .iter()
            .map(|p| &self.problem.candidates[p.0])
            .collect();
        let mut heads: Vec<u64> = placed
            .iter()
            .map(|p| self.options[p.0][p.1].as_ref().map_or(0, |o| o.cost))
            .collect();
        heads.push(0);
        self.problem.cost_table(&cuts, heads).ok()
    }

    fn simulate(&self, rule: usize, placed: &[Placed], certifying: bool) -> Option<Simulation> {
        self.simulate_costed(rule, placed, certifying, &self.costs(placed)?)
    }

    /// [`Zoo::simulate`] with the structure's cost table already built: the levels of one
    /// structure share it.
    fn simulate_costed(
        &self,
        rule: usize,
        placed: &[Placed],
        certifying: bool,
        costs: &CostTable,
    ) -> Option<Simulation> {
        let (metric, patience) = rule_of(rule);
        let mut scores = Vec::new();
        let mut thresholds = Vec::new();
        for &(c, k, t) in placed {
            let o = self.options[c][k].as_ref()?;
            scores.push(if certifying {
                &o.certify[metric]
            } else {
                &o.select[metric]
            });
            thresholds.push(o.thresholds[metric][t]);
        }
        let reference = if certifying {
            &self.certify
        } else {
            &self.select
        };
        Some(simulate(
            METRICS[metric],
            &thresholds,
            &scores,
            reference,
            costs,
            patience,
        ))
    }

    /// A head's outputs on all held-out frames in time order: each footage's selecting
    /// frames, then its certifying frames.
    fn held_outputs(&self, o: &HeadOption) -> Vec<ExitScores> {
        o.select
            .iter()
            .zip(&o.certify)
            .map(|(s, c)| {
                let mut all = ExitScores {
                    class: Vec::new(),
                    score: Vec::new(),
                };
                for (a, b) in self.select_streams.iter().zip(&self.certify_streams) {
                    all.class.extend(&s.class[a.clone()]);
                    all.class.extend(&c.class[b.clone()]);
                    all.score.extend(&s.score[a.clone()]);
                    all.score.extend(&c.score[b.clone()]);
                }
                all
            })
            .collect()
    }

    /// A found structure on all held-out frames, as `evaluate` on the held-out footage runs it.
    fn simulate_held(&self, f: &Found) -> Option<Simulation> {
        let costs = self.costs(&f.placed)?;
        let mut outputs = Vec::new();
        let mut thresholds = Vec::new();
        for &(c, k, t) in &f.placed {
            let o = self.options[c][k].as_ref()?;
            outputs.push(self.held_outputs(o));
            thresholds.push(o.thresholds[f.metric][t]);
        }
        let streams = &self.problem.frames.held_ranges;
        Some(match &f.gated {
            Some(g) => {
                let exits: Vec<&[ExitScores]> = outputs.iter().map(Vec::as_slice).collect();
                gating::simulate(
                    &g.gate,
                    &g.weights,
                    g.threshold,
                    &exits,
                    &self.held,
                    streams,
                    &costs,
                )
            }
            None => {
                let scores: Vec<ExitScores> = outputs
                    .into_iter()
                    .map(|mut o| o.swap_remove(f.metric))
                    .collect();
                simulate(
                    METRICS[f.metric],
                    &thresholds,
                    &scores,
                    &self.held,
                    &costs,
                    Patience::None,
                )
            }
        })
    }

    /// The selection objective: an upper bound on the mean penalty on the selecting frames
    /// (plus any agreement shortfall), to compare against the goal's limit.
    fn error(&self, sim: &Simulation) -> f64 {
        let goal = &self.problem.goal;
        let shortfall = goal
            .min_agreement
            .map_or(0.0, |a| (a - sim.agreement()).max(0.0));
        certify::mean_upper_bound(&sim.penalties(goal, &self.select), SELECT_CONFIDENCE) + shortfall
    }

    /// What the certifying frames show of a structure, each bound holding with `confidence`.
    fn certificate(&self, cert: &Simulation, confidence: f64) -> Certificate {
        let goal = &self.problem.goal;
        let penalties = cert.penalties(goal, &self.certify);
        // The promise is a rate: of agreement, or of accuracy (also under a loss goal).
        let failures: Vec<bool> = match (goal.measure, self.certify.labels) {
            (Measure::Accuracy, Some(l)) => {
                cert.answers.iter().zip(l).map(|(a, l)| a != l).collect()
            }
            _ => penalties.iter().map(|&p| p > 0.0).collect(),
        };
        let bound = certify::rate_lower_bound(&failures, confidence);
        let loss_bound = goal
            .max_loss
            .map(|_| certify::mean_upper_bound(&penalties, confidence));
        let certified = match (goal.max_loss, loss_bound) {
            (Some(max), Some(b)) => b <= max,
            _ => bound >= goal.target,
        } && goal.min_agreement.is_none_or(|a| cert.agreement() >= a);
        Certificate {
            bound,
            loss_bound,
            certified,
            effective: certify::effective_samples_of(&penalties),
        }
    }
}

fn kind_index(kind: HeadKind) -> usize {
    HeadKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// What the certifying frames show of a structure.
struct Certificate {
    /// Lower bound on the promised rate (agreement, or accuracy with ground truth).
    bound: f64,
    /// Under a loss goal: upper bound on the accuracy loss against the backbone.
    loss_bound: Option<f64>,
    certified: bool,
    effective: f64,
}

impl Certificate {
    /// Higher is better: the least loss, or the highest rate.
    fn merit(&self) -> f64 {
        self.loss_bound.map_or(self.bound, |l| -l)
    }
}

/// What a search of one family found and certified.
struct Found {
    /// The exit rule (see [`rule_of`]); a metric's index once a patient rule is a gate.
    metric: usize,
    placed: Vec<Placed>,
    /// With `--format 2`: the exits' learned gates and their one threshold.
    gated: Option<Gated>,
    certificate: Certificate,
    select: Simulation,
    certify: Simulation,
    /// Every configuration scored on the selecting frames: (mean cost, error).
    scored: Vec<[f64; 2]>,
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
    let mut notes = String::new();

    // Saliency: a GAP → Linear probe at every candidate; what it could save alone.
    let bar = crate::progress::bar("saliency probes", Some(problem.candidates.len() as u64));
    let mut options: Vec<Vec<Option<HeadOption>>> = Vec::new();
    let mut saliency = Vec::new();
    let select_ref = Reference {
        teacher: &teacher_s,
        labels: labels_s.as_deref(),
    };
    for i in 0..problem.candidates.len() {
        let training = Training {
            seed: args.seed.wrapping_add(i as u64),
            ..Training::default()
        };
        let head = train_head(problem, i, HeadKind::LinearGap, true, &training)?;
        let option = head_option(problem, i, head, &select, &certify_frames, &select_ref)?;
        let share = problem.share_before(i);
        let probe = &option.select[0];
        let coverage = coverage_at(
            probe,
            &select_ref,
            problem.goal.measure,
            problem.goal.target.max(0.99),
        );
        saliency.push((coverage * (1.0 - share), agreement(probe, &teacher_s)));
        let mut per_kind: Vec<Option<HeadOption>> = HeadKind::ALL.iter().map(|_| None).collect();
        per_kind[kind_index(HeadKind::LinearGap)] = Some(option);
        options.push(per_kind);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kept = prune(problem, &saliency, args.candidates);
    let _ = writeln!(notes, "\n## Candidate positions (saliency)\n");
    let _ = writeln!(
        notes,
        "Saliency: the share of selecting frames a GAP → Linear probe at the position could let leave at ≥ 99% agreement (or the target, if higher), times the share of the backbone's cost (MACs, or measured time) it would save. The {} most salient positions are kept (of positions with no MACs between them, only the more salient).\n",
        kept.len()
    );
    let _ = writeln!(
        notes,
        "| # | tensor | MACs before | probe agreement | saliency | kept |"
    );
    let _ = writeln!(notes, "|---|---|---|---|---|---|");
    for (i, (s, a)) in saliency.iter().enumerate() {
        let cut = &problem.candidates[i];
        let _ = writeln!(
            notes,
            "| {i} | `{}` | {:.1}% | {:.2}% | {s:.4} | {} |",
            cut.tensor,
            100.0 * cut.macs_before as f64 / problem.total_macs as f64,
            100.0 * a,
            if kept.contains(&i) { "yes" } else { "" }
        );
    }

    // Every architecture at every kept position.
    let others: Vec<HeadKind> = HeadKind::TRAINED
        .iter()
        .copied()
        .filter(|k| *k != HeadKind::LinearGap)
        .collect();
    let bar = crate::progress::bar("training heads", Some((kept.len() * others.len()) as u64));
    for &i in &kept {
        let cut = &problem.candidates[i];
        for kind in &others {
            bar.inc(1);
            if kind.pool_index() >= crate::features::pools_for(&cut.shape).len() {
                continue;
            }
            let seed = args
                .seed
                .wrapping_add((1000 * (kind_index(*kind) + 1) + i) as u64);
            let head = train_head(problem, i, *kind, true, &Training::for_kind(*kind, seed))?;
            options[i][kind_index(*kind)] = Some(head_option(
                problem,
                i,
                head,
                &select,
                &certify_frames,
                &select_ref,
            )?);
        }
        let ensemble = ensemble_of(&options[i], &teacher_s);
        options[i][kind_index(HeadKind::Ensemble)] = Some(head_option(
            problem,
            i,
            ensemble,
            &select,
            &certify_frames,
            &select_ref,
        )?);
    }
    bar.finish_and_clear();
    heads_table(&mut notes, problem, &kept, &options, &teacher_s);

    let zoo = Zoo {
        problem,
        options,
        select: Reference {
            teacher: &teacher_s,
            labels: labels_s.as_deref(),
        },
        certify: Reference {
            teacher: &teacher_c,
            labels: labels_c.as_deref(),
        },
        select_streams: streams(&problem.frames.held_ranges, false),
        certify_streams: streams(&problem.frames.held_ranges, true),
        held: Reference {
            teacher: &held.teacher,
            labels: labels.as_deref(),
        },
    };
    // Patient rules are gates: format 2 only.
    let gates = args.format >= 2;
    let searched = Family {
        positions: kept.clone(),
        kinds: HeadKind::ALL.to_vec(),
        rules: (0..METRICS.len() * if gates { PATIENCE.len() } else { 1 }).collect(),
    };
    let budget = args.budget.max(30);
    let found = search_and_certify(
        &zoo,
        &searched,
        budget,
        args.seed,
        args.confidence,
        CERTIFY_TRIES - usize::from(gates),
        Some(&mut notes),
    );
    let found = patient_as_gate(&zoo, found);
    let found = if gates {
        gate(&zoo, found, args.seed, args.confidence, &mut notes)?
    } else {
        found
    };

    // Baselines: the same heads, target, search and certificate, in restricted families.
    let sdn = Family {
        positions: kept.clone(),
        kinds: vec![HeadKind::LinearGap],
        rules: vec![0],
    };
    let exits = found.placed.len().max(1);
    let even = Family {
        positions: crate::placement::evenly_by_macs(
            &problem.candidates.iter().collect::<Vec<_>>(),
            problem.total_macs,
            exits,
        )?
        .into_iter()
        .filter_map(|c| problem.candidates.iter().position(|d| d.tensor == c.tensor))
        .collect(),
        kinds: vec![HeadKind::LinearGap],
        rules: vec![0],
    };
    let sdn_found = search_and_certify(
        &zoo,
        &sdn,
        budget / 3,
        args.seed,
        args.confidence,
        CERTIFY_TRIES,
        None,
    );
    let even_found = search_and_certify(
        &zoo,
        &even,
        budget / 3,
        args.seed,
        args.confidence,
        CERTIFY_TRIES,
        None,
    );

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
        "| structure | exits | mean cost | agreement |{} certified bound |",
        if accuracy_too { " accuracy |" } else { "" }
    );
    let _ = writeln!(
        notes,
        "|---|---|---|---|{}---|",
        if accuracy_too { "---|" } else { "" }
    );
    let backbone_accuracy = zoo.certify.labels.map(|l| {
        l.iter()
            .zip(zoo.certify.teacher)
            .filter(|(a, b)| a == b)
            .count() as f64
            / l.len().max(1) as f64
    });
    let _ = writeln!(
        notes,
        "| full backbone | 0 | 1.000 | 100.00% |{} - |",
        accuracy_cell(backbone_accuracy)
    );
    for (name, f) in [
        ("chosen (searched)", &found),
        (
            "an exit at every kept position, max-prob (Shallow-Deep Networks)",
            &sdn_found,
        ),
        ("evenly spaced (first version's rule)", &even_found),
    ] {
        let _ = writeln!(
            notes,
            "| {name} | {} | {:.3} | {:.2}% |{} {:.2}%{} |",
            f.placed.len(),
            f.certify.mean_cost,
            100.0 * f.certify.agreement(),
            accuracy_cell(Some(f.certify.accuracy())),
            100.0 * f.certificate.bound,
            if f.certificate.certified {
                ""
            } else {
                " (target not certified)"
            }
        );
    }
    let oracle = oracle_cost(&zoo, &found);
    let _ = writeln!(
        notes,
        "| oracle for the chosen heads | {} | {oracle:.3} | 100.00% |{} - |",
        found.placed.len(),
        accuracy_cell(None)
    );
    let _ = writeln!(
        notes,
        "\nThe oracle lets each frame leave at the earliest chosen exit that gives the backbone's answer: no exit rule can cost less at full agreement with these heads."
    );

    let baselines = vec![
        (
            "sdn",
            to_choice(&zoo, &sdn_found, args.confidence, String::new(), Vec::new()),
        ),
        (
            "even",
            to_choice(
                &zoo,
                &even_found,
                args.confidence,
                String::new(),
                Vec::new(),
            ),
        ),
    ];
    let mut choice = to_choice(&zoo, &found, args.confidence, notes, baselines);
    let marked = [
        (plot::Mark::ShallowDeep, &sdn_found),
        (plot::Mark::Even, &even_found),
    ];
    let figure = figure(&zoo, &found, &marked, oracle, backbone_accuracy);
    choice.plot = Some(plot::pareto_svg(&figure));
    Ok(choice)
}

/// The plot's data: the search's configurations and front on the selecting frames; the
/// backbone, the baselines, the oracle and the chosen structure on the certifying frames, as in
/// the baselines table, and the chosen structure on the selecting frames too.
fn figure(
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

fn to_choice(
    zoo: &Zoo,
    f: &Found,
    confidence: f64,
    notes: String,
    baselines: Vec<(&'static str, Choice)>,
) -> Choice {
    let exits = f
        .placed
        .iter()
        .filter_map(|&(c, k, t)| {
            let o = zoo.options[c][k].as_ref()?;
            Some(ChosenExit {
                cut: zoo.problem.candidates[c].clone(),
                head: o.head.clone(),
                threshold: f
                    .gated
                    .as_ref()
                    .map_or(o.thresholds[f.metric][t], |g| g.threshold),
            })
        })
        .collect();
    let promise = Promise {
        measure: zoo.problem.goal.measure,
        // Four decimals, rounded down, so the written promise never exceeds the bound.
        target: (f.certificate.bound * 10_000.0).floor() / 10_000.0,
        confidence,
        frames: zoo.certify.teacher.len() as u64,
    };
    Choice {
        exits,
        metric: METRICS[f.metric],
        gate: f
            .gated
            .as_ref()
            .map(|g| (g.gate.clone(), g.weights.clone())),
        promise: Some(promise),
        held: zoo.simulate_held(f).unwrap_or_else(|| f.select.clone()),
        notes,
        baselines,
        plot: None,
    }
}

/// NSGA-II over `family` for each of its exit rules on the selecting frames, then the cheapest
/// configurations that meet the target there, certified one by one.
fn search_and_certify(
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

    let each = 1.0 - (1.0 - confidence) / CERTIFY_TRIES as f64;
    let mut table = String::new();
    // No exit at all is what is left when no structure meets the target on the selecting
    // frames. When some do but none certifies, the best certified of them is kept, with the
    // promise it did certify: the backbone alone would certify more and save nothing.
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
    for (m, s) in feasible {
        if tried.len() >= tries {
            break;
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
        // Structures that answer every frame alike (an exit nobody leaves at) are one try.
        if !tried.insert((sel.answers.clone(), sel.exits.clone(), cert.answers.clone())) {
            continue;
        }
        let certificate = zoo.certificate(&cert, each);
        let _ = writeln!(
            table,
            "| {:.4} | {} | {:.2}% | {:.2}% | {} | {:.0} |",
            sel.mean_cost,
            rule_name(*m),
            100.0 * measure_of(zoo.problem.goal.measure, &sel),
            100.0 * measure_of(zoo.problem.goal.measure, &cert),
            bound_cell(&certificate),
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
        if best
            .as_ref()
            .is_none_or(|b| found.certificate.merit() > b.certificate.merit())
        {
            best = Some(found);
        }
    }
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
        front_table(notes, &scored);
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
        if !found.certificate.certified {
            let _ = writeln!(
                notes,
                "\nNo configuration tried certifies the target on {} frames: the bundle keeps the best tried, and its promise is the bound it did certify.",
                zoo.certify.teacher.len()
            );
        }
    }
    found
}

fn head_option(
    problem: &Problem,
    candidate: usize,
    head: TrainedHead,
    select: &[usize],
    certify: &[usize],
    reference: &Reference,
) -> Result<HeadOption> {
    let all = score(&head, &problem.frames.held, candidate, &METRICS)?;
    let select_scores: Vec<ExitScores> = all.iter().map(|s| subset(s, select)).collect();
    Ok(HeadOption {
        cost: problem.head_cost(candidate, &head)?,
        thresholds: METRICS
            .iter()
            .zip(&select_scores)
            .map(|(m, s)| level_thresholds(*m, s, reference, &problem.goal, problem.args.seed))
            .collect::<Result<_>>()?,
        certify: all.iter().map(|s| subset(s, certify)).collect(),
        select: select_scores,
        head,
    })
}

/// A found patient rule as the gate that runs it (see [`gating::patient`]), so that the bundle,
/// `evaluate` and the report's held-out figures all run it the same way.
fn patient_as_gate(zoo: &Zoo, found: Found) -> Found {
    let (metric, patience) = rule_of(found.metric);
    let gated = (patience != Patience::None).then(|| {
        let thresholds: Vec<f64> = found
            .placed
            .iter()
            .filter_map(|&(c, k, t)| zoo.options[c][k].as_ref().map(|o| o.thresholds[metric][t]))
            .collect();
        gating::patient(METRICS[metric], &thresholds, patience)
    });
    Found {
        metric,
        gated,
        ..found
    }
}

/// `--format 2`: learned gates on the found structure's exits, trained on the selecting frames,
/// with the cheapest threshold that meets the target there. The gated structure is certified
/// as one more try and replaces the found one when its certificate is better.
fn gate(zoo: &Zoo, found: Found, seed: u64, confidence: f64, notes: &mut String) -> Result<Found> {
    let _ = writeln!(notes, "\n## Learned gate\n");
    let outputs = |certifying: bool| -> Vec<&[ExitScores]> {
        found
            .placed
            .iter()
            .filter_map(|&(c, k, _)| zoo.options[c][k].as_ref())
            .map(|o| {
                if certifying {
                    o.certify.as_slice()
                } else {
                    o.select.as_slice()
                }
            })
            .collect()
    };
    let (select, certify) = (outputs(false), outputs(true));
    let Some(costs) = zoo.costs(&found.placed).filter(|_| !select.is_empty()) else {
        let _ = writeln!(notes, "No structure with exits to gate.");
        return Ok(found);
    };
    let goal = &zoo.problem.goal;
    let weights = gating::train(&select, &zoo.select, &zoo.select_streams, goal, seed)?;
    let gate = earlyexit::gate::Gate {
        inputs: gating::INPUTS.to_vec(),
    };
    let best = gating::thresholds()
        .map(|t| {
            let sim = gating::simulate(
                &gate,
                &weights,
                t,
                &select,
                &zoo.select,
                &zoo.select_streams,
                &costs,
            );
            (t, sim)
        })
        .filter(|(_, sim)| zoo.error(sim) <= goal.limit())
        .min_by(|a, b| a.1.mean_cost.total_cmp(&b.1.mean_cost));
    let Some((threshold, select_sim)) = best else {
        let _ = writeln!(
            notes,
            "Gates on the found structure's exits meet the target at no threshold on the selecting frames."
        );
        return Ok(found);
    };
    let certify_sim = gating::simulate(
        &gate,
        &weights,
        threshold,
        &certify,
        &zoo.certify,
        &zoo.certify_streams,
        &costs,
    );
    let each = 1.0 - (1.0 - confidence) / CERTIFY_TRIES as f64;
    let certificate = zoo.certificate(&certify_sim, each);
    let m = measure_name(goal.measure);
    let _ = writeln!(
        notes,
        "Each exit of the found structure gets a logistic gate over {}, trained on the selecting frames to tell when leaving costs nothing; one threshold on the gates' probability, the cheapest that meets the target there, is certified as one more try.\n",
        gating::INPUTS
            .iter()
            .map(|i| format!("`{}`", i.word()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        notes,
        "| rule | cost (select) | {m} (select) | cost (certify) | {m} (certify) | bound |"
    );
    let _ = writeln!(notes, "|---|---|---|---|---|---|");
    for (name, sel, cert, c) in [
        (
            match &found.gated {
                Some(g) => format!(
                    "patient: gate over {}",
                    g.gate
                        .inputs
                        .iter()
                        .map(|i| format!("`{}`", i.word()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("metric `{}`", METRICS[found.metric].word()),
            },
            &found.select,
            &found.certify,
            &found.certificate,
        ),
        (
            format!("gate ≥ {threshold:.4}"),
            &select_sim,
            &certify_sim,
            &certificate,
        ),
    ] {
        let _ = writeln!(
            notes,
            "| {name} | {:.4} | {:.2}% | {:.4} | {:.2}% | {}{} |",
            sel.mean_cost,
            100.0 * measure_of(goal.measure, sel),
            cert.mean_cost,
            100.0 * measure_of(goal.measure, cert),
            bound_cell(c),
            if c.certified { "" } else { " (not certified)" }
        );
    }
    let better = match (certificate.certified, found.certificate.certified) {
        (true, false) => true,
        (true, true) => select_sim.mean_cost < found.select.mean_cost,
        (false, true) => false,
        (false, false) => certificate.merit() > found.certificate.merit(),
    };
    if !better {
        let _ = writeln!(notes, "\nThe metric rule stays: its certificate is better.");
        return Ok(found);
    }
    let _ = writeln!(notes, "\nThe gates are kept (bundle format `earlyexit/2`).");
    Ok(Found {
        gated: Some(Gated {
            gate,
            weights,
            threshold,
        }),
        certificate,
        select: select_sim,
        certify: certify_sim,
        ..found
    })
}

/// The `keep` most salient candidates, in execution order; of candidates with no MACs between
/// them (a block's Add and its ReLU), only the more salient.
fn prune(problem: &Problem, saliency: &[(f64, f64)], keep: usize) -> Vec<usize> {
    let mut ranked: Vec<usize> = (0..saliency.len()).collect();
    ranked.sort_by(|&a, &b| saliency[b].0.total_cmp(&saliency[a].0).then(a.cmp(&b)));
    let mut kept: Vec<usize> = Vec::new();
    for i in ranked {
        let at = problem.candidates[i].macs_before;
        if kept.len() < keep.max(1)
            && !kept
                .iter()
                .any(|&k| problem.candidates[k].macs_before == at)
        {
            kept.push(i);
        }
    }
    kept.sort_unstable();
    kept
}

/// Every head trained at the kept positions: its agreement with the backbone on the selecting
/// frames, and its cost (MACs, or nanoseconds with `--cost latency`).
fn heads_table(
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

/// The first half in time of each footage's held-out frames selects, the second certifies.
fn split(ranges: &[Range<usize>]) -> (Vec<usize>, Vec<usize>) {
    let (mut select, mut certify) = (Vec::new(), Vec::new());
    for r in ranges {
        let mid = r.start + (r.end - r.start) / 2;
        select.extend(r.start..mid);
        certify.extend(mid..r.end);
    }
    (select, certify)
}

/// Each footage's part of the selecting or certifying frames, as ranges of those frames.
fn streams(ranges: &[Range<usize>], certifying: bool) -> Vec<Range<usize>> {
    let mut start = 0;
    ranges
        .iter()
        .map(|r| {
            let half = (r.end - r.start) / 2;
            let n = if certifying {
                r.end - r.start - half
            } else {
                half
            };
            start += n;
            start - n..start
        })
        .collect()
}

fn subset(s: &ExitScores, idx: &[usize]) -> ExitScores {
    ExitScores {
        class: idx.iter().map(|&i| s.class[i]).collect(),
        score: idx.iter().map(|&i| s.score[i]).collect(),
    }
}

/// Heads an ensemble averages: the trained heads at one position that agree most with the
/// backbone on the selecting frames.
const ENSEMBLE_MEMBERS: usize = 3;

/// The ensemble of the best [`ENSEMBLE_MEMBERS`] heads trained at a position.
fn ensemble_of(trained: &[Option<HeadOption>], teacher: &[u32]) -> TrainedHead {
    let mut ranked: Vec<(f64, &TrainedHead)> = trained
        .iter()
        .flatten()
        .filter(|o| o.head.kind != HeadKind::Ensemble)
        .map(|o| (agreement(&o.select[0], teacher), &o.head))
        .collect();
    // Stable, so ties keep the order of rising capacity.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    TrainedHead::ensemble(
        ranked
            .into_iter()
            .take(ENSEMBLE_MEMBERS)
            .map(|(_, h)| h.clone())
            .collect(),
    )
}

fn agreement(s: &ExitScores, teacher: &[u32]) -> f64 {
    s.class.iter().zip(teacher).filter(|(a, b)| a == b).count() as f64 / teacher.len().max(1) as f64
}

/// The share of frames an exit could let leave (most confident first) with at least
/// `precision` of them right.
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

/// The exit's threshold at each of [`LEVELS`]: a logistic fit, on the selecting frames, of
/// the chance that leaving costs nothing given the metric's value, solved for each level. A fit
/// with two parameters moves little with the frames it saw, unlike the frames' own ranks.
fn level_thresholds(
    metric: Metric,
    s: &ExitScores,
    reference: &Reference,
    goal: &Goal,
    seed: u64,
) -> Result<Vec<f64>> {
    let x: Vec<f32> = s.score.iter().map(|&v| v as f32).collect();
    let harmless: Vec<bool> = s
        .class
        .iter()
        .enumerate()
        .map(|(i, &c)| goal.penalty(c, reference.teacher[i], reference.labels.map(|l| l[i])) <= 0.0)
        .collect();
    let training = Training {
        seed,
        ..Training::default()
    };
    let (w, bias) = crate::heads::logistic(&x, 1, &harmless, &training)?;
    let w = w[0];
    // Confidence must raise the chance: higher max-prob or margin, lower entropy.
    let sensible = match metric {
        Metric::Entropy => w < 0.0,
        _ => w > 0.0,
    };
    Ok(LEVELS
        .iter()
        .map(|&level| {
            if sensible {
                ((level / (1.0 - level)).ln() - bias) / w
            } else {
                never(metric)
            }
        })
        .collect())
}

fn bound_cell(c: &Certificate) -> String {
    match c.loss_bound {
        Some(l) => format!("{:.2} pp", 100.0 * l),
        None => format!("{:.2}%", 100.0 * c.bound),
    }
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

/// The non-dominated configurations on the selecting frames, cheapest first.
fn front_table(notes: &mut String, scored: &[(usize, nas::Scored)]) {
    let front = pareto_front(scored, |s| s.1.objectives);
    let _ = writeln!(
        notes,
        "Pareto front on the selecting frames (error = 1 − the target's measure):\n"
    );
    let _ = writeln!(notes, "| mean cost | error | metric | exits |");
    let _ = writeln!(notes, "|---|---|---|---|");
    for (m, s) in front.iter().take(40) {
        let exits = s
            .genome
            .split_last()
            .map_or(0, |(_, g)| g.iter().filter(|g| **g > 0).count());
        let _ = writeln!(
            notes,
            "| {:.4} | {:.4} | {} | {exits} |",
            s.objectives[0],
            s.objectives[1],
            rule_name(*m)
        );
    }
}

/// The oracle's mean cost on the certifying frames for the found structure's heads.
fn oracle_cost(zoo: &Zoo, f: &Found) -> f64 {
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
