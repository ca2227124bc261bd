//! The exit-structure search (`--strategy nas`): prune candidate positions by saliency, train
//! every head architecture at the kept ones, search positions × heads × exit rules × thresholds
//! with NSGA-II on cached head outputs, and certify the choice on frames nothing was fitted on.
//!
//! Heads train on the training footage but its end, which they never see: there, the search
//! chooses thresholds and structure, and lays out ladders of configurations, safest first. The
//! held-out frames, all of them, only certify, climbing each ladder as far as they allow
//! ([`certified`]). The bundle keeps the cheapest configuration certified, or no exit at all.
//! The baselines (an exit at every kept position, and evenly spaced exits) go through the same
//! search, restricted, and the same certificate. Everything here returns data; the report
//! renders it.

mod baselines;
mod certificate;
mod certified;
mod gates;
mod rules;
mod streams;
mod training;
mod zoo;

use anyhow::Result;
use earlyexit::bundle::{Measure, Promise};

pub use self::baselines::Baselines;
pub use self::certificate::Certificate;
pub use self::certified::{Configuration, LOOSEST, RUNGS, Searched, TryAt};
pub use self::gates::GateFindings;
pub use self::rules::{LEVELS, Rule};
pub use self::training::{Saliency, held_columns_bound};
pub use self::zoo::Found;

use self::certified::{best, explore, ladder, search_and_certify};
use self::gates::{gate, patient_as_gate};
use self::streams::reuse_rule;
use self::training::{Trained, agreement, train_heads};
use self::zoo::{Family, Structure, Zoo};
use crate::heads::HeadKind;
use crate::problem::{Choice, ChosenExit, ChosenGates, Problem};
use crate::simulate::Reference;

/// What the exit search chose, the baselines it wrote beside it, and how it got there.
pub struct Selected {
    pub choice: Choice,
    /// Baseline structures, written as bundles under `baselines/NAME/`.
    pub baselines: Vec<Baseline>,
    pub findings: Findings,
}

/// A baseline structure, under the name its bundle is written as.
pub struct Baseline {
    pub name: &'static str,
    pub choice: Choice,
}

/// Everything the search found on its way, for the report.
pub struct Findings {
    /// Every candidate position's probe.
    pub saliency: Vec<Saliency>,
    /// The positions kept after pruning, in execution order.
    pub kept: Vec<usize>,
    /// Every head trained at the kept positions.
    pub heads: Vec<KeptHeads>,
    /// The search of the whole family, and the ladders certified.
    pub searched: Searched,
    /// Format 2: learned gates on the structure the selecting frames prefer.
    pub gates: Option<GateFindings>,
    /// The structure chosen.
    pub chosen: Found,
    pub baselines: Baselines,
    pub select_frames: usize,
    pub certify_frames: usize,
    /// The independent scenes the certifying frames are worth.
    pub certify_scenes: f64,
    /// The promise's confidence, for every ladder together.
    pub confidence: f64,
}

/// The heads trained at one kept position, in [`HeadKind::ALL`] order (`None` where a kind
/// does not fit the tensor).
pub struct KeptHeads {
    pub candidate: usize,
    pub heads: Vec<Option<HeadSummary>>,
}

/// A head's agreement with the backbone on the selecting frames, and its cost (MACs, or
/// nanoseconds with `--cost latency`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadSummary {
    pub agreement: f64,
    pub cost: u64,
}

pub fn choose(problem: &Problem) -> Result<Selected> {
    let settings = &problem.settings;
    let frames = &problem.frames;
    frames.folds.check()?;
    let held_labels = frames.held.all_labels();
    let select_ref = Reference {
        teacher: &frames.train.teacher,
        labels: frames.train_labels.as_deref(),
    };
    let trained = train_heads(problem, &select_ref)?;
    let heads = kept_heads(&trained, &frames.train.teacher);

    let zoo = Zoo {
        problem,
        heads: trained.heads,
        select: select_ref,
        certify: Reference {
            teacher: &frames.held.teacher,
            labels: held_labels.as_deref(),
        },
        certify_scenes: crate::certify::effective_scenes(&frames.held.teacher),
    };
    let searched_family = Family {
        positions: trained.kept.clone(),
        kinds: HeadKind::ALL.to_vec(),
        rules: Rule::all(settings.format),
    };
    let budget = settings.budget.max(30);
    let explored = explore(&zoo, &searched_family, budget, settings.seed);
    let best = best(&zoo, &searched_family, &explored);
    // With a stream rule, its ladder takes the exits' rungs too, so it replaces theirs rather
    // than splitting the confidence once more. The rule may also serve the backbone alone,
    // when no exit meets the target.
    let streamed = problem
        .streams()
        .then(|| reuse_rule(&zoo))
        .flatten()
        .map(|rule| Structure {
            reuse: Some(rule),
            ..best.clone().unwrap_or_else(Structure::backbone)
        });
    let mut ladders: Vec<_> = streamed
        .or(best.clone())
        .iter()
        .map(|s| ladder(&zoo, s))
        .collect();
    let gates = if problem.gates() {
        let gating = gate(&zoo, best.as_ref(), settings.seed, settings.confidence)?;
        ladders.extend((!gating.ladder.is_empty()).then_some(gating.ladder));
        Some(gating.findings)
    } else {
        None
    };
    let searched = certified::certify(&zoo, explored, ladders, settings.confidence);
    // Learned gates are kept only when a step of theirs is the cheapest certified.
    let stream_blind = match &gates {
        Some(GateFindings::Fitted(fit)) if searched.found.structure.gated.is_some() => {
            fit.stream_blind.clone()
        }
        _ => None,
    };
    let found = match searched.found.structure.gated {
        Some(_) => searched.found.clone(),
        None => patient_as_gate(searched.found.clone()),
    };

    let (shallow_deep, even) = search_baselines(&zoo, &trained.kept, &found, budget)?;

    let baseline = |name, f: &Found| Baseline {
        name,
        choice: to_choice(&zoo, f, settings.confidence),
    };
    let mut baselines = vec![baseline("sdn", &shallow_deep), baseline("even", &even)];
    if let Some(f) = &stream_blind {
        baselines.push(baseline("no-last-frame", f));
    }
    Ok(Selected {
        choice: to_choice(&zoo, &found, settings.confidence),
        baselines,
        findings: Findings {
            saliency: trained.saliency,
            kept: trained.kept,
            heads,
            searched,
            gates,
            baselines: Baselines::compare(&zoo, &found, shallow_deep, even),
            chosen: found,
            select_frames: zoo.select.frames(),
            certify_frames: zoo.certify.frames(),
            certify_scenes: zoo.certify_scenes,
            confidence: settings.confidence,
        },
    })
}

