//! The search's domain: what it is asked ([`Settings`], [`Goal`]), what it knows before
//! choosing ([`Problem`]: the backbone, its candidate cuts, the frames split for their roles,
//! and how structures are costed), and what a strategy chooses ([`Choice`]). Plain data and
//! the small rules that go with it; no command line and no report text.

use std::ops::Range;

use anyhow::{Context, Result, bail};
use earlyexit::bundle::{Format, Promise};
use earlyexit::cost::CostTable;
use earlyexit::gate::{Gate, GateWeights};
use earlyexit::input::InputSpec;
use earlyexit::reuse::ReuseRule;
use earlyexit::rule::Metric;
use earlyexit_graph::heads::build_head;
use earlyexit_graph::{CutPoint, Graph};

use crate::crossfit::{CrossFitted, FOLDS, Folds, Timeline, gather};
use crate::goal::Goal;
use crate::heads::{HeadKind, Targets, TrainedHead, Training, train};
use crate::latency::Latency;
use crate::shard::Rows;
use crate::simulate::{Simulation, share_alike};
use crate::table::{Columns, FeatureTable};

/// The share of each footage held out, at its end, when no held-out footage is given.
pub const HOLDOUT_SHARE: f64 = 0.2;

/// Consecutive frames in a run when footage is read in runs (beyond `--feature-memory`, which
/// keeps the search under 4 GiB by default): 10 s at 25 fps, long enough for
/// the stream rule to see scenes hold and change.
pub const RUN: usize = 250;

/// The shares of frames kept in runs when all do not fit in memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub train: f64,
    pub held: f64,
}

impl Shares {
    pub const ALL: Shares = Shares {
        train: 1.0,
        held: 1.0,
    };

    /// The shares that fit `train` and `held` frames of `bytes` in `budget` bytes. Held-out
    /// frames certify, so they keep at least half the budget, or all of it that training
    /// frames leave; training frames take the rest.
    pub fn within(train: usize, held: usize, bytes: FrameBytes, budget: usize) -> Shares {
        let (train, held, budget) = (
            train.saturating_mul(bytes.train) as f64,
            held.saturating_mul(bytes.held) as f64,
            budget as f64,
        );
        if train + held <= budget {
            return Shares::ALL;
        }
        let held_share = ((budget / 2.0).max(budget - train) / held).min(1.0);
        Shares {
            train: ((budget - held * held_share) / train).min(1.0),
            held: held_share,
        }
    }

    pub fn is_all(&self) -> bool {
        *self == Shares::ALL
    }
}

/// The bytes a frame of each role takes in memory: a training frame holds every feature column,
/// a held-out frame only those the search reads on it ([`Frames::held_features`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameBytes {
    pub train: usize,
    pub held: usize,
}

/// How exits are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The first version's rule: exits spread evenly by MACs, GAP → Linear heads.
    Even,
    /// Positions, heads and exit rules searched with NSGA-II and certified.
    Nas,
}

/// What structures are compared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKind {
    /// Multiply-accumulates.
    Macs,
    /// Time measured with ONNX Runtime on this machine.
    Latency,
}

/// How the search runs: the choices a user makes, free of how they were given.
#[derive(Debug, Clone)]
pub struct Settings {
    pub strategy: Strategy,
    pub cost: CostKind,
    /// The bundle format the search may write: format 2 lets patient rules, learned gates and
    /// the metrics added after format 1 decide at exits.
    pub format: Format,
    /// Same inputs and seed, same bundle.
    pub seed: u64,
    /// Confidence of the promise.
    pub confidence: f64,
    /// With [`Strategy::Nas`]: exit structures scored at most, each at every threshold level.
    pub budget: usize,
    /// With [`Strategy::Nas`]: candidate positions kept after saliency pruning.
    pub candidates: usize,
    /// With [`Strategy::Even`]: the number of exits.
    pub exits: usize,
}

/// Frames, split for their roles.
pub struct Frames {
    /// Heads are trained on these, and with [`Strategy::Nas`] exit rules and structures are
    /// chosen on them too, from out-of-fold outputs (the selecting frames).
    pub train: FeatureTable,
    /// Each stream within `train` (a footage, or a run of one), in time order.
    pub train_ranges: Vec<Range<usize>>,
    /// The training frames' folds for cross-fitting: each footage cut in time.
    pub folds: Folds,
    /// Frames nothing is fitted on, which certify the search's choice (`--strategy even`
    /// calibrates its thresholds on them): their answers and signatures, without features,
    /// which [`Frames::held_features`] reads.
    pub held: FeatureTable,
    /// Where the held-out frames' features are.
    pub held_rows: Rows,
    /// Each footage's frames within `held`, in time order.
    pub held_ranges: Vec<Range<usize>>,
    /// Ground truth of every training frame, when all have it.
    pub train_labels: Option<Vec<u32>>,
    /// With ground truth: half the label, half the backbone's probabilities, per frame.
    pub blended: Option<Vec<f32>>,
    /// Whether neighbouring frames of a stream are neighbours in the footage: not when
    /// `--max-frames` spread the frames kept over a longer footage. The stream rule needs it.
    pub consecutive: bool,
    /// When the footage was too long for the memory allowed (`--feature-memory`): the shares
    /// of training and held-out frames kept, in runs of [`RUN`] frames.
    pub runs: Option<Shares>,
}

