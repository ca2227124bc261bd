//! Saliency probes at every candidate position, then every head architecture at the kept ones:
//! the heads a [`Zoo`](super::zoo::Zoo) is built from.

use anyhow::Result;
use earlyexit::bundle::Measure;
use earlyexit::rule::Metric;
use earlyexit_graph::CutPoint;

use super::zoo::{HeadOption, HeadScores, HeadTable};
use crate::crossfit::CrossFitted;
use crate::heads::{HeadKind, Training};
use crate::outputs::ExitOutputs;
use crate::problem::Problem;
use crate::simulate::{Reference, share_alike};

/// What a GAP → Linear probe at a candidate position shows on the selecting frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saliency {
    /// The share of frames the probe could let leave at high precision, times the share of
    /// the backbone's cost it would save: how much an exit there is worth.
    pub score: f64,
    /// The probe's agreement with the backbone.
    pub agreement: f64,
}

/// The heads trained for the search: a probe's saliency at every candidate, the positions
/// kept, and every architecture at the kept ones.
pub struct Trained {
    pub saliency: Vec<Saliency>,
    pub kept: Vec<usize>,
    pub heads: HeadTable,
}

/// Probes every candidate position, keeps the most salient, and trains every head kind there,
/// cross-fitted: each scored out of fold on the selecting frames (the training frames, which
/// `select_ref` describes) and on the held-out frames.
pub fn train_heads(problem: &Problem, select_ref: &Reference) -> Result<Trained> {
    let seed = problem.settings.seed;
    let candidates = problem.candidates.len();
    let trained = |candidate, kind, training: &Training| -> Result<HeadOption> {
        let head = problem.cross_fit_head(candidate, kind, true, training)?;
        scored(problem, select_ref, candidate, head)
    };
    let mut heads = HeadTable::new(candidates);
    // Saliency: a GAP → Linear probe at every candidate; what it could save alone.
    let bar = crate::progress::bar("saliency probes", Some(candidates as u64));
    let mut saliency = Vec::new();
    for candidate in 0..candidates {
        let training = Training {
            seed: seed.wrapping_add(candidate as u64),
            ..Training::default()
        };
        let probe = trained(candidate, HeadKind::LinearGap, &training)?;
        let coverage = coverage_at(
            &probe.select,
            select_ref,
            problem.goal.measure,
            problem.goal.target.max(0.99),
        );
        saliency.push(Saliency {
            score: coverage * (1.0 - problem.share_before(candidate)),
            agreement: agreement(&probe.select, select_ref.teacher),
        });
        heads.set(candidate, HeadKind::LinearGap, probe);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kept = prune(&problem.candidates, &saliency, problem.settings.candidates);

    // Every architecture at every kept position, then the ensemble of the heads trained there.
    let others: Vec<HeadKind> = HeadKind::TRAINED
        .iter()
        .copied()
        .filter(|k| *k != HeadKind::LinearGap)
        .collect();
    let bar = crate::progress::bar("training heads", Some((kept.len() * others.len()) as u64));
    for &candidate in &kept {
        // A vector (not an image) has only global pooling: no grid heads.
        let pools = crate::features::pools_for(&problem.candidates[candidate].shape).len();
        for &kind in &others {
            if kind.pool_index() < pools {
                let seed = seed.wrapping_add((1000 * (kind.index() + 1) + candidate) as u64);
                let option = trained(candidate, kind, &Training::for_kind(kind, seed))?;
                heads.set(candidate, kind, option);
            }
            bar.inc(1);
        }
        let ensemble = ensemble_of(&heads, candidate, select_ref.teacher);
        let option = scored(problem, select_ref, candidate, ensemble)?;
        heads.set(candidate, HeadKind::Ensemble, option);
    }
    bar.finish_and_clear();
    Ok(Trained {
        saliency,
        kept,
        heads,
    })
}

/// `head`, trained at `candidate`, scored on the selecting and the held-out frames, and
/// costed.
fn scored(
    problem: &Problem,
    select_ref: &Reference,
    candidate: usize,
    head: CrossFitted,
) -> Result<HeadOption> {
    let scores = HeadScores::of(problem, candidate, &head, select_ref)?;
    let cost = problem.head_cost(candidate, &head.head)?;
    Ok(HeadOption::new(head, cost, scores))
}

/// Heads an ensemble averages: the trained heads at one position that agree most with the
/// backbone on the selecting frames.
const ENSEMBLE_MEMBERS: usize = 3;

/// The ensemble of the best [`ENSEMBLE_MEMBERS`] heads trained at `candidate`.
fn ensemble_of(heads: &HeadTable, candidate: usize, teacher: &[u32]) -> CrossFitted {
    let mut ranked: Vec<(f64, &CrossFitted)> = heads
        .at(candidate)
        .filter_map(|(_, o)| o)
        .filter(|o| o.head().kind != HeadKind::Ensemble)
        .map(|o| (agreement(&o.select, teacher), &o.fitted))
        .collect();
    // Stable, so ties keep the order of rising capacity.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let members: Vec<&CrossFitted> = ranked
        .into_iter()
        .take(ENSEMBLE_MEMBERS)
        .map(|(_, h)| h)
        .collect();
    CrossFitted::ensemble(&members)
}

/// An exit's agreement with the backbone (`teacher`) on the frames of `outputs`.
pub fn agreement(outputs: &ExitOutputs, teacher: &[u32]) -> f64 {
    share_alike(&outputs.classes(), teacher)
}

/// The share of frames an exit could let leave (surest max-prob first) with at least
/// `precision` of them right.
fn coverage_at(s: &ExitOutputs, reference: &Reference, measure: Measure, precision: f64) -> f64 {
    let metric = Metric::MaxProb;
    let scores = s.scores(metric);
    let mut order: Vec<usize> = (0..s.frames()).collect();
    order.sort_by(|&a, &b| metric.surest_first(scores[a], scores[b]));
    let right = |i: usize| reference.right(measure, i, s.class(i));
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

/// The `keep` most salient candidates, in execution order. Of candidates with no MACs between
/// them (a block's Add and its ReLU), only the last may be kept: it costs the same, and a cut
/// there leaves ONNX Runtime's fused Conv+Add+ReLU whole instead of running the Add and the
/// ReLU alone after the cut.
fn prune(candidates: &[CutPoint], saliency: &[Saliency], keep: usize) -> Vec<usize> {
    let last_of_chain = |i: usize| {
        candidates
            .get(i + 1)
            .is_none_or(|next| next.macs_before != candidates[i].macs_before)
    };
    let mut kept: Vec<usize> = (0..saliency.len()).filter(|&i| last_of_chain(i)).collect();
    kept.sort_by(|&a, &b| {
        saliency[b]
            .score
            .total_cmp(&saliency[a].score)
            .then(a.cmp(&b))
    });
    kept.truncate(keep.max(1));
    kept.sort_unstable();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests::cut;

    #[test]
    fn pruning_keeps_the_most_salient_chain_ends_in_execution_order() {
        let candidates = [
            cut("stem/Conv", 10),
            cut("stem/Relu", 10),
            cut("block0/Add", 40),
            cut("block0/Relu", 40),
            cut("block1/Add", 70),
            cut("block1/Relu", 70),
            cut("block2/Relu", 90),
        ];
        // The Adds are the more salient of their chains, and still give way to the ReLUs.
        let saliency = [0.9, 0.1, 0.8, 0.3, 0.7, 0.5, 0.2].map(|score| Saliency {
            score,
            agreement: 0.0,
        });
        assert_eq!(prune(&candidates, &saliency, 2), vec![3, 5]);
        assert_eq!(prune(&candidates, &saliency, 3), vec![3, 5, 6]);
        assert_eq!(prune(&candidates, &saliency, 10), vec![1, 3, 5, 6]);
        assert_eq!(prune(&candidates, &saliency, 0), vec![5]);
    }
}
