//! Exit heads: the architectures the search may put at an exit, and their training (with
//! candle) on cached pooled features, against ground truth or the backbone's soft answers.

use anyhow::{Result, bail};
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::ParamsAdamW;
use earlyexit::rule::{self, Signals};
use earlyexit_graph::heads::{HeadSpec, Pool};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::adamw::AdamW;
use crate::features::POOLS;
use crate::outputs::ExitOutputs;
use crate::table::FeatureTable;

/// The head architectures, in rising capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadKind {
    /// GlobalAveragePool → Linear.
    LinearGap,
    /// 2×2 average pooling → Linear: keeps where things are.
    LinearGrid2,
    /// GlobalAveragePool → Linear → ReLU → Linear.
    MlpGap,
    /// 4×4 average pooling → Linear.
    LinearGrid4,
    /// 2×2 average pooling → Linear → ReLU → Linear.
    MlpGrid2,
    /// 4×4 average pooling → Linear → ReLU → Linear.
    MlpGrid4,
    /// The mean of the probabilities of other heads trained at the same position: members that
    /// pool differently and start from other seeds err on different frames, so their mean is a
    /// better judge of when to leave than any one of them.
    Ensemble,
}

impl HeadKind {
    /// Every architecture the search may place.
    pub const ALL: [HeadKind; 7] = [
        HeadKind::LinearGap,
        HeadKind::LinearGrid2,
        HeadKind::MlpGap,
        HeadKind::LinearGrid4,
        HeadKind::MlpGrid2,
        HeadKind::MlpGrid4,
        HeadKind::Ensemble,
    ];

    /// The architectures trained on pooled features (all but the last); an ensemble is made of
    /// them.
    pub const TRAINED: &'static [HeadKind] = match HeadKind::ALL.split_last() {
        Some((_, trained)) => trained,
        None => &[],
    };

    /// The pooling in front of the head's layers (an ensemble's members each pool their own).
    pub fn pool(self) -> Pool {
        match self {
            HeadKind::LinearGap | HeadKind::MlpGap | HeadKind::Ensemble => Pool::Global,
            HeadKind::LinearGrid2 | HeadKind::MlpGrid2 => Pool::Grid(2),
            HeadKind::LinearGrid4 | HeadKind::MlpGrid4 => Pool::Grid(4),
        }
    }

    /// Index into [`POOLS`] of the features this head reads.
    pub fn pool_index(self) -> usize {
        let pool = self.pool();
        POOLS.iter().position(|p| *p == pool).unwrap_or(0)
    }

    /// The kind's place in [`HeadKind::ALL`]: what tables of heads are keyed by.
    pub fn index(self) -> usize {
        self as usize
    }

    fn hidden_layer(self) -> bool {
        matches!(
            self,
            HeadKind::MlpGap | HeadKind::MlpGrid2 | HeadKind::MlpGrid4
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            HeadKind::LinearGap => "gap-linear",
            HeadKind::LinearGrid2 => "grid2-linear",
            HeadKind::MlpGap => "gap-mlp",
            HeadKind::LinearGrid4 => "grid4-linear",
            HeadKind::MlpGrid2 => "grid2-mlp",
            HeadKind::MlpGrid4 => "grid4-mlp",
            HeadKind::Ensemble => "ensemble",
        }
    }
}

/// What a head learns to answer.
#[derive(Clone, Copy)]
pub enum Targets<'a> {
    /// A class per row.
    Hard(&'a [u32]),
    /// A probability row per row (distillation).
    Soft(&'a [f32]),
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct Training {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub hidden: usize,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            epochs: 40,
            batch: 256,
            learning_rate: 0.01,
            weight_decay: 1e-4,
            hidden: 128,
            seed: 0,
        }
    }
}

impl Training {
    /// The memory, in bytes, that [`train`] takes to train a head of `kind` on `rows` rows of
    /// `d` features into `classes` classes, besides its inputs: the standardised copy of the
    /// rows, and the parameters about eight times over (the parameters, their two moments, the
    /// gradient and the backward pass's temporaries; measured at 7.2 for a linear head of 18
    /// million parameters).
    pub fn memory(&self, kind: HeadKind, rows: usize, d: usize, classes: usize) -> usize {
        let parameters = if kind.hidden_layer() {
            (d + 1) * self.hidden + (self.hidden + 1) * classes
        } else {
            (d + 1) * classes
        };
        let f32s = rows * d + 8 * parameters;
        f32s * std::mem::size_of::<f32>()
    }

