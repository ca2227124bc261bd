//! Where exits go. The first version's rule: `n` exits spread evenly over the backbone's MACs.

use anyhow::{Context, Result, bail};
use earlyexit::rule::Metric;
use earlyexit_graph::CutPoint;

use crate::calibrate;
use crate::heads::{HeadKind, Training};
use crate::outputs::ExitOutputs;
use crate::problem::{Choice, ChosenExit, Problem};
use crate::simulate::Reference;
use crate::table::Columns;

/// Cut points worth an exit: image-like or vector tensors, with some work before them and
/// enough left after them to save.
pub fn candidates(cuts: &[CutPoint], total_macs: u64) -> Vec<&CutPoint> {
    cuts.iter()
        .filter(|c| matches!(c.shape.len(), 2 | 4))
        .filter(|c| c.macs_before > 0 && (c.macs_before as f64) < 0.9 * total_macs as f64)
        .collect()
}

/// `n` candidates nearest to 1/(n+1), 2/(n+1), … of the backbone's MACs, in execution order.
pub fn evenly_by_macs<'a>(
    candidates: &[&'a CutPoint],
    total_macs: u64,
    n: usize,
) -> Result<Vec<&'a CutPoint>> {
    if n == 0 {
        bail!("--exits must be at least 1");
    }
    if candidates.len() < n {
        bail!(
            "--exits {n}: the backbone has only {} cut points worth an exit",
            candidates.len()
        );
    }
    let mut chosen: Vec<&CutPoint> = Vec::with_capacity(n);
    for k in 1..=n {
        let target = total_macs as f64 * k as f64 / (n + 1) as f64;
        let nearest = candidates
            .iter()
            .filter(|c| !chosen.iter().any(|d| d.tensor == c.tensor))
            .min_by(|a, b| {
                let da = (a.macs_before as f64 - target).abs();
                let db = (b.macs_before as f64 - target).abs();
                da.total_cmp(&db)
            });
        if let Some(c) = nearest {
            chosen.push(c);
        }
    }
    chosen.sort_by_key(|c| c.macs_before);
    Ok(chosen)
}

/// [`evenly_by_macs`] of `candidates`, as indices into them.
pub fn evenly_spaced(candidates: &[CutPoint], total_macs: u64, n: usize) -> Result<Vec<usize>> {
    evenly_by_macs(&candidates.iter().collect::<Vec<_>>(), total_macs, n)?
        .into_iter()
        .map(|c| {
            candidates
                .iter()
                .position(|d| d.tensor == c.tensor)
                .context("a chosen cut is a candidate")
        })
        .collect()
}

/// The feature columns [`choose_even`] reads on held-out frames, for candidates of feature
/// sizes `dims`: its heads' at its exits.
pub fn held_columns(
    candidates: &[CutPoint],
    total_macs: u64,
    exits: usize,
    dims: &[Vec<usize>],
) -> Result<Columns> {
    Ok(exit_columns(
        dims,
        &evenly_spaced(candidates, total_macs, exits)?,
    ))
}

/// The columns GAP → Linear heads read at `positions`.
fn exit_columns(dims: &[Vec<usize>], positions: &[usize]) -> Columns {
    let pool = HeadKind::LinearGap.pool_index();
    Columns::matching(dims, |cut, p| p == pool && positions.contains(&cut))
}

/// The first version's strategy, kept as a baseline: `--exits N` GAP → Linear heads evenly
/// spaced by MACs, max-prob thresholds calibrated on all held-out frames.
pub fn choose_even(problem: &Problem) -> Result<Choice> {
    let settings = &problem.settings;
    let positions = evenly_spaced(&problem.candidates, problem.total_macs, settings.exits)?;
    let chosen: Vec<&CutPoint> = positions.iter().map(|&i| &problem.candidates[i]).collect();
    let metric = Metric::MaxProb;
    let mut exits = Vec::new();
    let mut heads = Vec::new();
    for (k, (&index, cut)) in positions.iter().zip(&chosen).enumerate() {
        let bar = crate::progress::bar(&format!("training head {}/{}", k + 1, chosen.len()), None);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let training = Training {
            seed: problem.settings.seed.wrapping_add(k as u64),
            ..Training::default()
        };
        let head = problem.train_head(index, HeadKind::LinearGap, false, &training)?;
        bar.finish_and_clear();
        heads.push(problem.head_cost(index, &head)?);
        exits.push(ChosenExit {
            cut: (*cut).clone(),
            head,
            threshold: 0.0,
        });
    }
    let features = problem
        .frames
        .held_features(&exit_columns(&problem.frames.held.dims, &positions))?;
    let outputs = exits
        .iter()
        .zip(&positions)
        .map(|(exit, &index)| exit.head.outputs(&features, index))
        .collect::<Result<Vec<_>>>()?;
    drop(features);
    heads.push(0);
    let costs = problem.cost_table(&chosen, heads)?;
    let held = &problem.frames.held;
    let labels = held.all_labels();
    let reference = Reference {
        teacher: &held.teacher,
        labels: labels.as_deref(),
    };
    let outputs: Vec<&ExitOutputs> = outputs.iter().collect();
    let (thresholds, sim) =
        calibrate::calibrate(metric, &outputs, &reference, &costs, &problem.goal);
    for (exit, t) in exits.iter_mut().zip(thresholds) {
        exit.threshold = t;
    }
    Ok(Choice {
        gates: None,
        exits,
        metric,
        promise: None,
        reuse: None,
        held: sim,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cut point of a made-up backbone.
    pub(crate) fn cut(name: &str, macs_before: u64) -> CutPoint {
        CutPoint {
            tensor: name.into(),
            shape: vec![1, 8, 4, 4],
            macs_before,
        }
    }

    #[test]
    fn spreads_exits_evenly_and_skips_the_tail() {
        let cuts: Vec<CutPoint> = (1..=10).map(|i| cut(&format!("t{i}"), i * 10)).collect();
        let c = candidates(&cuts, 100);
        assert_eq!(c.len(), 8, "90 and 100 leave nothing to save");
        let chosen = evenly_by_macs(&c, 100, 2).unwrap();
        let names: Vec<&str> = chosen.iter().map(|c| c.tensor.as_str()).collect();
        assert_eq!(names, ["t3", "t7"]);
        assert!(evenly_by_macs(&c, 100, 9).is_err());
    }
}
