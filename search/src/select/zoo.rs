//! Every head trained at the kept positions, its outputs cached on the selecting and certifying
//! frames, and the structures built from them: what every configuration is scored from
//! without running the backbone.

use anyhow::Result;
use earlyexit::cost::CostTable;
use earlyexit::reuse::ReuseRule;
use earlyexit::rule::{Metric, PerMetric};
use earlyexit_graph::CutPoint;

use super::certificate::Certificate;
use super::rules::{Rule, level_thresholds};
use crate::certify::Evidence;
use crate::crossfit::CrossFitted;
use crate::gating::{self, Gated};
use crate::heads::{HeadKind, TrainedHead};
use crate::nas::{self, Space};
use crate::outputs::ExitOutputs;
use crate::problem::Problem;
use crate::reuse::Replay;
use crate::simulate::{Reference, Simulation, simulate};
use crate::table::FeatureTable;

/// A trained head at a candidate position, with its outputs on the selecting and certifying
/// frames.
pub struct HeadOption {
    /// The head the bundle ships, and its folds' heads, whose outputs are `select`.
    pub fitted: CrossFitted,
    /// MACs, or measured nanoseconds with `--cost latency`.
    pub cost: u64,
    pub select: ExitOutputs,
    pub certify: ExitOutputs,
    /// Per metric the search may choose: the threshold at each of
    /// [`LEVELS`](super::rules::LEVELS).
    thresholds: PerMetric<Option<Vec<f64>>>,
}

impl HeadOption {
    /// The exit's threshold under `metric` at threshold level `level`, when the search may
    /// choose the metric.
    pub fn threshold(&self, metric: Metric, level: usize) -> Option<f64> {
        self.thresholds[metric].as_ref()?.get(level).copied()
    }

    /// The head the bundle ships, trained on every training frame.
    pub fn head(&self) -> &TrainedHead {
        &self.fitted.head
    }

    /// A head with its cost and scores, not yet run on the held-out frames
    /// ([`HeadTable::certify`] does).
    pub fn new(fitted: CrossFitted, cost: u64, scores: HeadScores) -> HeadOption {
        HeadOption {
            fitted,
            cost,
            select: scores.select,
            certify: ExitOutputs::default(),
            thresholds: scores.thresholds,
        }
    }
}

/// What a trained head says of the selecting frames, and its thresholds: a [`HeadOption`] but
/// its cost and its outputs on the held-out frames.
pub struct HeadScores {
    select: ExitOutputs,
    thresholds: PerMetric<Option<Vec<f64>>>,
}

impl HeadScores {
    /// `head`, cross-fitted at candidate `candidate`, scored out of fold on the selecting
    /// frames, with its thresholds fitted on them (`reference`) for every metric the search
    /// may choose (those its format names).
    pub fn of(
        problem: &Problem,
        candidate: usize,
        head: &CrossFitted,
        reference: &Reference,
    ) -> Result<HeadScores> {
        let frames = &problem.frames;
        let select = head.out_of_fold(&frames.train, &frames.folds, candidate)?;
        Ok(HeadScores {
            thresholds: PerMetric::try_from_fn(|metric| {
                let searched = problem.settings.format.metrics().contains(&metric);
                searched
                    .then(|| {
                        level_thresholds(
                            metric,
                            &select,
                            reference,
                            &problem.goal,
                            problem.settings.seed,
                        )
                    })
                    .transpose()
            })?,
            select,
        })
    }
}

/// The heads trained at each candidate position, by head kind.
pub struct HeadTable {
    /// `[candidate][kind.index()]`.
    rows: Vec<Vec<Option<HeadOption>>>,
}

impl HeadTable {
    /// A table with no head yet at any of `candidates` positions.
    pub fn new(candidates: usize) -> HeadTable {
        HeadTable {
            rows: (0..candidates)
                .map(|_| HeadKind::ALL.iter().map(|_| None).collect())
                .collect(),
        }
    }

    pub fn get(&self, candidate: usize, kind: HeadKind) -> Option<&HeadOption> {
        self.rows.get(candidate)?.get(kind.index())?.as_ref()
    }

    pub fn set(&mut self, candidate: usize, kind: HeadKind, option: HeadOption) {
        self.rows[candidate][kind.index()] = Some(option);
    }

