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
use crate::table::Columns;

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
/// `select_ref` describes), then on the held-out frames, whose features are read only then,
/// and only those [`held_columns`] names.
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
    let held = &problem.frames.held;
    heads.certify(
        &problem
            .frames
            .held_features(&held_columns(&held.dims, &kept))?,
    )?;
    Ok(Trained {
        saliency,
        kept,
        heads,
    })
}

/// `head`, trained at `candidate`, scored on the selecting frames, and costed.
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

/// The feature columns the search reads on held-out frames, for candidates of feature sizes
/// `dims`: the probes' at every candidate (the evenly spaced baseline's exits are probes), and
/// every head's at the `kept` positions.
pub fn held_columns(dims: &[Vec<usize>], kept: &[usize]) -> Columns {
    let probe = HeadKind::LinearGap.pool_index();
    Columns::matching(dims, |cut, pool| pool == probe || kept.contains(&cut))
}

/// The most [`held_columns`] can hold, before saliency keeps `keep` positions: as if the
/// positions [`prune`] may keep with the most features were kept.
pub fn held_columns_bound(candidates: &[CutPoint], dims: &[Vec<usize>], keep: usize) -> Columns {
    let values = |i: usize| -> usize { dims.get(i).map_or(0, |d| d.iter().sum()) };
    let mut largest = chain_ends(candidates);
    largest.sort_by_key(|&i| std::cmp::Reverse(values(i)));
    largest.truncate(keep.max(1));
    held_columns(dims, &largest)
}

/// The candidates that may be kept, in execution order. Of candidates with no MACs between
/// them (a block's Add and its ReLU), only the last: it costs the same, and a cut there leaves
/// ONNX Runtime's fused Conv+Add+ReLU whole instead of running the Add and the ReLU alone after
/// the cut.
fn chain_ends(candidates: &[CutPoint]) -> Vec<usize> {
    let last_of_chain = |i: usize| {
        candidates
            .get(i + 1)
            .is_none_or(|next| next.macs_before != candidates[i].macs_before)
    };
    (0..candidates.len())
        .filter(|&i| last_of_chain(i))
        .collect()
}

/// The `keep` most salient of the [`chain_ends`], in execution order.
fn prune(candidates: &[CutPoint], saliency: &[Saliency], keep: usize) -> Vec<usize> {
    let mut kept = chain_ends(candidates);
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

    /// Held-out frames are sized before saliency: whichever positions pruning keeps, the
    /// columns read there are within the bound.
    #[test]
    fn the_held_out_bound_covers_every_pruning() {
        let candidates: Vec<CutPoint> = (0..12)
            .map(|i| cut(&format!("c{i}"), 10 * (i as u64 / 2 + 1)))
            .collect();
        let dims: Vec<Vec<usize>> = (0..12).map(|i| vec![8 + i, 4 * (12 - i)]).collect();
        for keep in [1, 3, 6] {
            let bound = held_columns_bound(&candidates, &dims, keep).values(&dims);
            let mut tightest = false;
            for seed in 0..200u64 {
                let saliency: Vec<Saliency> = (0..12u64)
                    .map(|i| Saliency {
                        score: ((i + 1) * (seed + 7) % 13) as f64,
                        agreement: 0.0,
                    })
                    .collect();
                let kept = prune(&candidates, &saliency, keep);
                let values = held_columns(&dims, &kept).values(&dims);
                assert!(values <= bound, "{kept:?}: {values} > {bound}");
                tightest |= values == bound;
            }
            assert!(tightest, "some pruning reaches the bound of {keep}");
        }
        // The probes' columns at every candidate, the rest only at kept positions.
        let columns = held_columns(&dims, &[3]);
        assert!(columns.has(0, 0) && columns.has(3, 1) && !columns.has(0, 1));
    }
}
