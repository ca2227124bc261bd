//! Exit heads: small ONNX graphs that turn a cut tensor into class logits, built from trained
//! weights, and the same pooling in plain Rust so that cached features match the ONNX head.

use std::collections::HashMap;

use candle_onnx::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

use super::GraphError;
use super::macs::graph_macs;
use super::model::{float_tensor, float_value_info, int_attr, int64_tensor, ints_attr, node};

/// How a [N, C, H, W] tensor becomes a feature vector. A [N, C] tensor is used as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The mean of each channel: C features.
    Global,
    /// Adaptive average pooling to k × k bins: bin i spans rows floor(i·H/k)..ceil((i+1)·H/k)
    /// (likewise for columns), and feature c·k·k + i·k + j is channel c's bin (i, j).
    Grid(u32),
}

/// A head's layers and trained weights. Matrices are row-major, [outputs × inputs].
#[derive(Debug, Clone, PartialEq)]
pub enum HeadSpec {
    /// pool → Linear.
    Linear {
        pool: Pool,
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
    /// pool → Linear → ReLU → Linear; the hidden width is `b1.len()`.
    Mlp {
        pool: Pool,
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    },
    /// 1×1 convolution C → r → ReLU → pool → Linear; r is `conv_b.len()`, `conv_w` is [r × C].
    ConvReduce {
        conv_w: Vec<f32>,
        conv_b: Vec<f32>,
        pool: Pool,
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
    /// The mean of the members' softmax probabilities, returned as its logarithm: the runtime's
    /// softmax of those logits gives the mean back. Members read the same input and are not
    /// ensembles themselves.
    Ensemble(Vec<HeadSpec>),
}

/// A built exit head: input [N, ...] named "input", output logits [N, classes] named "logits".
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub model: ModelProto,
    /// Its MACs for one frame.
    pub macs: u64,
}

/// The rows (or columns) that bin `i` of `k` spans over `n`.
fn bin(i: usize, k: usize, n: usize) -> std::ops::Range<usize> {
    (i * n / k)..((i + 1) * n).div_ceil(k)
}

/// The number of features `pool` makes of a tensor of `shape` ([N, C, H, W] or [N, C]).
pub fn feature_len(pool: Pool, shape: &[i64]) -> usize {
    let c = shape.get(1).map_or(0, |&c| c.max(0) as usize);
    match (shape.len(), pool) {
        (2, _) | (4, Pool::Global) => c,
        (4, Pool::Grid(k)) => c * (k as usize) * (k as usize),
        _ => 0,
    }
}

/// Pools `data` of `shape` into `out` (cleared first): N rows of [`feature_len`] features, the
/// same values the ONNX head computes before its first Linear layer.
pub fn pool_features(pool: Pool, shape: &[i64], data: &[f32], out: &mut Vec<f32>) {
    out.clear();
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if dims.iter().product::<usize>() != data.len() {
        return;
    }
    match (dims.as_slice(), pool) {
        ([_, _], _) => out.extend_from_slice(data),
        (&[_, _, h, w], pool) => {
            let k = match pool {
                Pool::Global => 1,
                Pool::Grid(k) => k as usize,
            };
            if h * w == 0 || k == 0 {
                return;
            }
            for plane in data.chunks_exact(h * w) {
                for i in 0..k {
                    for j in 0..k {
                        let (rows, cols) = (bin(i, k, h), bin(j, k, w));
                        let count = (rows.len() * cols.len()) as f64;
                        let sum: f64 = rows
                            .flat_map(|r| plane[r * w + cols.start..r * w + cols.end].iter())
                            .map(|&v| f64::from(v))
                            .sum();
                        out.push((sum / count) as f32);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Builds a head graph and counts its MACs.
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Batch-1 shapes, for the MAC counter.
    shapes: HashMap<String, Vec<i64>>,
    current: String,
    /// Prepended to initializer names, so that an ensemble's members do not clash.
    prefix: String,
}

impl Builder {
    fn shape(&self) -> &[i64] {
        self.shapes.get(&self.current).map_or(&[], Vec::as_slice)
    }

    fn constant(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        let name = format!("{}{name}", self.prefix);
        self.initializers.push(float_tensor(&name, dims, values));
        self.shapes.insert(name.clone(), dims.to_vec());
        name
    }

    /// Adds a node that reads the current tensor (and `more`), and makes its output current.
    fn then(
        &mut self,
        op: &str,
        more: &[&str],
        attrs: Vec<candle_onnx::onnx::AttributeProto>,
        shape: Vec<i64>,
    ) {
        let out = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        let mut inputs = vec![self.current.as_str()];
        inputs.extend_from_slice(more);
        self.nodes.push(node(op, &out, &inputs, &[&out], attrs));
        self.shapes.insert(out.clone(), shape);
        self.current = out;
    }

    /// A fully connected layer: current [1, F] × weight [outputs × F]ᵀ + bias.
    fn linear(&mut self, label: &str, weight: &[f32], bias: &[f32]) -> Result<(), GraphError> {
        let features = self.shape().get(1).copied().unwrap_or(0);
        let outputs = bias.len();
        if weight.len() != outputs * features as usize {
            return Err(GraphError::Head(format!(
                "{label}: weight has {} values, expected {outputs} × {features}",
                weight.len()
            )));
        }
        let w = self.constant(
            &format!("{label}_weight"),
            &[outputs as i64, features],
            weight,
        );
        let b = self.constant(&format!("{label}_bias"), &[outputs as i64], bias);
        self.then(
            "Gemm",
            &[&w, &b],
            vec![int_attr("transB", 1)],
            vec![1, outputs as i64],
        );
        Ok(())
    }

    /// Adds the layers of a single (not ensemble) head, reading "input"; its logits become
    /// current.
    fn head(&mut self, spec: &HeadSpec, classes: usize) -> Result<(), GraphError> {
        self.current = "input".to_owned();
        let input = self.shapes.get("input").cloned().unwrap_or_default();
        let (pool, weight, bias) = match spec {
            HeadSpec::Linear { pool, weight, bias } => (pool, weight, bias),
            HeadSpec::Mlp {
                pool,
                w1,
                b1,
                w2,
                b2,
            } => {
                self.pool(*pool)?;
                self.linear("hidden", w1, b1)?;
                self.relu();
                (&Pool::Global, w2, b2)
            }
            HeadSpec::ConvReduce {
                conv_w,
                conv_b,
                pool,
                weight,
                bias,
            } => {
                let (r, c) = (conv_b.len() as i64, input[1]);
                if conv_w.len() as i64 != r * c {
                    return Err(GraphError::Head(format!(
                        "reduce: weight has {} values, expected {r} × {c}",
                        conv_w.len()
                    )));
                }
                if input.len() == 4 {
                    let w = self.constant("reduce_weight", &[r, c, 1, 1], conv_w);
                    let bias = self.constant("reduce_bias", &[r], conv_b);
                    self.then("Conv", &[&w, &bias], vec![], vec![1, r, input[2], input[3]]);
                } else {
                    self.linear("reduce", conv_w, conv_b)?;
                }
                self.relu();
                (pool, weight, bias)
            }
            HeadSpec::Ensemble(_) => {
                return Err(GraphError::Head(
                    "an ensemble's members cannot be ensembles".into(),
                ));
            }
        };
        // Mlp pooled already; pooling a [1, F] tensor again leaves it as it is.
        self.pool(*pool)?;
        if bias.len() != classes {
            return Err(GraphError::Head(format!(
                "output: bias has {} values, expected {classes} classes",
                bias.len()
            )));
        }
        self.linear("output", weight, bias)
    }

    /// Adds every member, then ln(mean of their softmax probabilities) as the logits.
    fn ensemble(&mut self, members: &[HeadSpec], classes: usize) -> Result<(), GraphError> {
        let mut probabilities = Vec::new();
        for (i, member) in members.iter().enumerate() {
            self.prefix = format!("member{i}_");
            self.head(member, classes)?;
            self.then(
                "Softmax",
                &[],
                vec![int_attr("axis", 1)],
                vec![1, classes as i64],
            );
            probabilities.push(self.current.clone());
        }
        self.prefix.clear();
        let Some((first, rest)) = probabilities.split_first() else {
            return Err(GraphError::Head("an ensemble needs members".into()));
        };
        self.current = first.clone();
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        self.then("Mean", &rest, vec![], vec![1, classes as i64]);
        self.then("Log", &[], vec![], vec![1, classes as i64]);
        Ok(())
    }

    fn relu(&mut self) {
        let shape = self.shape().to_vec();
        self.then("Relu", &[], vec![], shape);
    }

    fn pool(&mut self, pool: Pool) -> Result<(), GraphError> {
        let &[_, c, h, w] = self.shape() else {
            // A [N, C] tensor is already a feature vector.
            return Ok(());
        };
        let k = match pool {
            Pool::Global => 1,
            Pool::Grid(0) => {
                return Err(GraphError::Head("a Grid pool needs at least 1 bin".into()));
            }
            Pool::Grid(k) => i64::from(k),
        };
        if k == 1 {
            self.then("GlobalAveragePool", &[], vec![], vec![1, c, 1, 1]);
        } else if h % k == 0 && w % k == 0 {
            let kernel = [h / k, w / k];
            self.then(
                "AveragePool",
                &[],
                vec![
                    ints_attr("kernel_shape", &kernel),
                    ints_attr("strides", &kernel),
                ],
                vec![1, c, k, k],
            );
        } else {
            // Bins of unequal size: an exact average as a product with a pooling matrix.
            let (hu, wu, ku) = (h as usize, w as usize, k as usize);
            let mut matrix = vec![0f32; hu * wu * ku * ku];
            for i in 0..ku {
                for j in 0..ku {
                    let (rows, cols) = (bin(i, ku, hu), bin(j, ku, wu));
                    let weight = 1.0 / (rows.len() * cols.len()) as f32;
                    for r in rows {
                        for s in cols.clone() {
                            matrix[(r * wu + s) * ku * ku + i * ku + j] = weight;
                        }
                    }
                }
            }
            let shape = format!("{}pool_shape", self.prefix);
            self.initializers.push(int64_tensor(&shape, &[0, c, h * w]));
            self.then("Reshape", &[&shape], vec![], vec![1, c, h * w]);
            let m = self.constant("pool_matrix", &[h * w, k * k], &matrix);
            self.then("MatMul", &[&m], vec![], vec![1, c, k * k]);
        }
        let features = self.shape()[1..].iter().product();
        self.then("Flatten", &[], vec![int_attr("axis", 1)], vec![1, features]);
        Ok(())
    }
}

/// Builds an exit head for a cut tensor of `input_shape` ([N, C, H, W] or [N, C]) that returns
/// `classes` logits, using operators of the default domain at `opset`.
pub fn build_head(
    spec: &HeadSpec,
    input_shape: &[i64],
    classes: usize,
    opset: i64,
) -> Result<Head, GraphError> {
    if !matches!(input_shape.len(), 2 | 4) || input_shape[1..].iter().any(|&d| d <= 0) {
        return Err(GraphError::Head(format!(
            "input shape {input_shape:?}: expected [N, C, H, W] or [N, C]"
        )));
    }
    let mut input = input_shape.to_vec();
    input[0] = 1;
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
        shapes: HashMap::from([("input".to_owned(), input.clone())]),
        current: "input".to_owned(),
        prefix: String::new(),
    };
    match spec {
        HeadSpec::Ensemble(members) => b.ensemble(members, classes)?,
        single => b.head(single, classes)?,
    }
    // The last node writes the graph output directly.
    if let Some(last) = b.nodes.last_mut() {
        last.output = vec!["logits".to_owned()];
    }
    let last = b.current.clone();
    if let Some(shape) = b.shapes.remove(&last) {
        b.shapes.insert("logits".to_owned(), shape);
    }

    let graph = GraphProto {
        node: b.nodes,
        name: "exit_head".into(),
        initializer: b.initializers,
        input: vec![float_value_info("input", &input, true)],
        output: vec![float_value_info("logits", &[1, classes as i64], true)],
        ..Default::default()
    };
    let macs = graph_macs(&graph, &b.shapes)
        .map_err(|i| GraphError::Head(format!("node {i}: shapes unknown")))?
        .iter()
        .sum();
    let model = ModelProto {
        ir_version: super::model::ir_version_for_opset(opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "earlyexit".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(Head { model, macs })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{max_abs_diff, run};
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// rows × (weight [out × in]ᵀ) + bias.
    fn linear(x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let inputs = weight.len() / bias.len();
        x.chunks_exact(inputs)
            .flat_map(|row| {
                bias.iter().enumerate().map(move |(o, b)| {
                    b + row
                        .iter()
                        .zip(&weight[o * inputs..(o + 1) * inputs])
                        .map(|(a, w)| a * w)
                        .sum::<f32>()
                })
            })
            .collect()
    }

    fn relu(x: Vec<f32>) -> Vec<f32> {
        x.into_iter().map(|v| v.max(0.0)).collect()
    }

    /// 1×1 convolution of [N, C, H, W] with weight [r × C].
    fn conv1x1(shape: &[i64], x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let (c, hw) = (shape[1] as usize, (shape[2] * shape[3]) as usize);
        let r = b.len();
        let mut out = Vec::new();
        for frame in x.chunks_exact(c * hw) {
            for o in 0..r {
                for p in 0..hw {
                    out.push(
                        b[o] + (0..c)
                            .map(|i| w[o * c + i] * frame[i * hw + p])
                            .sum::<f32>(),
                    );
                }
            }
        }
        out
    }

    /// What `spec` computes for `x` of `shape`, in plain Rust: logits, or for an ensemble the
    /// log of its members' mean probabilities.
    fn expected(spec: &HeadSpec, shape: &[i64], x: &[f32], classes: usize) -> Vec<f32> {
        let pooled = |shape: &[i64], data: &[f32], pool: Pool| {
            let mut out = Vec::new();
            pool_features(pool, shape, data, &mut out);
            assert_eq!(out.len(), shape[0] as usize * feature_len(pool, shape));
            out
        };
        match spec {
            HeadSpec::Linear { pool, weight, bias } => {
                linear(&pooled(shape, x, *pool), weight, bias)
            }
            HeadSpec::Mlp {
                pool,
                w1,
                b1,
                w2,
                b2,
            } => linear(&relu(linear(&pooled(shape, x, *pool), w1, b1)), w2, b2),
            HeadSpec::ConvReduce {
                conv_w,
                conv_b,
                pool,
                weight,
                bias,
            } => {
                let reduced = relu(conv1x1(shape, x, conv_w, conv_b));
                let mut rshape = shape.to_vec();
                rshape[1] = conv_b.len() as i64;
                linear(&pooled(&rshape, &reduced, *pool), weight, bias)
            }
            HeadSpec::Ensemble(members) => {
                let mut mean = vec![0f32; shape[0] as usize * classes];
                for m in members {
                    let logits = expected(m, shape, x, classes);
                    for (row, out) in logits
                        .chunks_exact(classes)
                        .zip(mean.chunks_exact_mut(classes))
                    {
                        let mut p = Vec::new();
                        earlyexit::rule::softmax_into(row, &mut p);
                        for (o, v) in out.iter_mut().zip(p) {
                            *o += v / members.len() as f32;
                        }
                    }
                }
                mean.into_iter().map(f32::ln).collect()
            }
        }
    }

    fn check(spec: &HeadSpec, shape: &[i64], classes: usize, expected_macs: u64) {
        let n: i64 = shape.iter().product();
        let x = values(n as usize, 7);
        let expected = expected(spec, shape, &x, classes);
        let head = build_head(spec, shape, classes, 13).unwrap();
        assert_eq!(head.macs, expected_macs, "{spec:?}");
        let (out_shape, got) = run(&head.model, shape, &x);
        assert_eq!(out_shape, [shape[0], classes as i64]);
        let diff = max_abs_diff(&got, &expected);
        assert!(diff < 1e-4, "{diff} for {spec:?}");
    }

    #[test]
    fn heads_match_pooling_and_plain_matrix_math() {
        let (c, classes) = (6usize, 5usize);
        let shape = [3, c as i64, 7, 7];
        for (pool, per_channel, pool_macs) in [
            (Pool::Global, 1usize, 0u64),
            // 7 × 7 into 2 × 2 bins of unequal size (rows 0..4 and 3..7): a pooling matrix.
            (Pool::Grid(2), 4, (c * 49 * 4) as u64),
        ] {
            let f = c * per_channel;
            let linear = HeadSpec::Linear {
                pool,
                weight: values(classes * f, 1),
                bias: values(classes, 2),
            };
            check(&linear, &shape, classes, pool_macs + (f * classes) as u64);

            let hidden = 8;
            let mlp = HeadSpec::Mlp {
                pool,
                w1: values(hidden * f, 3),
                b1: values(hidden, 4),
                w2: values(classes * hidden, 5),
                b2: values(classes, 6),
            };
            check(
                &mlp,
                &shape,
                classes,
                pool_macs + (f * hidden + hidden * classes) as u64,
            );

            let r = 4;
            let reduce = HeadSpec::ConvReduce {
                conv_w: values(r * c, 8),
                conv_b: values(r, 9),
                pool,
                weight: values(classes * r * per_channel, 10),
                bias: values(classes, 11),
            };
            let reduce_pool = pool_macs / c as u64 * r as u64;
            let conv = (49 * r * c) as u64;
            let reduce_macs = conv + reduce_pool + (r * per_channel * classes) as u64;
            check(&reduce, &shape, classes, reduce_macs);

            // Members with the same pooling each build their own: names must not clash.
            let linear_macs = pool_macs + (f * classes) as u64;
            let mlp_macs = pool_macs + (f * hidden + hidden * classes) as u64;
            let ensemble = HeadSpec::Ensemble(vec![linear.clone(), mlp.clone(), reduce.clone()]);
            check(
                &ensemble,
                &shape,
                classes,
                linear_macs + mlp_macs + reduce_macs,
            );
        }
    }

    #[test]
    fn uniform_grid_and_flat_inputs() {
        // 8 × 8 into 2 × 2 bins is uniform: AveragePool, no MACs for pooling.
        let spec = HeadSpec::Linear {
            pool: Pool::Grid(2),
            weight: values(3 * 4 * 4, 1),
            bias: values(3, 2),
        };
        check(&spec, &[2, 4, 8, 8], 3, 48);
        let head = build_head(&spec, &[1, 4, 8, 8], 3, 17).unwrap();
        let ops: Vec<&str> = head
            .model
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.as_str())
            .collect();
        assert_eq!(ops, ["AveragePool", "Flatten", "Gemm"]);
        // A [N, C] cut tensor is used as it is.
        let flat = HeadSpec::Linear {
            pool: Pool::Global,
            weight: values(30, 3),
            bias: values(3, 4),
        };
        check(&flat, &[2, 10], 3, 30);
        let reduce = HeadSpec::ConvReduce {
            conv_w: values(40, 5),
            conv_b: values(4, 6),
            pool: Pool::Global,
            weight: values(12, 7),
            bias: values(3, 8),
        };
        let head = build_head(&reduce, &[1, 10], 3, 13).unwrap();
        assert_eq!(head.macs, 52);
    }

    #[test]
    fn a_loaded_head_counts_the_same_macs_and_a_softmax_is_seen() {
        use super::super::model::node;
        use super::super::{Graph, write_model};
        let spec = HeadSpec::ConvReduce {
            conv_w: values(4 * 6, 1),
            conv_b: values(4, 2),
            pool: Pool::Grid(2),
            weight: values(3 * 16, 3),
            bias: values(3, 4),
        };
        let head = build_head(&spec, &[1, 6, 7, 7], 3, 13).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.onnx");
        write_model(&head.model, &path).unwrap();
        let graph = Graph::load(&path).unwrap();
        // Probed shapes give the same count as the shapes the builder knew.
        assert_eq!(graph.total_macs(), head.macs);
        assert!(!graph.ends_with_softmax());
        assert_eq!(graph.output().shape, [1, 3]);

        let mut with_softmax = head.model.clone();
        let g = with_softmax.graph.as_mut().unwrap();
        g.node.push(node(
            "Softmax",
            "softmax",
            &["logits"],
            &["probabilities"],
            vec![],
        ));
        g.output[0].name = "probabilities".into();
        write_model(&with_softmax, &path).unwrap();
        assert!(Graph::load(&path).unwrap().ends_with_softmax());
    }

    #[test]
    fn pooling_bins_follow_adaptive_average_pooling() {
        // One 3 × 3 plane into 2 × 2 bins: rows/cols 0..2 and 1..3.
        let data: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut out = Vec::new();
        pool_features(Pool::Grid(2), &[1, 1, 3, 3], &data, &mut out);
        assert_eq!(out, [2.0, 3.0, 5.0, 6.0]);
        pool_features(Pool::Global, &[1, 1, 3, 3], &data, &mut out);
        assert_eq!(out, [4.0]);
    }

    #[test]
    fn weights_that_do_not_fit_are_refused() {
        let spec = HeadSpec::Linear {
            pool: Pool::Global,
            weight: vec![0.0; 7],
            bias: vec![0.0; 2],
        };
        let err = build_head(&spec, &[1, 4, 5, 5], 2, 13)
            .unwrap_err()
            .to_string();
        assert!(err.contains("weight has 7 values, expected 2 × 4"), "{err}");
        let err = build_head(&spec, &[1, 4, 5, 5], 3, 13)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 classes"), "{err}");
        assert!(build_head(&spec, &[1, 4, 5], 2, 13).is_err());
    }
}
