//! Saliency probes at every candidate position, then every head architecture at the kept ones:
//! the heads a [`Zoo`](super::zoo::Zoo) is built from.

use std::fmt::Write;

use anyhow::Result;

use super::tables::heads_table;
use super::zoo::{
    HeadOption, Options, agreement, coverage_at, ensemble_of, head_option, kind_index, prune,
};
use crate::calibrate::Reference;
use crate::heads::{HeadKind, Training};
use crate::search::{Problem, train_head};

/// The kept candidate positions and, per candidate and head kind, the heads trained there
/// with their outputs on the selecting and certifying frames. Writes the saliency and heads
/// tables to `notes`.
pub(super) fn train_heads(
    problem: &Problem,
    select: &[usize],
    certify_frames: &[usize],
    select_ref: &Reference,
    notes: &mut String,
) -> Result<(Vec<usize>, Options)> {
    let args = problem.args;
    let teacher_s = select_ref.teacher;
    let scored = |i: usize, head| head_option(problem, i, head, select, certify_frames, select_ref);
    // Saliency: a GAP → Linear probe at every candidate; what it could save alone.
    let bar = crate::progress::bar("saliency probes", Some(problem.candidates.len() as u64));
    let mut options: Options = Vec::new();
    let mut saliency = Vec::new();
    for i in 0..problem.candidates.len() {
        let training = Training {
            seed: args.seed.wrapping_add(i as u64),
            ..Training::default()
        };
        let head = train_head(problem, i, HeadKind::LinearGap, true, &training)?;
        let option = scored(i, head)?;
        let share = problem.share_before(i);
        let probe = &option.select[0];
        let coverage = coverage_at(
            probe,
            select_ref,
            problem.goal.measure,
            problem.goal.target.max(0.99),
        );
        saliency.push((coverage * (1.0 - share), agreement(probe, teacher_s)));
        let mut per_kind: Vec<Option<HeadOption>> = HeadKind::ALL.iter().map(|_| None).collect();
        per_kind[kind_index(HeadKind::LinearGap)] = Some(option);
        options.push(per_kind);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kept = prune(&problem.candidates, &saliency, args.candidates);
    let _ = writeln!(notes, "\n## Candidate positions (saliency)\n");
    let _ = writeln!(
        notes,
        "Saliency: the share of selecting frames a GAP → Linear probe at the position could let leave at ≥ 99% agreement (or the target, if higher), times the share of the backbone's cost (MACs, or measured time) it would save. The {} most salient positions are kept (of positions with no MACs between them, only the last may be: it costs the same, and a cut there leaves ONNX Runtime's fused Conv+Add+ReLU whole).\n",
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
            // A vector (not an image) has only global pooling: no grid heads.
            if kind.pool_index() < crate::features::pools_for(&cut.shape).len() {
                let seed = args
                    .seed
                    .wrapping_add((1000 * (kind_index(*kind) + 1) + i) as u64);
                let head = train_head(problem, i, *kind, true, &Training::for_kind(*kind, seed))?;
                options[i][kind_index(*kind)] = Some(scored(i, head)?);
            }
            bar.inc(1);
        }
        let ensemble = ensemble_of(&options[i], teacher_s);
        options[i][kind_index(HeadKind::Ensemble)] = Some(scored(i, ensemble)?);
    }
    bar.finish_and_clear();
    heads_table(notes, problem, &kept, &options, teacher_s);
    Ok((kept, options))
}
