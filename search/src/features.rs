//! Runs the backbone once per frame and keeps what the search needs: the backbone's answer and,
//! for every candidate exit, the pooled cut tensor. Full tensors are never kept.

use anyhow::{Context, Result, anyhow};
use earlyexit::bundle::{InputSpec, Output};
use earlyexit::graph::heads::{Pool, pool_features};
use earlyexit::graph::{self, Graph};
use earlyexit::preprocess::Preprocessor;
use earlyexit::runtime::{Model, SessionOptions};

use crate::footage::{Decoder, Footage};
use crate::progress;

/// What the search keeps of one frame.
pub struct Sample {
    pub label: Option<u32>,
    /// The full backbone's class.
    pub teacher: u32,
    /// One pooled feature vector per candidate exit.
    pub features: Vec<Vec<f32>>,
}

/// The backbone with every candidate cut tensor exposed as an output.
pub struct Extractor {
    model: Model,
    preprocessor: Preprocessor,
    cuts: Vec<String>,
    final_output: String,
    pool: Pool,
    pooled: Vec<f32>,
}

impl Extractor {
    pub fn new(
        graph: &Graph,
        cuts: &[&str],
        input: InputSpec,
        pool: Pool,
        options: SessionOptions,
    ) -> Result<Extractor> {
        let model = graph.with_outputs(cuts)?;
        let model = Model::from_bytes(&graph::encode_model(&model), graph.path(), options)?;
        Ok(Extractor {
            model,
            preprocessor: Preprocessor::new(input),
            cuts: cuts.iter().map(|c| (*c).to_owned()).collect(),
            final_output: graph.output().name,
            pool,
            pooled: Vec::new(),
        })
    }

    /// Runs one frame; returns the backbone's class and the pooled features of every cut.
    fn run(&mut self, frame: &earlyexit::Frame) -> Result<(u32, Vec<Vec<f32>>)> {
        let shape = self.preprocessor.shape();
        let tensor = self.preprocessor.run(frame)?;
        let outputs = self.model.run_all(&shape, tensor)?;
        let find = |name: &str| {
            outputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| anyhow!("the feature extractor lost output '{name}'"))
        };
        // Softmax keeps the order, so the arg-max of logits and of probabilities agree.
        let teacher = argmax(&find(&self.final_output)?.data);
        let mut features = Vec::with_capacity(self.cuts.len());
        for cut in &self.cuts {
            let t = find(cut)?;
            pool_features(self.pool, &t.shape, &t.data, &mut self.pooled);
            features.push(self.pooled.clone());
        }
        Ok((teacher as u32, features))
    }

    /// Decodes `footage` (one frame in `keep_every`) and extracts every frame.
    pub fn extract(
        &mut self,
        footage: &Footage,
        keep_every: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Sample>> {
        let estimate = crate::footage::estimate_frames(footage)?.map(|n| {
            n.div_ceil(keep_every.max(1))
                .min(limit.unwrap_or(usize::MAX)) as u64
        });
        let bar = progress::bar(&format!("features {}", short(&footage.name)), estimate);
        let decoder = Decoder::start(footage, keep_every, limit)?;
        let mut samples = Vec::new();
        for decoded in decoder.frames.iter() {
            let (teacher, features) = self
                .run(&decoded.frame())
                .with_context(|| format!("footage {}: frame {}", footage.name, decoded.index))?;
            samples.push(Sample {
                label: footage.label(decoded.index),
                teacher,
                features,
            });
            bar.inc(1);
        }
        decoder.finish()?;
        bar.finish_and_clear();
        if samples.is_empty() {
            anyhow::bail!("footage {}: no frames decoded", footage.name);
        }
        if footage.labels.is_some() && samples.iter().any(|s| s.label.is_none()) {
            anyhow::bail!(
                "footage {}: the ground truth has fewer rows than the footage has frames",
                footage.name
            );
        }
        Ok(samples)
    }
}

/// Index of the largest value; the first one on ties.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

fn short(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Which output kind a backbone has, when the user did not say.
pub fn detect_output(graph: &Graph) -> Output {
    if graph.ends_with_softmax() {
        Output::Probabilities
    } else {
        Output::Logits
    }
}