    /// The settings for a head of `kind`: a hidden layer needs fewer epochs, and each of its
    /// epochs costs far more, over thousands of pooled features.
    pub fn for_kind(kind: HeadKind, seed: u64) -> Training {
        let t = Training {
            seed,
            ..Training::default()
        };
        if kind.hidden_layer() {
            Training {
                epochs: 20,
                hidden: 64,
                ..t
            }
        } else {
            t
        }
    }
}

/// One fully connected layer: outputs = weight · inputs + bias.
#[derive(Debug, Clone, PartialEq)]
struct Layer {
    /// Outputs × inputs, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// A trained head, with its layers over raw pooled features (standardisation folded in).
#[derive(Debug, Clone)]
pub struct TrainedHead {
    pub kind: HeadKind,
    pub features: usize,
    pub classes: usize,
    /// First layer first.
    layers: Vec<Layer>,
    /// An ensemble's members; empty for the other kinds.
    members: Vec<TrainedHead>,
}

impl TrainedHead {
    /// The ensemble of `members` (trained heads at one position, for the same classes).
    pub fn ensemble(members: Vec<TrainedHead>) -> TrainedHead {
        TrainedHead {
            kind: HeadKind::Ensemble,
            features: 0,
            classes: members.first().map_or(0, |m| m.classes),
            layers: Vec::new(),
            members,
        }
    }

    /// The architecture's name, with an ensemble's members.
    pub fn describe(&self) -> String {
        if self.members.is_empty() {
            return self.kind.name().to_owned();
        }
        let members: Vec<&str> = self.members.iter().map(|m| m.kind.name()).collect();
        format!("{} ({})", self.kind.name(), members.join(" + "))
    }

    /// Logits for rows of raw pooled features, row-major rows × classes, computed as the
    /// exported ONNX head computes them.
    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>> {
        let dev = Device::Cpu;
        let rows = x.len() / self.features.max(1);
        let mut h = Tensor::from_slice(x, (rows, self.features), &dev)?;
        let mut inputs = self.features;
        for (i, Layer { weight: w, bias: b }) in self.layers.iter().enumerate() {
            let outputs = b.len();
            let wt = Tensor::from_slice(w, (outputs, inputs), &dev)?;
            let bt = Tensor::from_slice(b, outputs, &dev)?;
            h = h.matmul(&wt.t()?)?.broadcast_add(&bt)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
            inputs = outputs;
        }
        Ok(h.flatten_all()?.to_vec1()?)
    }

    /// The ONNX head's description for the graph tools.
    pub fn spec(&self) -> HeadSpec {
        if self.kind == HeadKind::Ensemble {
            return HeadSpec::Ensemble(self.members.iter().map(TrainedHead::spec).collect());
        }
        let pool = self.kind.pool();
        match self.layers.as_slice() {
            [only] => HeadSpec::Linear {
                pool,
                weight: only.weight.clone(),
                bias: only.bias.clone(),
            },
            [first, second] => HeadSpec::Mlp {
                pool,
                w1: first.weight.clone(),
                b1: first.bias.clone(),
                w2: second.weight.clone(),
                b2: second.bias.clone(),
            },
            _ => unreachable!("heads have one or two layers"),
        }
    }

    /// The head's probabilities for every frame of `table` at candidate cut `cut`, rows of
    /// `classes`: the softmax of its logits, or for an ensemble the mean of its members'.
    pub fn probabilities(&self, table: &FeatureTable, cut: usize) -> Result<Vec<f32>> {
        if self.kind == HeadKind::Ensemble {
            let mut mean = vec![0f32; table.frames() * self.classes];
            let share = 1.0 / self.members.len().max(1) as f32;
            for member in &self.members {
                for (m, p) in mean.iter_mut().zip(member.probabilities(table, cut)?) {
                    *m += share * p;
                }
            }
            return Ok(mean);
        }
        let pool = self.kind.pool_index();
        if !table.holds(cut, pool) {
            bail!("the features of candidate cut {cut} under pooling {pool} were not read");
        }
        let (x, _) = table.column(cut, pool);
        let mut probs = Vec::new();
        let mut all = Vec::new();
        for row in self.logits(x)?.chunks_exact(self.classes) {
            rule::softmax_into(row, &mut probs);
            all.extend_from_slice(&probs);
        }
        Ok(all)
    }

