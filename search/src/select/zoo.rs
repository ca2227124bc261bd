//! Every head trained at the kept positions, its outputs cached on the selecting and certifying
//! frames, and the structures built from them: what every configuration is scored from
//! without running the backbone.

use std::ops::Range;

use anyhow::Result;
use earlyexit::bundle::Measure;
use earlyexit::cost::CostTable;
use earlyexit::graph::CutPoint;

use super::rules::{METRICS, level_thresholds, rule_of};
use crate::calibrate::{ExitScores, Patience, Reference, Simulation, simulate};
use crate::certify;
use crate::gating::{self, Gated};
use crate::heads::{HeadKind, TrainedHead};
use crate::nas::{self, Space};
use crate::search::{Problem, score};

/// A trained head at a candidate position, with its outputs on the selecting and certifying
/// frames under every metric.
pub(super) struct HeadOption {
    pub(super) head: TrainedHead,
    /// MACs, or measured nanoseconds with `--cost latency`.
    pub(super) cost: u64,
    pub(super) select: Vec<ExitScores>,
    pub(super) certify: Vec<ExitScores>,
    /// Per metric: the threshold at each of [`LEVELS`](super::rules::LEVELS).
    pub(super) thresholds: Vec<Vec<f64>>,
}

/// `[candidate][kind]`: the heads trained at each candidate position, by [`kind_index`].
pub(super) type Options = Vec<Vec<Option<HeadOption>>>;

/// Everything scored once, that every structure is built from.
pub(super) struct Zoo<'p> {
    pub(super) problem: &'p Problem<'p>,
    pub(super) options: Options,
    pub(super) select: Reference<'p>,
    pub(super) certify: Reference<'p>,
    /// Each footage's frames within the selecting and the certifying frames.
    pub(super) select_streams: Vec<Range<usize>>,
    pub(super) certify_streams: Vec<Range<usize>>,
    /// All held-out frames, in time order: what `evaluate` on the held-out footage sees.
    pub(super) held: Reference<'p>,
}

/// A family of structures: the positions (candidate indices) and head kinds a genome chooses
/// from, and the exit rules tried (see [`rule_of`]).
pub(super) struct Family {
    pub(super) positions: Vec<usize>,
    pub(super) kinds: Vec<HeadKind>,
    pub(super) rules: Vec<usize>,
}

impl Family {
    /// Genes choose a head per position; the level is searched per structure.
    pub(super) fn space(&self) -> Space {
        Space {
            positions: self.positions.len(),
            heads: self.kinds.len(),
            thresholds: 1,
        }
    }
}

/// One exit of a structure: candidate, head kind, threshold level.
pub(super) type Placed = (usize, usize, usize);

/// Selection ranks thousands of configurations on the same frames, so a configuration is
/// feasible only when an upper bound on its mean penalty there, at this one-sided confidence
/// (about one standard error), is within the goal. The certificate is what the promise rests on.
const SELECT_CONFIDENCE: f64 = 0.84;

