//! Runs the backbone once per frame and keeps what the search needs: the backbone's answer and,
//! for every candidate exit, its cut tensor pooled every way a head may read it. Full tensors
//! are never kept, so memory grows with channels, not with pixels.

use anyhow::{Context, Result, anyhow, bail};
use earlyexit::input::InputSpec;
use earlyexit::preprocess::Preprocessor;
use earlyexit::reuse::{Detector, Signer};
use earlyexit::rule::{self, Metric, Output};
use earlyexit::runtime::{Model, SessionOptions};
use earlyexit_graph::heads::{Pool, feature_len, pool_features};
use earlyexit_graph::{self as graph, CutPoint, Graph};

use crate::footage::{Decoder, Footage, Sampling};
use crate::progress;

/// The poolings cached for a cut tensor of rank 4; a rank-2 tensor is its own feature vector.
pub const POOLS: [Pool; 3] = [Pool::Global, Pool::Grid(2), Pool::Grid(4)];

/// Frames, as the search keeps them: per candidate cut and pooling a row-major
/// frames × features matrix, and per frame the backbone's answer and the ground truth.
#[derive(Default)]
pub struct FeatureTable {
    /// `[cut][pool]`: frames × `dims[cut][pool]` values.
    pub columns: Vec<Vec<Vec<f32>>>,
    pub dims: Vec<Vec<usize>>,
    /// The full backbone's class per frame.
    pub teacher: Vec<u32>,
    /// The full backbone's probabilities, frames × classes (soft targets for distillation).
    pub soft: Vec<f32>,
    pub labels: Vec<Option<u32>>,
    pub classes: usize,
    /// Per frame, the stream rule's signatures of its input tensor, on each grid a detector
    /// reads ([`Detector::grid`]).
    pub signatures: Vec<Signatures>,
}

/// Signatures of every frame on one grid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signatures {
    pub grid: u32,
    /// Values per frame.
    pub len: usize,
    /// frames × `len` values.
    pub values: Vec<f32>,
}

impl FeatureTable {
    pub fn frames(&self) -> usize {
        self.teacher.len()
    }

    /// Ground truth for every frame, when every frame has it.
    pub fn all_labels(&self) -> Option<Vec<u32>> {
        self.labels.iter().copied().collect()
    }

    /// Features of `cut` under pooling `pool` (an index into [`POOLS`]).
    pub fn column(&self, cut: usize, pool: usize) -> (&[f32], usize) {
        (&self.columns[cut][pool], self.dims[cut][pool])
    }

    /// Splits the table in time: the frames from `at` on move into the table returned, and
    /// this one keeps the ones before, in place, so that no copy of them is made.
    pub fn split_off(&mut self, at: usize) -> FeatureTable {
        let at = at.min(self.frames());
        FeatureTable {
            columns: self
                .columns
                .iter_mut()
                .zip(&self.dims)
                .map(|(pools, dims)| {
                    pools
                        .iter_mut()
                        .zip(dims)
                        .map(|(m, &d)| m.split_off(at * d))
                        .collect()
                })
                .collect(),
            dims: self.dims.clone(),
            teacher: self.teacher.split_off(at),
            soft: self.soft.split_off(at * self.classes),
            labels: self.labels.split_off(at),
            classes: self.classes,
            signatures: self
                .signatures
                .iter_mut()
                .map(|s| Signatures {
                    values: s.values.split_off(at * s.len),
                    ..*s
                })
                .collect(),
        }
    }

    /// Frame `i`'s signature on `grid`, one of the grids the table was made with: the search
    /// makes its rules on those grids alone ([`Detector::grid`] of the same input).
    pub fn signature(&self, grid: u32, i: usize) -> &[f32] {
        let s = self
            .signatures
            .iter()
            .find(|s| s.grid == grid)
            .expect("rules are made on the grids the feature table keeps");
        &s.values[i * s.len..(i + 1) * s.len]
    }