    /// What the head says of every frame of `table` at candidate cut `cut`, as an exit would.
    pub fn outputs(&self, table: &FeatureTable, cut: usize) -> Result<ExitOutputs> {
        let mut outputs = ExitOutputs::default();
        for probs in self.probabilities(table, cut)?.chunks_exact(self.classes) {
            outputs.push(&Signals::of(probs));
        }
        Ok(outputs)
    }
}

/// Trains a head of `kind` on `x` (rows of `d` raw pooled features).
///
/// Features are standardised for training, then the scaling is folded into the first layer, so
/// the exported head takes raw pooled features.
pub fn train(
    kind: HeadKind,
    x: &[f32],
    d: usize,
    targets: Targets,
    classes: usize,
    t: &Training,
) -> Result<TrainedHead> {
    let n = x.len() / d.max(1);
    let (mean, scale) = standardisation(x, n, d);
    let standardised: Vec<f32> = x
        .chunks_exact(d)
        .flat_map(|row| {
            row.iter()
                .zip(&mean)
                .zip(&scale)
                .map(|((v, m), s)| (v - m) / s)
        })
        .collect();
    let dev = Device::Cpu;
    let xs = Tensor::from_vec(standardised, (n, d), &dev)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(t.seed);
    let widths: Vec<usize> = if kind.hidden_layer() {
        vec![d, t.hidden, classes]
    } else {
        vec![d, classes]
    };
    // A single layer starts at zero (the problem is convex); deeper ones need a random start,
    // drawn from the seeded generator so that the same seed trains the same head.
    let vars = widths
        .windows(2)
        .map(|w| {
            let (inputs, outputs) = (w[0], w[1]);
            let weight = if widths.len() == 2 {
                Var::zeros((outputs, inputs), DType::F32, &dev)
            } else {
                let bound = (6.0 / inputs as f64).sqrt() as f32;
                let init: Vec<f32> = (0..inputs * outputs)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                Var::from_tensor(&Tensor::from_vec(init, (outputs, inputs), &dev)?)
            }?;
            Ok((weight, Var::zeros(outputs, DType::F32, &dev)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut opt = AdamW::new(
        vars.iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect(),
        ParamsAdamW {
            lr: t.learning_rate,
            weight_decay: t.weight_decay,
            ..ParamsAdamW::default()
        },
    );
    let targets = match targets {
        Targets::Hard(y) => Tensor::from_slice(y, n, &dev)?,
        Targets::Soft(p) => Tensor::from_slice(p, (n, classes), &dev)?,
    };
    let soft = targets.rank() == 2;
    let forward = |x: &Tensor| -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in vars.iter().enumerate() {
            h = h
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
            if i + 1 < vars.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    for _ in 0..t.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(t.batch) {
            let idx = Tensor::from_slice(batch, batch.len(), &dev)?;
            let logits = forward(&xs.index_select(&idx, 0)?)?;
            let by = targets.index_select(&idx, 0)?;
            let loss = if soft {
                // Cross-entropy against the backbone's probabilities.
                let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                (by * logp)?.sum(D::Minus1)?.mean_all()?.neg()?
            } else {
                candle_nn::loss::cross_entropy(&logits, &by)?
            };
            opt.backward_step(&loss)?;
        }
    }
    let mut layers = Vec::with_capacity(vars.len());
    for (i, (w, b)) in vars.iter().enumerate() {
        let mut weight: Vec<f32> = w.as_tensor().flatten_all()?.to_vec1()?;
        let mut bias: Vec<f32> = b.as_tensor().to_vec1()?;
        if i == 0 {
            // Fold standardisation: W (x - m)/s + b = (W/s) x + (b - W (m/s)).
            for (row, bias) in weight.chunks_exact_mut(d).zip(bias.iter_mut()) {
                let mut shift = 0.0f32;
                for ((wv, m), s) in row.iter_mut().zip(&mean).zip(&scale) {
                    *wv /= s;
                    shift += *wv * m;
                }
                *bias -= shift;
            }
        }
        layers.push(Layer { weight, bias });
    }
    Ok(TrainedHead {
        kind,
        features: d,
        classes,
        layers,
        members: Vec::new(),
    })
}

/// A logistic model of `y` on rows of `d` raw features: (weights, bias), so that
/// P(y) = sigmoid(bias + weights · x).
pub fn logistic(x: &[f32], d: usize, y: &[bool], t: &Training) -> Result<(Vec<f64>, f64)> {
    let classes: Vec<u32> = y.iter().map(|&b| u32::from(b)).collect();
    let head = train(HeadKind::LinearGap, x, d, Targets::Hard(&classes), 2, t)?;
    let Layer { weight: w, bias: b } = &head.layers[0];
    // A softmax over two logits is the sigmoid of their difference.
    let weights = (0..d).map(|j| f64::from(w[d + j] - w[j])).collect();
    Ok((weights, f64::from(b[1] - b[0])))
}

/// Per-feature mean and scale: the standard deviation, but at least [`SCALE_FLOOR`] of the
/// median one (1 where every feature is constant).
///
/// A feature nearly constant on the training frames teaches the head nothing, and dividing by
/// its tiny spread would magnify any change on new footage thousands of times over.
fn standardisation(x: &[f32], n: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += f64::from(v);
            sq[j] += f64::from(v) * f64::from(v);
        }
    }
    let n = n.max(1) as f64;
    let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
    let sd: Vec<f64> = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| (s / n - m * m).max(0.0).sqrt())
        .collect();
    // Constant features (up to rounding) do not count towards the median.
    let mut spread: Vec<f64> = sd.iter().copied().filter(|&s| s > 1e-6).collect();
    spread.sort_by(f64::total_cmp);
    let floor = spread
        .get(spread.len() / 2)
        .map_or(1.0, |median| SCALE_FLOOR * median);
    let scale = sd.iter().map(|&s| s.max(floor) as f32).collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

/// The smallest scale a feature is standardised by, as a share of the median feature's.
const SCALE_FLOOR: f64 = 0.1;

#[cfg(test)]
mod tests {
    use super::*;
    use earlyexit::rule::Metric;

    /// Two classes split by feature 0 around 100; feature 1 is noise on a large scale.
    fn problem() -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..400u32 {
            let class = i % 2;
            let f0 = 100.0 + if class == 1 { 5.0 } else { -5.0 } + (i % 7) as f32 * 0.3;
            let f1 = 1000.0 * ((i * 37 % 11) as f32);
            x.extend([f0, f1]);
            y.push(class);
        }
        (x, y)
    }

    /// A two-class GAP → Linear head on rows of `d` features, trained with the defaults.
    fn linear(x: &[f32], d: usize, targets: Targets) -> TrainedHead {
        train(HeadKind::LinearGap, x, d, targets, 2, &Training::default()).unwrap()
    }

    fn accuracy(head: &TrainedHead, x: &[f32], y: &[u32]) -> usize {
        let logits = head.logits(x).unwrap();
        logits
            .chunks_exact(2)
            .zip(y)
            .filter(|(l, c)| u32::from(l[1] > l[0]) == **c)
            .count()
    }

    #[test]
    fn a_trainings_memory_counts_its_rows_and_its_parameters_eight_times() {
        let t = Training::default();
        // 10 rows of 4; a linear layer of (4 + 1) × 3.
        assert_eq!(t.memory(HeadKind::LinearGrid2, 10, 4, 3), (40 + 8 * 15) * 4);
        // With a hidden layer of 128: (4 + 1) × 128 + (128 + 1) × 3.
        assert_eq!(
            t.memory(HeadKind::MlpGap, 10, 4, 3),
            (40 + 8 * (640 + 387)) * 4
        );
    }

    #[test]
    fn every_kind_learns_a_separable_problem_on_raw_features() {
        let (x, y) = problem();
        for kind in [HeadKind::LinearGap, HeadKind::MlpGap] {
            let head = train(kind, &x, 2, Targets::Hard(&y), 2, &Training::default()).unwrap();
            assert_eq!(
                accuracy(&head, &x, &y),
                400,
                "{kind:?}: scaling must be folded in"
            );
        }
    }

    #[test]
    fn a_feature_nearly_constant_in_training_does_not_swamp_new_frames() {
        // Features 0 to 2 carry the class; feature 3 barely moves on the training frames, in
        // step with the class, as a channel that is all but dead there would.
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..400u32 {
            let class = i % 2;
            let sign = if class == 1 { 1.0 } else { -1.0 };
            let noise = |k: u32| ((i * k) % 13) as f32 * 0.1;
            x.extend([
                sign + noise(7),
                sign + noise(11),
                sign + noise(5),
                1e-5 * sign,
            ]);
            y.push(class);
        }
        let head = linear(&x, 4, Targets::Hard(&y));
        assert_eq!(accuracy(&head, &x, &y), 400);
        // On new footage the dead channel wakes up a little, on every frame alike.
        let woken: Vec<f32> = x
            .chunks_exact(4)
            .flat_map(|r| [r[0], r[1], r[2], r[3] + 0.05])
            .collect();
        assert_eq!(accuracy(&head, &woken, &y), 400);
    }

    #[test]
    fn soft_targets_teach_like_hard_ones() {
        let (x, y) = problem();
        let soft: Vec<f32> = y
            .iter()
            .flat_map(|&c| if c == 1 { [0.1, 0.9] } else { [0.9, 0.1] })
            .collect();
        let head = linear(&x, 2, Targets::Soft(&soft));
        assert_eq!(accuracy(&head, &x, &y), 400);
    }

    #[test]
    fn the_same_seed_trains_the_same_head() {
        let x: Vec<f32> = (0..300).map(|i| ((i * 7919) % 101) as f32).collect();
        let y: Vec<u32> = (0..100).map(|i| (i % 3) as u32).collect();
        let t = Training {
            seed: 7,
            epochs: 5,
            ..Training::default()
        };
        for &kind in HeadKind::TRAINED {
            let a = train(kind, &x, 3, Targets::Hard(&y), 3, &t).unwrap();
            let b = train(kind, &x, 3, Targets::Hard(&y), 3, &t).unwrap();
            assert_eq!(a.layers, b.layers, "{kind:?}");
        }
    }

    /// An ensemble answers with the mean of its members' probabilities, each member reading
    /// its own pooling of the same cut; the metrics follow from that mean.
    #[test]
    fn an_ensemble_scores_the_mean_of_its_members() {
        let (frames, classes) = (40usize, 3usize);
        // One cut, global (2 features) and 2×2 (8 features) poolings.
        let dims = vec![2usize, 8];
        let columns: Vec<Vec<f32>> = dims
            .iter()
            .map(|&d| {
                (0..frames * d)
                    .map(|i| ((i * 7919 + d) % 23) as f32 / 23.0 - 0.5)
                    .collect()
            })
            .collect();
        let table = FeatureTable {
            columns: vec![columns],
            dims: vec![dims],
            teacher: (0..frames).map(|i| (i % classes) as u32).collect(),
            labels: vec![None; frames],
            classes,
            ..FeatureTable::default()
        };
        let training = Training {
            epochs: 3,
            ..Training::default()
        };
        let members: Vec<TrainedHead> = [HeadKind::LinearGap, HeadKind::LinearGrid2]
            .into_iter()
            .map(|k| {
                let (x, d) = table.column(0, k.pool_index());
                train(k, x, d, Targets::Hard(&table.teacher), classes, &training).unwrap()
            })
            .collect();
        let ensemble = TrainedHead::ensemble(members.clone());
        let mean = ensemble.probabilities(&table, 0).unwrap();
        let (a, b) = (
            members[0].probabilities(&table, 0).unwrap(),
            members[1].probabilities(&table, 0).unwrap(),
        );
        for ((m, x), y) in mean.iter().zip(&a).zip(&b) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6);
        }
        let outputs = ensemble.outputs(&table, 0).unwrap();
        for (f, row) in mean.chunks_exact(classes).enumerate() {
            for metric in Metric::ALL {
                let v = rule::verdict(metric, row);
                assert_eq!(outputs.class(f), v.class_id as u32);
                assert_eq!(outputs.score(f, metric), v.score);
            }
        }
        // The members disagree somewhere, or the test shows nothing.
        assert!(
            a.chunks_exact(classes)
                .zip(b.chunks_exact(classes))
                .any(|(x, y)| (x[0] - y[0]).abs() > 1e-3)
        );
        assert_eq!(ensemble.describe(), "ensemble (gap-linear + grid2-linear)");
    }
}