    /// Runs every head on the held-out frames `held`, which hold the features each reads.
    pub fn certify(&mut self, held: &FeatureTable) -> Result<()> {
        for (candidate, row) in self.rows.iter_mut().enumerate() {
            for option in row.iter_mut().flatten() {
                option.certify = option.fitted.head.outputs(held, candidate)?;
            }
        }
        Ok(())
    }

    /// The heads at `candidate`, in [`HeadKind::ALL`] order.
    pub fn at(&self, candidate: usize) -> impl Iterator<Item = (HeadKind, Option<&HeadOption>)> {
        HeadKind::ALL
            .into_iter()
            .map(move |kind| (kind, self.get(candidate, kind)))
    }
}

/// One exit of a structure: where, which head, and at which threshold level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedExit {
    pub candidate: usize,
    pub kind: HeadKind,
    pub level: usize,
}

/// A family of structures: the positions (candidate indices) and head kinds a genome chooses
/// from, and the exit rules tried.
pub struct Family {
    pub positions: Vec<usize>,
    pub kinds: Vec<HeadKind>,
    pub rules: Vec<Rule>,
}

impl Family {
    /// Genes choose a head per position; the level is searched per structure.
    pub fn space(&self) -> Space {
        Space {
            positions: self.positions.len(),
            heads: self.kinds.len(),
            thresholds: 1,
        }
    }
}

/// Where a structure's exits sit and how they decide.
#[derive(Clone)]
pub struct Structure {
    pub rule: Rule,
    pub placed: Vec<PlacedExit>,
    /// Each exit's threshold under the rule's metric.
    pub thresholds: Vec<f64>,
    /// With `--format 2`: the exits' gates (a patient rule's, or learned ones) and their one
    /// threshold, which decide instead of the thresholds.
    pub gated: Option<Gated>,
    /// With `--format 3`: the stream rule, which frames meet before any exit.
    pub reuse: Option<ReuseRule>,
}

impl Structure {
    /// The backbone alone: no exit, no stream rule.
    pub fn backbone() -> Structure {
        Structure {
            rule: Rule::PLAIN,
            placed: Vec::new(),
            thresholds: Vec::new(),
            gated: None,
            reuse: None,
        }
    }
}

/// A structure and what the selecting frames show of it: a step of a certification ladder.
#[derive(Clone)]
pub struct Step {
    pub structure: Structure,
    pub select: Simulation,
}

impl Step {
    /// The step run on the certifying frames, and what they show of it with `confidence`.
    pub fn certified(self, zoo: &Zoo, confidence: f64) -> Option<Found> {
        let certify = zoo.run(&self.structure, true)?;
        Some(Found {
            certificate: zoo.certificate(&certify, confidence),
            structure: self.structure,
            select: self.select,
            certify,
        })
    }
}

/// What a search of one family found and certified.
#[derive(Clone)]
pub struct Found {
    pub structure: Structure,
    pub certificate: Certificate,
    pub select: Simulation,
    pub certify: Simulation,
}

/// Selection ranks thousands of configurations on the same frames, so a configuration is
/// feasible only when an upper bound on its mean penalty there, at this one-sided confidence
/// (about one standard error), is within the goal. The certificate is what the promise rests on.
const SELECT_CONFIDENCE: f64 = 0.84;

/// Everything scored once, that every structure is built from.
pub struct Zoo<'p> {
    pub problem: &'p Problem<'p>,
    pub heads: HeadTable,
    pub select: Reference<'p>,
    pub certify: Reference<'p>,
    /// The independent scenes the certifying frames are worth (see
    /// [`effective_scenes`](crate::certify::effective_scenes)).
    pub certify_scenes: f64,
}