impl Zoo<'_> {
    fn option(&self, candidate: usize, kind: HeadKind) -> Option<&HeadOption> {
        self.options[candidate][kind_index(kind)].as_ref()
    }

    /// The exits of a structure's genome at threshold `level`.
    pub(super) fn placed(
        &self,
        family: &Family,
        genome: &[u16],
        level: usize,
    ) -> Option<Vec<Placed>> {
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

    pub(super) fn costs(&self, placed: &[Placed]) -> Option<CostTable> {
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

    pub(super) fn simulate(
        &self,
        rule: usize,
        placed: &[Placed],
        certifying: bool,
    ) -> Option<Simulation> {
        self.simulate_costed(rule, placed, certifying, &self.costs(placed)?)
    }

    /// [`Zoo::simulate`] with the structure's cost table already built: the levels of one
    /// structure share it.
    pub(super) fn simulate_costed(
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
    pub(super) fn simulate_held(&self, f: &Found) -> Option<Simulation> {
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
    pub(super) fn error(&self, sim: &Simulation) -> f64 {
        let goal = &self.problem.goal;
        let shortfall = goal
            .min_agreement
            .map_or(0.0, |a| (a - sim.agreement()).max(0.0));
        certify::mean_upper_bound(&sim.penalties(goal, &self.select), SELECT_CONFIDENCE) + shortfall
    }

    /// What the certifying frames show of a structure, each bound holding with `confidence`.
    pub(super) fn certificate(&self, cert: &Simulation, confidence: f64) -> Certificate {
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
        let refuted = match goal.max_loss {
            Some(max) => certify::mean_lower_bound(&penalties, confidence) > max,
            None => certify::rate_upper_bound(&failures, confidence) < goal.target,
        };
        Certificate {
            bound,
            loss_bound,
            certified,
            refuted,
            effective: certify::effective_samples_of(&penalties),
        }
    }
}

pub(super) fn kind_index(kind: HeadKind) -> usize {
    HeadKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// What the certifying frames show of a structure.
pub(super) struct Certificate {
    /// Lower bound on the promised rate (agreement, or accuracy with ground truth).
    pub(super) bound: f64,
    /// Under a loss goal: upper bound on the accuracy loss against the backbone.
    pub(super) loss_bound: Option<f64>,
    pub(super) certified: bool,
    /// The certifying frames show, with the same confidence, that the target is missed: what
    /// the selecting frames showed did not carry over (the footage changed, or the choice fits
    /// too few frames), which is more than bad luck.
    pub(super) refuted: bool,
    pub(super) effective: f64,
}

impl Certificate {
    /// Higher is better: the least loss, or the highest rate.
    fn merit(&self) -> f64 {
        self.loss_bound.map_or(self.bound, |l| -l)
    }

    /// Between configurations none of which certifies: whether this one is better kept than
    /// `kept`. A refuted one never is; else the better bound wins.
    pub(super) fn better_uncertified_than(&self, kept: Option<&Certificate>) -> bool {
        !self.refuted && kept.is_none_or(|k| self.merit() > k.merit())
    }
}

/// What a search of one family found and certified.
pub(super) struct Found {
    /// The exit rule (see [`rule_of`]); a metric's index once a patient rule is a gate.
    pub(super) metric: usize,
    pub(super) placed: Vec<Placed>,
    /// With `--format 2`: the exits' learned gates and their one threshold.
    pub(super) gated: Option<Gated>,
    pub(super) certificate: Certificate,
    pub(super) select: Simulation,
    pub(super) certify: Simulation,
    /// Every configuration scored on the selecting frames: (mean cost, error).
    pub(super) scored: Vec<[f64; 2]>,
}

pub(super) fn head_option(
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

/// Heads an ensemble averages: the trained heads at one position that agree most with the
/// backbone on the selecting frames.
const ENSEMBLE_MEMBERS: usize = 3;

/// The ensemble of the best [`ENSEMBLE_MEMBERS`] heads trained at a position.
pub(super) fn ensemble_of(trained: &[Option<HeadOption>], teacher: &[u32]) -> TrainedHead {
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

pub(super) fn agreement(s: &ExitScores, teacher: &[u32]) -> f64 {
    crate::calibrate::share_alike(&s.class, teacher)
}

/// The share of frames an exit could let leave (most confident first) with at least
/// `precision` of them right.
pub(super) fn coverage_at(
    s: &ExitScores,
    reference: &Reference,
    measure: Measure,
    precision: f64,
) -> f64 {
    let mut order: Vec<usize> = (0..s.score.len()).collect();
    order.sort_by(|&a, &b| s.score[b].total_cmp(&s.score[a]));
    let right = |i: usize| reference.right(measure, i, s.class[i]);
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

fn subset(s: &ExitScores, idx: &[usize]) -> ExitScores {
    ExitScores {
        class: idx.iter().map(|&i| s.class[i]).collect(),
        score: idx.iter().map(|&i| s.score[i]).collect(),
    }
}

/// The first half in time of each footage's held-out frames selects, the second certifies.
pub(super) fn split(ranges: &[Range<usize>]) -> (Vec<usize>, Vec<usize>) {
    let (mut select, mut certify) = (Vec::new(), Vec::new());
    for r in ranges {
        let mid = r.start + (r.end - r.start) / 2;
        select.extend(r.start..mid);
        certify.extend(mid..r.end);
    }
    (select, certify)
}

/// Each footage's part of the selecting or certifying frames, as ranges of those frames.
pub(super) fn streams(ranges: &[Range<usize>], certifying: bool) -> Vec<Range<usize>> {
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

/// The `keep` most salient candidates, in execution order. Of candidates with no MACs between
/// them (a block's Add and its ReLU), only the last may be kept: it costs the same, and a cut
/// there leaves ONNX Runtime's fused Conv+Add+ReLU whole instead of running the Add and the
/// ReLU alone after the cut.
pub(super) fn prune(candidates: &[CutPoint], saliency: &[(f64, f64)], keep: usize) -> Vec<usize> {
    let last_of_chain = |i: usize| {
        candidates
            .get(i + 1)
            .is_none_or(|next| next.macs_before != candidates[i].macs_before)
    };
    let mut kept: Vec<usize> = (0..saliency.len()).filter(|&i| last_of_chain(i)).collect();
    kept.sort_by(|&a, &b| saliency[b].0.total_cmp(&saliency[a].0).then(a.cmp(&b)));
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
        let saliency = [0.9, 0.1, 0.8, 0.3, 0.7, 0.5, 0.2].map(|s| (s, 0.0));
        assert_eq!(prune(&candidates, &saliency, 2), vec![3, 5]);
        assert_eq!(prune(&candidates, &saliency, 3), vec![3, 5, 6]);
        assert_eq!(prune(&candidates, &saliency, 10), vec![1, 3, 5, 6]);
        assert_eq!(prune(&candidates, &saliency, 0), vec![5]);
    }
}
