//! Training exit heads on cached pooled features, with candle.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// A linear classifier over pooled features: logits = W x + b, W row-major classes × features.
#[derive(Debug, Clone)]
pub struct LinearHead {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub features: usize,
    pub classes: usize,
}

/// Training settings.
pub struct Training {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            epochs: 40,
            batch: 256,
            learning_rate: 0.01,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

/// Trains softmax regression of `targets` on `x` (`n` rows of `d` features).
///
/// Features are standardised for training, then the scaling is folded into W and b, so the
/// exported head takes raw pooled features.
pub fn train_linear(
    x: &[f32],
    d: usize,
    targets: &[u32],
    classes: usize,
    t: &Training,
) -> Result<LinearHead> {
    let n = targets.len();
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
    let ys = Tensor::from_slice(targets, n, &dev)?;
    // Zero start: the problem is convex, and zeros need no random draw.
    let w = Var::zeros((classes, d), DType::F32, &dev)?;
    let b = Var::zeros(classes, DType::F32, &dev)?;
    let mut opt = AdamW::new(
        vec![w.clone(), b.clone()],
        ParamsAdamW {
            lr: t.learning_rate,
            weight_decay: t.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(t.seed);
    for _ in 0..t.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(t.batch) {
            let idx = Tensor::from_slice(batch, batch.len(), &dev)?;
            let bx = xs.index_select(&idx, 0)?;
            let by = ys.index_select(&idx, 0)?;
            let logits = bx
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
            let loss = candle_nn::loss::cross_entropy(&logits, &by)?;
            opt.backward_step(&loss)?;
        }
    }
    // Fold standardisation: W (x - m)/s + b = (W/s) x + (b - W (m/s)).
    let w = w.as_tensor().to_vec2::<f32>()?;
    let b = b.as_tensor().to_vec1::<f32>()?;
    let mut weight = Vec::with_capacity(classes * d);
    let mut bias = Vec::with_capacity(classes);
    for (row, b) in w.iter().zip(b) {
        let mut shift = 0.0f32;
        for ((wv, m), s) in row.iter().zip(&mean).zip(&scale) {
            weight.push(wv / s);
            shift += wv * m / s;
        }
        bias.push(b - shift);
    }
    Ok(LinearHead {
        weight,
        bias,
        features: d,
        classes,
    })
}

/// Per-feature mean and standard deviation (1 where a feature is constant).
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
    let scale = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let var = (s / n - m * m).max(0.0);
            if var > 1e-12 { var.sqrt() as f32 } else { 1.0 }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

impl LinearHead {
    /// Logits for `n` rows of features, row-major n × classes, as the exported head computes them.
    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>> {
        let n = x.len() / self.features;
        let dev = Device::Cpu;
        let xs = Tensor::from_slice(x, (n, self.features), &dev)?;
        let w = Tensor::from_slice(&self.weight, (self.classes, self.features), &dev)?;
        let b = Tensor::from_slice(&self.bias, self.classes, &dev)?;
        let logits = xs.matmul(&w.t()?)?.broadcast_add(&b)?;
        Ok(logits.flatten_all()?.to_vec1()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_and_folds_scaling() {
        // Two classes split by feature 0 around 100, feature 1 is noise on a large scale.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..400u32 {
            let class = i % 2;
            let f0 = 100.0 + if class == 1 { 5.0 } else { -5.0 } + (i % 7) as f32 * 0.3;
            let f1 = 1000.0 * ((i * 37 % 11) as f32);
            x.extend([f0, f1]);
            y.push(class);
        }
        let head = train_linear(&x, 2, &y, 2, &Training::default()).unwrap();
        let logits = head.logits(&x).unwrap();
        let correct = logits
            .chunks_exact(2)
            .zip(&y)
            .filter(|(l, c)| u32::from(l[1] > l[0]) == **c)
            .count();
        assert_eq!(
            correct, 400,
            "raw (unstandardised) features must classify after folding"
        );
    }

    #[test]
    fn the_same_seed_trains_the_same_head() {
        let x: Vec<f32> = (0..300).map(|i| ((i * 7919) % 101) as f32).collect();
        let y: Vec<u32> = (0..100).map(|i| (i % 3) as u32).collect();
        let t = Training {
            seed: 7,
            ..Training::default()
        };
        let a = train_linear(&x, 3, &y, 3, &t).unwrap();
        let b = train_linear(&x, 3, &y, 3, &t).unwrap();
        assert_eq!(a.weight, b.weight);
        assert_eq!(a.bias, b.bias);
    }
}