impl Frames {
    /// Frames from their tables: the training frames with their streams and each footage's
    /// place in time, the held-out ones with their streams.
    pub fn new(
        (train, train_ranges, train_footage): (FeatureTable, Vec<Range<usize>>, Vec<Timeline>),
        (held, held_ranges, held_rows): (FeatureTable, Vec<Range<usize>>, Rows),
        consecutive: bool,
        runs: Option<Shares>,
    ) -> Result<Frames> {
        if train.frames() == 0 || held.frames() == 0 {
            bail!(
                "too few frames: {} to train and {} held out",
                train.frames(),
                held.frames()
            );
        }
        let train_labels = train.all_labels();
        let blended = train_labels.as_ref().map(|labels| {
            let mut p: Vec<f32> = train.soft.iter().map(|v| 0.5 * v).collect();
            for (row, &l) in p.chunks_exact_mut(train.classes).zip(labels) {
                if let Some(v) = row.get_mut(l as usize) {
                    *v += 0.5;
                }
            }
            p
        });
        Ok(Frames {
            folds: Folds::in_time(&train_footage, FOLDS),
            train,
            train_ranges,
            held,
            held_ranges,
            held_rows,
            train_labels,
            blended,
            consecutive,
            runs,
        })
    }

    /// The held-out frames with the feature columns `columns`, read from their shards: only
    /// once the search knows which it reads there, so that the held-out frames take far less
    /// memory than the training frames, and more of them fit.
    pub fn held_features(&self, columns: &Columns) -> Result<FeatureTable> {
        self.held_rows.read(columns, &self.held)
    }

    /// The full backbone's accuracy on the held-out frames, when every one has ground truth.
    pub fn backbone_accuracy(&self) -> Option<f64> {
        self.held
            .all_labels()
            .map(|labels| share_alike(&labels, &self.held.teacher))
    }

    /// What heads learn: the ground truth when every training frame has it, else the
    /// backbone's answers, as classes or, when `distill`, as probabilities. With ground truth
    /// and `distill`, a blend of both: a head that also learns where the backbone hesitates
    /// agrees with it more often.
    pub fn targets(&self, distill: bool) -> Targets<'_> {
        match (&self.train_labels, &self.blended, distill) {
            (Some(_), Some(blended), true) => Targets::Soft(blended),
            (Some(labels), _, _) => Targets::Hard(labels),
            (None, _, true) => Targets::Soft(&self.train.soft),
            (None, _, false) => Targets::Hard(&self.train.teacher),
        }
    }
}

/// What the search knows before choosing.
pub struct Problem<'a> {
    pub settings: Settings,
    pub graph: &'a Graph,
    /// What stage 0 takes, which the stream rule's signatures read.
    pub input: InputSpec,
    pub goal: Goal,
    pub candidates: Vec<CutPoint>,
    pub total_macs: u64,
    pub classes: usize,
    pub frames: Frames,
    /// Measured times with [`CostKind::Latency`]; structures are costed by MACs without.
    pub latency: Option<Latency>,
}

