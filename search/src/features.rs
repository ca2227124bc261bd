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

use crate::footage::{Decoder, Footage, Sampling, TimeRange};
use crate::progress;
use crate::shard::{self, FrameKey};
use crate::table::FeatureTable;

/// The poolings cached for a cut tensor of rank 4; a rank-2 tensor is its own feature vector.
pub const POOLS: [Pool; 3] = [Pool::Global, Pool::Grid(2), Pool::Grid(4)];

/// The backbone with every candidate cut tensor exposed as an output.
pub struct Extractor {
    model: Model,
    preprocessor: Preprocessor,
    /// One per grid a detector reads the preprocessor's input on, each grid once.
    signers: Vec<Signer>,
    cuts: Vec<CutPoint>,
    final_output: String,
    output: Output,
    /// What its shards hold, and what makes them comparable.
    description: shard::Backbone,
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
        let signers: Vec<Signer> = grids.iter().map(|&g| Signer::new(&input, g)).collect();
        let description = shard::Backbone {
            sha256: shard::sha256_of(graph.path())?,
            input: crate::input::describe(&input),
            output: output.word().into(),
            classes,
            cuts: cuts
                .iter()
                .map(|c| shard::Cut {
                    tensor: c.tensor.clone(),
                    shape: c.shape.clone(),
                    pools: pools_for(&c.shape)
                        .iter()
                        .map(|p| (format!("{p:?}"), feature_len(*p, &c.shape)))
                        .collect(),
                })
                .collect(),
            grids: signers
                .iter()
                .map(|s| shard::Grid {
                    grid: s.grid(),
                    values: s.values(),
                })
                .collect(),
        };
        Ok(Extractor {
            model,
            signers,
            preprocessor: Preprocessor::new(input),
            cuts: cuts.to_vec(),
            final_output: graph.output().name,
            output,
            description,
            pooled: Vec::new(),
            probs: Vec::new(),
            signature: Vec::new(),
        })
    }

    /// What its frames hold, as a shard's header says it.
    pub fn description(&self) -> &shard::Backbone {
        &self.description
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

    /// Decodes the frames of `footage` within `range` that `sampling` picks, extracts those
    /// whose run `keep` keeps, and hands them to `sink` a few at a time, so that memory does
    /// not grow with the footage; `total`, the footage's frames when known, sizes the progress
    /// bar.
    pub fn extract(
        &mut self,
        footage: &Footage,
        source: Source,
        keep: impl Fn(u64) -> bool,
        mut sink: impl FnMut(&FeatureTable, &[FrameKey]) -> Result<()>,
    ) -> Result<Extracted> {
        let estimate = if source.range.is_whole() {
            source.sampling.expected(source.total).map(|n| n as u64)
        } else {
            None
        };
        let bar = progress::bar(&format!("features {}", footage.short_name()), estimate);
        let decoder = Decoder::start_in(footage, source.sampling, source.range)?;
        let chunk = source.chunk.max(1);
        let (mut table, mut keys) = (self.description.empty_table(), Vec::with_capacity(chunk));
        let mut seen = Extracted::default();
        let mut unlabelled = 0;
        for frame in decoder.frames.iter() {
            seen.decoded += 1;
            seen.first.get_or_insert(frame.index as u64);
            bar.inc(1);
            if !keep(frame.index as u64) {
                continue;
            }
            let label = footage.label(frame.index);
            unlabelled += usize::from(footage.labels.is_some() && label.is_none());
            self.run(&frame.frame(), label, &mut table)
                .with_context(|| format!("footage {}: frame {}", footage.name, frame.index))?;
            keys.push(FrameKey {
                number: frame.index as u64,
                pts_ns: frame.pts_ns.and_then(|p| i64::try_from(p).ok()),
            });
            if keys.len() == chunk {
                sink(&table, &keys)?;
                (table, keys) = (self.description.empty_table(), Vec::with_capacity(chunk));
            }
        }
        decoder.finish()?;
        sink(&table, &keys)?;
        bar.finish_and_clear();
        if seen.decoded == 0 {
            if source.range.is_whole() {
                bail!("footage {}: no frames decoded", footage.name);
            }
            // A range past the last frame (an audio track may run longer): an empty part.
            eprintln!(
                "warning: footage {}: no frames in this time range",
                footage.name
            );
        }
        if unlabelled > 0 {
            bail!(
                "footage {}: the ground truth has fewer rows than the footage has frames",
                footage.name
            );
        }
        if let Some(warning) = footage.shortfall(seen.decoded, estimate.map(|n| n as usize)) {
            eprintln!("warning: {warning}");
        }
        // Fewer rows are refused above; sampled footage and parts are not decoded to the end.
        if source.sampling == Sampling::All
            && source.range.is_whole()
            && let Some(warning) = footage.ground_truth_mismatch(seen.decoded)
        {
            eprintln!("warning: {warning}");
        }
        Ok(seen)
    }
}

/// What an extraction saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extracted {
    /// Frames decoded (and picked by the sampling), kept or not.
    pub decoded: usize,
    /// The first one's number.
    pub first: Option<u64>,
}

/// Which frames of a footage [`Extractor::extract`] decodes, and how many it hands on at once.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub range: TimeRange,
    pub sampling: Sampling,
    /// The footage's frames, when known.
    pub total: Option<usize>,
    /// Frames handed to the sink at once.
    pub chunk: usize,
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
