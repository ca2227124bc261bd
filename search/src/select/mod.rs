//! The exit-structure search (`--strategy nas`): prune candidate positions by saliency, train
//! every head architecture at the kept ones, search positions × heads × exit rules × thresholds
//! with NSGA-II on cached head outputs, and certify the choice on frames nothing was fitted on.
//!
//! The held-out frames of each footage are split in time ([`Halves`]): the first half selects
//! (thresholds, structure), the second half only certifies. The baselines (an exit at every
//! kept position, and evenly spaced exits) go through the same search, restricted, and the same
//! certificate. Everything here returns data; the report renders it.

mod baselines;
mod certificate;
mod certified;
mod gates;
mod halves;
mod rules;
mod training;
mod zoo;

use anyhow::Result;
use earlyexit::bundle::Promise;

pub use self::baselines::Baselines;
pub use self::certificate::Certificate;
pub use self::certified::{CERTIFY_TRIES, Configuration, Searched, per_try};
pub use self::gates::{GateFindings, GateRow, GateRowRule};
pub use self::rules::{LEVELS, Rule};
pub use self::training::Saliency;
pub use self::zoo::Found;

use self::certified::search_and_certify;
use self::gates::{gate, patient_as_gate};
use self::halves::Halves;
use self::training::{Trained, agreement, train_heads};
use self::zoo::{Family, Zoo};
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
    /// The search of the whole family, before any learned gate.
    pub searched: Searched,
    /// Format 2: learned gates on the found structure.
    pub gates: Option<GateFindings>,
    /// The structure chosen.
    pub chosen: Found,
    pub baselines: Baselines,
    pub select_frames: usize,
    pub certify_frames: usize,
    /// The promise's confidence, for all tries together.
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
    let held = &problem.frames.held;
    let halves = Halves::of(&problem.frames.held_ranges);
    let labels = held.all_labels();
    let pick = |v: &[u32], idx: &[usize]| -> Vec<u32> { idx.iter().map(|&i| v[i]).collect() };
    let teacher_s = pick(&held.teacher, &halves.select);
    let teacher_c = pick(&held.teacher, &halves.certify);
    let labels_s = labels.as_ref().map(|l| pick(l, &halves.select));
    let labels_c = labels.as_ref().map(|l| pick(l, &halves.certify));

    let select_ref = Reference {
        teacher: &teacher_s,
        labels: labels_s.as_deref(),
    };
    let trained = train_heads(problem, &halves, &select_ref)?;
    let heads = kept_heads(&trained, &teacher_s);

    let zoo = Zoo {
        problem,
        heads: trained.heads,
        halves: &halves,
        select: select_ref,
        certify: Reference {
            teacher: &teacher_c,
            labels: labels_c.as_deref(),
        },
        held: Reference {
            teacher: &held.teacher,
            labels: labels.as_deref(),
        },
    };
    let searched_family = Family {
        positions: trained.kept.clone(),
        kinds: HeadKind::ALL.to_vec(),
        rules: Rule::all(settings.format),
    };
    let budget = settings.budget.max(30);
    let searched = search_and_certify(
        &zoo,
        &searched_family,
        budget,
        settings.seed,
        settings.confidence,
        CERTIFY_TRIES - usize::from(problem.gates()),
    );
    let found = patient_as_gate(&zoo, searched.found.clone());
    let (found, stream_blind, gates) = if problem.gates() {
        let gating = gate(&zoo, found, settings.seed, settings.confidence)?;
        (gating.found, gating.stream_blind, Some(gating.findings))
    } else {
        (found, None, None)
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
    let even_positions = crate::placement::evenly_by_macs(
        &problem.candidates.iter().collect::<Vec<_>>(),
        problem.total_macs,
        found.placed.len().max(1),
    )?
    .into_iter()
    .filter_map(|c| problem.candidates.iter().position(|d| d.tensor == c.tensor))
    .collect();
    let search = |family: &Family| {
        search_and_certify(
            zoo,
            family,
            budget / 3,
            problem.settings.seed,
            problem.settings.confidence,
            CERTIFY_TRIES,
        )
        .found
    };
    let shallow_deep = search(&family(kept.to_vec()));
    Ok((shallow_deep, search(&family(even_positions))))
}

fn to_choice(zoo: &Zoo, f: &Found, confidence: f64) -> Choice {
    let exits = f
        .placed
        .iter()
        .filter_map(|p| {
            let o = zoo.option(p)?;
            let threshold = match &f.gated {
                Some(g) => g.threshold,
                None => o.threshold(f.rule.metric, p.level)?,
            };
            Some(ChosenExit {
                cut: zoo.problem.candidates[p.candidate].clone(),
                head: o.head.clone(),
                threshold,
            })
        })
        .collect();
    let promise = Promise {
        measure: zoo.problem.goal.measure,
        // Four decimals, rounded down, so the written promise never exceeds the bound.
        target: (f.certificate.bound * 10_000.0).floor() / 10_000.0,
        confidence,
        frames: zoo.certify.frames() as u64,
    };
    Choice {
        exits,
        metric: f.rule.metric,
        gates: f.gated.as_ref().map(|g| ChosenGates {
            gate: g.gate.clone(),
            weights: g.weights.clone(),
        }),
        promise: Some(promise),
        uncertified: !f.certificate.certified,
        held: zoo.simulate_held(f).unwrap_or_else(|| f.select.clone()),
    }
}