    /// Appends the frames of `other`.
    pub fn extend(&mut self, other: FeatureTable) {
        if self.columns.is_empty() {
            *self = other;
            return;
        }
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.extend(t);
            }
        }
        self.teacher.extend(other.teacher);
        self.soft.extend(other.soft);
        self.labels.extend(other.labels);
        for (mine, theirs) in self.signatures.iter_mut().zip(other.signatures) {
            mine.values.extend(theirs.values);
        }
    }
}

/// The backbone with every candidate cut tensor exposed as an output.
pub struct Extractor {
    model: Model,
    preprocessor: Preprocessor,
    /// One per grid a detector reads the preprocessor's input on, each grid once.
    signers: Vec<Signer>,
    cuts: Vec<CutPoint>,
    final_output: String,
    output: Output,
    classes: usize,
    pooled: Vec<f32>,
    probs: Vec<f32>,
    signature: Vec<f32>,
}

impl Extractor {
    pub fn new(
        graph: &Graph,
        cuts: &[CutPoint],
        input: InputSpec,
        output: Output,
        classes: usize,
        options: SessionOptions,
    ) -> Result<Extractor> {
        let names: Vec<&str> = cuts.iter().map(|c| c.tensor.as_str()).collect();
        let model = graph.with_outputs(&names)?;
        let model = Model::from_bytes(&graph::encode_model(&model), graph.path(), options)?;
        let mut grids: Vec<u32> = Detector::ALL.iter().map(|d| d.grid(&input)).collect();
        grids.sort_unstable();
        grids.dedup();
        Ok(Extractor {
            model,
            signers: grids.iter().map(|&g| Signer::new(&input, g)).collect(),
            preprocessor: Preprocessor::new(input),
            cuts: cuts.to_vec(),
            final_output: graph.output().name,
            output,
            classes,
            pooled: Vec::new(),
            probs: Vec::new(),
            signature: Vec::new(),
        })
    }

    /// The bytes a frame takes in a [`FeatureTable`].
    pub fn bytes_per_frame(&self) -> usize {
        let t = self.empty_table();
        let signatures: usize = t.signatures.iter().map(|s| s.len).sum();
        let values: usize = t.dims.iter().flatten().sum::<usize>() + t.classes + signatures;
        values * size_of::<f32>() + size_of::<u32>() + size_of::<Option<u32>>()
    }

    fn empty_table(&self) -> FeatureTable {
        let dims: Vec<Vec<usize>> = self
            .cuts
            .iter()
            .map(|c| {
                pools_for(&c.shape)
                    .iter()
                    .map(|p| feature_len(*p, &c.shape))
                    .collect()
            })
            .collect();
        FeatureTable {
            columns: dims.iter().map(|d| vec![Vec::new(); d.len()]).collect(),
            dims,
            classes: self.classes,
            signatures: self
                .signers
                .iter()
                .map(|signer| Signatures {
                    grid: signer.grid(),
                    len: signer.values(),
                    values: Vec::new(),
                })
                .collect(),
            ..FeatureTable::default()
        }
    }

