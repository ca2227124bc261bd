//! The exit-structure search (`--strategy nas`): prune candidate positions by saliency, train
//! every head architecture at the kept ones, search positions × heads × metric × thresholds
//! with NSGA-II on cached head outputs, and certify the choice on frames nothing was fitted on.
//!
//! The held-out frames of each footage are split in time: the first half selects (thresholds,
//! structure), the second half only certifies. The baselines (an exit at every kept position,
//! and evenly spaced exits) go through the same search, restricted, and the same certificate.

mod certified;
mod gates;
mod rules;
mod tables;
mod training;
mod zoo;

use anyhow::Result;
use earlyexit::bundle::Promise;

use self::certified::{CERTIFY_TRIES, search_and_certify};
use self::gates::{gate, patient_as_gate};
use self::rules::{METRICS, PATIENCE};
use self::tables::{baselines_table, figure, oracle_cost};
use self::training::train_heads;
use self::zoo::{Family, Found, Zoo, split, streams};
use crate::calibrate::Reference;
use crate::heads::HeadKind;
use crate::plot;
use crate::search::{Choice, ChosenExit, Problem};

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

    let select_ref = Reference {
        teacher: &teacher_s,
        labels: labels_s.as_deref(),
    };
    let (kept, options) = train_heads(problem, &select, &certify_frames, &select_ref, &mut notes)?;

    let zoo = Zoo {
        problem,
        options,
        select: select_ref,
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
    let (found, stream_blind) = if gates {
        gate(&zoo, found, args.seed, args.confidence, &mut notes)?
    } else {
        (found, None)
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

    let oracle = oracle_cost(&zoo, &found);
    let backbone_accuracy =
        baselines_table(&mut notes, &zoo, &found, &sdn_found, &even_found, oracle);

    let baseline = |f: &Found| to_choice(&zoo, f, args.confidence, String::new(), Vec::new());
    let mut baselines = vec![
        ("sdn", baseline(&sdn_found)),
        ("even", baseline(&even_found)),
    ];
    if let Some(f) = &stream_blind {
        baselines.push(("no-last-frame", baseline(f)));
    }
    let mut choice = to_choice(&zoo, &found, args.confidence, notes, baselines);
    let marked = [
        (plot::Mark::ShallowDeep, &sdn_found),
        (plot::Mark::Even, &even_found),
    ];
    let figure = figure(&zoo, &found, &marked, oracle, backbone_accuracy);
    choice.plot = Some(plot::pareto_svg(&figure));
    Ok(choice)
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
        uncertified: !f.certificate.certified,
        held: zoo.simulate_held(f).unwrap_or_else(|| f.select.clone()),
        notes,
        baselines,
        plot: None,
    }
}