impl Zoo<'_> {
    pub fn option(&self, placed: &PlacedExit) -> Option<&HeadOption> {
        self.heads.get(placed.candidate, placed.kind)
    }

    /// The exits of a structure's genome at threshold `level`.
    pub fn placed(&self, family: &Family, genome: &[u16], level: usize) -> Option<Vec<PlacedExit>> {
        nas::decode(&family.space(), genome)
            .into_iter()
            .map(|g| {
                let placed = PlacedExit {
                    candidate: family.positions[g.position],
                    kind: family.kinds[g.head],
                    level,
                };
                self.option(&placed).map(|_| placed)
            })
            .collect()
    }

    pub fn costs(&self, placed: &[PlacedExit]) -> Option<CostTable> {
        let cuts: Vec<&CutPoint> = placed
            .iter()
            .map(|p| &self.problem.candidates[p.candidate])
            .collect();
        let mut heads: Vec<u64> = placed
            .iter()
            .map(|p| self.option(p).map_or(0, |o| o.cost))
            .collect();
        heads.push(0);
        self.problem.cost_table(&cuts, heads).ok()
    }

    pub fn simulate(
        &self,
        rule: Rule,
        placed: &[PlacedExit],
        certifying: bool,
    ) -> Option<Simulation> {
        self.simulate_costed(rule, placed, certifying, &self.costs(placed)?)
    }

    /// [`Zoo::simulate`] with the structure's cost table already built: the levels of one
    /// structure share it.
    pub fn simulate_costed(
        &self,
        rule: Rule,
        placed: &[PlacedExit],
        certifying: bool,
        costs: &CostTable,
    ) -> Option<Simulation> {
        let thresholds = placed
            .iter()
            .map(|p| self.option(p)?.threshold(rule.metric, p.level))
            .collect::<Option<Vec<f64>>>()?;
        let structure = Structure {
            rule,
            placed: placed.to_vec(),
            thresholds,
            gated: None,
            reuse: None,
        };
        self.run_costed(&structure, certifying, costs, None)
    }

    /// A structure on the selecting or the certifying frames, decided by its learned gates
    /// when it has them, else by its rule at its thresholds; the stream rule, when it has
    /// one, meets every frame first.
    pub fn run(&self, s: &Structure, certifying: bool) -> Option<Simulation> {
        let replay = s.reuse.as_ref().map(|r| self.replay(r, certifying));
        self.run_replayed(s, certifying, replay.as_ref())
    }

    /// The stream rule `rule` replayed over the selecting or the certifying frames.
    pub fn replay(&self, rule: &ReuseRule, certifying: bool) -> Replay {
        let frames = &self.problem.frames;
        if certifying {
            Replay::new(rule, &frames.held, &frames.held_ranges)
        } else {
            Replay::new(rule, &frames.train, &frames.train_ranges)
        }
    }

    /// [`Zoo::run`] with its stream rule's `replay` (of `s.reuse`) already made: the
    /// structures that share a rule share it.
    pub fn run_replayed(
        &self,
        s: &Structure,
        certifying: bool,
        replay: Option<&Replay>,
    ) -> Option<Simulation> {
        let mut costs = self.costs(&s.placed)?;
        if let Some(r) = &s.reuse {
            costs = costs.with_detector(self.problem.detector_cost(r));
        }
        self.run_costed(s, certifying, &costs, replay)
    }

    fn run_costed(
        &self,
        s: &Structure,
        certifying: bool,
        costs: &CostTable,
        replay: Option<&Replay>,
    ) -> Option<Simulation> {
        let outputs = s
            .placed
            .iter()
            .map(|p| {
                let o = self.option(p)?;
                Some(if certifying { &o.certify } else { &o.select })
            })
            .collect::<Option<Vec<_>>>()?;
        let frames = &self.problem.frames;
        let (reference, streams) = if certifying {
            (&self.certify, &frames.held_ranges)
        } else {
            (&self.select, &frames.train_ranges)
        };
        Some(match &s.gated {
            Some(g) => gating::simulate(g, &outputs, reference, streams, costs, replay),
            None => simulate(
                s.rule.metric,
                &s.thresholds,
                &outputs,
                reference,
                costs,
                s.rule.patience,
                replay,
            ),
        })
    }

    /// The selection objective: an upper bound on the mean penalty on the selecting frames
    /// (plus any agreement shortfall), to compare against the goal's limit.
    pub fn error(&self, sim: &Simulation) -> f64 {
        let goal = &self.problem.goal;
        let shortfall = goal
            .min_agreement
            .map_or(0.0, |a| (a - sim.agreement()).max(0.0));
        Evidence::new(sim.penalties(goal, &self.select), f64::INFINITY)
            .mean_upper_bound(SELECT_CONFIDENCE)
            + shortfall
    }

    /// What the certifying frames show of a structure, each bound holding with `confidence`.
    pub fn certificate(&self, cert: &Simulation, confidence: f64) -> Certificate {
        Certificate::of(
            cert,
            &self.problem.goal,
            &self.certify,
            self.certify_scenes,
            confidence,
        )
    }

    /// The thresholds of `placed` exits under `metric`, at their levels.
    pub fn thresholds(&self, placed: &[PlacedExit], metric: Metric) -> Vec<f64> {
        placed
            .iter()
            .filter_map(|p| self.option(p)?.threshold(metric, p.level))
            .collect()
    }
}