    /// Runs one frame into `table`.
    fn run(
        &mut self,
        frame: &earlyexit::Frame,
        label: Option<u32>,
        table: &mut FeatureTable,
    ) -> Result<()> {
        let shape = self.preprocessor.shape();
        let tensor = self.preprocessor.run(frame)?;
        for (s, signer) in table.signatures.iter_mut().zip(&self.signers) {
            signer.sign(tensor, &mut self.signature);
            s.values.extend_from_slice(&self.signature);
        }
        let outputs = self.model.run_all(&shape, tensor)?;
        let find = |name: &str| {
            outputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| anyhow!("the feature extractor lost output '{name}'"))
        };
        let last = find(&self.final_output)?;
        self.output.probabilities_into(&last.data, &mut self.probs);
        table
            .teacher
            .push(rule::verdict(Metric::MaxProb, &self.probs).class_id as u32);
        table.soft.extend_from_slice(&self.probs);
        table.labels.push(label);
        for (k, cut) in self.cuts.iter().enumerate() {
            let t = find(&cut.tensor)?;
            for (p, pool) in pools_for(&cut.shape).iter().enumerate() {
                pool_features(*pool, &t.shape, &t.data, &mut self.pooled);
                table.columns[k][p].extend_from_slice(&self.pooled);
            }
        }
        Ok(())
    }

    /// Decodes the frames of `footage` that `sampling` picks and extracts each; `total`, the
    /// footage's frames when known, sizes the progress bar.
    pub fn extract(
        &mut self,
        footage: &Footage,
        total: Option<usize>,
        sampling: Sampling,
    ) -> Result<FeatureTable> {
        let estimate = sampling.expected(total).map(|n| n as u64);
        let bar = progress::bar(&format!("features {}", footage.short_name()), estimate);
        let decoder = Decoder::start(footage, sampling)?;
        let mut table = self.empty_table();
        for decoded in decoder.frames.iter() {
            self.run(&decoded.frame(), footage.label(decoded.index), &mut table)
                .with_context(|| format!("footage {}: frame {}", footage.name, decoded.index))?;
            bar.inc(1);
        }
        decoder.finish()?;
        bar.finish_and_clear();
        if table.frames() == 0 {
            bail!("footage {}: no frames decoded", footage.name);
        }
        if footage.labels.is_some() && table.labels.iter().any(Option::is_none) {
            bail!(
                "footage {}: the ground truth has fewer rows than the footage has frames",
                footage.name
            );
        }
        if let Some(warning) = footage.shortfall(table.frames(), estimate.map(|n| n as usize)) {
            eprintln!("warning: {warning}");
        }
        // Fewer rows are refused above; sampled footage is not decoded to its end.
        if sampling == Sampling::All
            && let Some(warning) = footage.ground_truth_mismatch(table.frames())
        {
            eprintln!("warning: {warning}");
        }
        Ok(table)
    }
}

/// The poolings cached for a tensor of this shape: [`POOLS`] for images, the vector itself
/// (global pooling is the identity on rank 2) otherwise.
pub fn pools_for(shape: &[i64]) -> &'static [Pool] {
    if shape.len() == 4 {
        &POOLS
    } else {
        &POOLS[..1]
    }
}

/// Which output kind a backbone has, when the user did not say.
pub fn detect_output(graph: &Graph) -> Output {
    if graph.ends_with_softmax() {
        Output::Probabilities
    } else {
        Output::Logits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_keeps_every_frame_once_in_time_order() {
        // Three frames, one cut pooled two ways (2 and 1 values per frame), two classes.
        let mut table = FeatureTable {
            columns: vec![vec![
                vec![0.0, 0.1, 1.0, 1.1, 2.0, 2.1],
                vec![0.5, 1.5, 2.5],
            ]],
            dims: vec![vec![2, 1]],
            teacher: vec![0, 1, 0],
            soft: vec![0.9, 0.1, 0.2, 0.8, 0.7, 0.3],
            labels: vec![Some(0), None, Some(1)],
            classes: 2,
            signatures: vec![Signatures {
                grid: 1,
                len: 1,
                values: vec![0.0, 1.0, 2.0],
            }],
        };
        let end = table.split_off(2);
        assert_eq!(table.frames(), 2);
        assert_eq!(end.frames(), 1);
        assert_eq!(table.column(0, 0), (&[0.0, 0.1, 1.0, 1.1][..], 2));
        assert_eq!(end.column(0, 0), (&[2.0, 2.1][..], 2));
        assert_eq!(end.column(0, 1), (&[2.5][..], 1));
        assert_eq!(
            (table.signature(1, 1), end.signature(1, 0)),
            (&[1.0][..], &[2.0][..])
        );
        assert_eq!(
            (end.teacher, end.soft, end.labels),
            (vec![0], vec![0.7, 0.3], vec![Some(1)])
        );
        assert_eq!(table.labels, [Some(0), None]);
    }
}