impl Problem<'_> {
    /// The cost table of a structure cut at `cuts` (candidates, in order) with exit heads of
    /// cost `heads` (one per stage, 0 for the last): MACs, or measured nanoseconds against the
    /// uncut backbone's.
    pub fn cost_table(&self, cuts: &[&CutPoint], heads: Vec<u64>) -> Result<CostTable> {
        match &self.latency {
            Some(l) => CostTable::with_backbone(l.segments(cuts)?, heads, l.backbone())
                .context("the backbone took no measurable time"),
            None => CostTable::new(self.segment_macs(cuts), heads)
                .context("the backbone counts no MACs, so cost cannot be measured"),
        }
    }

    /// The cost of `head` trained at candidate `candidate`, in the unit of [`Self::cost_table`].
    pub fn head_cost(&self, candidate: usize, head: &TrainedHead) -> Result<u64> {
        match &self.latency {
            Some(l) => l.head(candidate, head),
            None => self.head_macs(&self.candidates[candidate], head),
        }
    }

    /// The share of the backbone's cost spent before candidate `candidate`.
    pub fn share_before(&self, candidate: usize) -> f64 {
        match &self.latency {
            Some(l) => l.before(candidate) as f64 / l.backbone() as f64,
            None => self.candidates[candidate].macs_before as f64 / self.total_macs as f64,
        }
    }

    /// The share of the backbone's MACs computed before candidate `candidate`.
    pub fn macs_share_before(&self, candidate: usize) -> f64 {
        self.candidates[candidate].macs_before as f64 / self.total_macs as f64
    }

    /// Trains a head of `kind` on candidate `cut` (an index into the candidates), on soft
    /// targets when `distill` and there is no ground truth.
    pub fn train_head(
        &self,
        cut: usize,
        kind: HeadKind,
        distill: bool,
        training: &Training,
    ) -> Result<TrainedHead> {
        let (x, d) = self.frames.train.column(cut, kind.pool_index());
        let targets = self.frames.targets(distill);
        train(kind, x, d, targets, self.classes, training)
    }

    /// [`Self::train_head`] cross-fitted over the training frames' folds: a head per fold, on
    /// the other folds, and one on every frame, which keeps `training`'s seed.
    pub fn cross_fit_head(
        &self,
        cut: usize,
        kind: HeadKind,
        distill: bool,
        training: &Training,
    ) -> Result<CrossFitted> {
        let (x, d) = self.frames.train.column(cut, kind.pool_index());
        let targets = self.frames.targets(distill);
        let memory = training.memory(kind, self.frames.train.frames(), d, self.classes);
        CrossFitted::train(&self.frames.folds, memory, |rows, k| {
            // The golden ratio's bits spread the folds' seeds apart.
            let training = Training {
                seed: training.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ..training.clone()
            };
            let Some(rows) = rows else {
                return train(kind, x, d, targets, self.classes, &training);
            };
            let x = gather(x, d, rows);
            match targets {
                Targets::Hard(y) => {
                    let y = gather(y, 1, rows);
                    train(kind, &x, d, Targets::Hard(&y), self.classes, &training)
                }
                Targets::Soft(p) => {
                    let p = gather(p, self.classes, rows);
                    train(kind, &x, d, Targets::Soft(&p), self.classes, &training)
                }
            }
        })
    }

    /// Whether gates (patient rules, learned gates) may decide at exits: format 2.
    pub fn gates(&self) -> bool {
        self.settings.format != Format::V1
    }

    /// Whether the search may try the stream rule: format 3, on frames that are consecutive.
    pub fn streams(&self) -> bool {
        self.settings.format >= Format::V3 && self.frames.consecutive
    }

    /// The cost of the stream rule's detector per frame, in the unit of
    /// [`Self::cost_table`]: its MACs, or with measured times, its MACs' share of the
    /// backbone's time (a sum over the input is memory-bound work like the backbone's
    /// first layers).
    pub fn detector_cost(&self, rule: &ReuseRule) -> u64 {
        let macs = rule.macs(&self.input);
        match &self.latency {
            Some(l) => {
                (macs as f64 / self.total_macs.max(1) as f64 * l.backbone() as f64).ceil() as u64
            }
            None => macs,
        }
    }

    /// Whether heads learn the backbone's probabilities (the exit search) or its classes.
    pub fn distills(&self) -> bool {
        self.settings.strategy == Strategy::Nas
    }

    /// The MACs of a trained head placed at `cut`.
    fn head_macs(&self, cut: &CutPoint, head: &TrainedHead) -> Result<u64> {
        Ok(build_head(&head.spec(), &cut.shape, self.classes, self.graph.opset())?.macs)
    }

    /// MACs of each segment when the backbone is cut at `cuts` (in order).
    fn segment_macs(&self, cuts: &[&CutPoint]) -> Vec<u64> {
        let mut bounds: Vec<u64> = cuts.iter().map(|c| c.macs_before).collect();
        bounds.push(self.total_macs);
        let mut previous = 0;
        bounds
            .into_iter()
            .map(|b| {
                let m = b - previous;
                previous = b;
                m
            })
            .collect()
    }
}

/// One exit of the chosen structure.
pub struct ChosenExit {
    pub cut: CutPoint,
    pub head: TrainedHead,
    pub threshold: f64,
}

/// Learned gates of a chosen structure (format 2): the inputs, and each exit's weights. The
/// exits' thresholds are then on the gate's probability.
pub struct ChosenGates {
    pub gate: Gate,
    pub weights: Vec<GateWeights>,
}

/// The chosen structure and what is known of it.
pub struct Choice {
    pub exits: Vec<ChosenExit>,
    pub metric: Metric,
    pub gates: Option<ChosenGates>,
    /// The stream rule, when the search chose one.
    pub reuse: Option<ReuseRule>,
    pub promise: Option<Promise>,
    /// The structure on all held-out frames, in time order: what `evaluate` on the held-out
    /// footage reproduces.
    pub held: Simulation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_frames_keep_half_the_budget_or_what_training_leaves() {
        let one = FrameBytes { train: 1, held: 1 };
        assert!(Shares::within(10, 10, one, 20).is_all());
        // Both too many: half each.
        let s = Shares::within(100, 40, one, 40);
        assert_eq!((s.train, s.held), (0.2, 0.5));
        // Few training frames: the held-out ones take what they leave.
        let s = Shares::within(10, 100, one, 40);
        assert_eq!((s.train, s.held), (1.0, 0.3));
        // Few held-out frames: all of them, and training takes the rest.
        let s = Shares::within(100, 10, one, 40);
        assert_eq!((s.train, s.held), (0.3, 1.0));
        // Held-out frames that hold a quarter of the features: four times as many fit.
        let s = Shares::within(100, 80, FrameBytes { train: 4, held: 1 }, 160);
        assert_eq!((s.train, s.held), (0.2, 1.0));
    }
}