/// What every head trained at the kept positions shows on the selecting frames (`teacher`).
fn kept_heads(trained: &Trained, teacher: &[u32]) -> Vec<KeptHeads> {
    trained
        .kept
        .iter()
        .map(|&candidate| KeptHeads {
            candidate,
            heads: trained
                .heads
                .at(candidate)
                .map(|(_, o)| {
                    o.map(|o| HeadSummary {
                        agreement: agreement(&o.select, teacher),
                        cost: o.cost,
                    })
                })
                .collect(),
        })
        .collect()
}

/// The baselines, Shallow-Deep Networks (an exit at every `kept` position) and exits spread
/// evenly (as many as `found` has): the same heads, target, search and certificate as the
/// chosen structure, in restricted families.
fn search_baselines(
    zoo: &Zoo,
    kept: &[usize],
    found: &Found,
    budget: usize,
) -> Result<(Found, Found)> {
    let problem = zoo.problem;
    let family = |positions| Family {
        positions,
        kinds: vec![HeadKind::LinearGap],
        rules: vec![Rule::PLAIN],
    };
    let even_positions = crate::placement::evenly_spaced(
        &problem.candidates,
        problem.total_macs,
        found.structure.placed.len().max(1),
    )?;
    let search = |family: &Family| {
        search_and_certify(
            zoo,
            family,
            budget / 3,
            problem.settings.seed,
            problem.settings.confidence,
        )
        .found
    };
    let shallow_deep = search(&family(kept.to_vec()));
    Ok((shallow_deep, search(&family(even_positions))))
}

fn to_choice(zoo: &Zoo, f: &Found, confidence: f64) -> Choice {
    let exits = f
        .structure
        .placed
        .iter()
        .zip(&f.structure.thresholds)
        .filter_map(|(p, &threshold)| {
            let o = zoo.option(p)?;
            let threshold = f
                .structure
                .gated
                .as_ref()
                .map_or(threshold, |g| g.threshold);
            Some(ChosenExit {
                cut: zoo.problem.candidates[p.candidate].clone(),
                head: o.head().clone(),
                threshold,
            })
        })
        .collect();
    Choice {
        exits,
        metric: f.structure.rule.metric,
        gates: f.structure.gated.as_ref().map(|g| ChosenGates {
            gate: g.gate.clone(),
            weights: g.weights.clone(),
        }),
        reuse: f.structure.reuse.clone(),
        promise: Some(promise(zoo, f, confidence)),
        held: f.certify.clone(),
    }
}

/// What a bundle of `f` promises, true of it as written. The backbone alone agrees with itself
/// on every frame, certainly. A certified rate is the target the path certified (the bound of
/// the one step kept would be chosen after the fact); otherwise, and for the accuracy a loss
/// goal leaves, the step's own lower bound.
fn promise(zoo: &Zoo, f: &Found, confidence: f64) -> Promise {
    let goal = &zoo.problem.goal;
    if f.structure.placed.is_empty() && f.structure.reuse.is_none() {
        return Promise {
            measure: Measure::Agreement,
            target: 1.0,
            confidence: 1.0,
            frames: 0,
        };
    }
    let rate = match goal.max_loss {
        None if f.certificate.certified => goal.target,
        _ => f.certificate.bound,
    };
    Promise {
        measure: goal.measure,
        // Four decimals, rounded down, so the written promise never exceeds what holds.
        target: (rate * 10_000.0).floor() / 10_000.0,
        confidence,
        frames: zoo.certify.frames() as u64,
    }
}
