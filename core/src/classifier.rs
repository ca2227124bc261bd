//! Frames in, decisions out: preprocessing, the [`Cascade`] and cost accounting together. The
//! element and the search's `evaluate` both run frames through [`Classifier`], so they cannot
//! disagree on a frame.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bundle::{Bundle, Format, Stage};
use crate::cascade::{Cascade, LoadError, Mode};
use crate::cost::CostTable;
use crate::frame::Frame;
use crate::input::InputSpec;
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::rule::{Metric, Output, Signals};
use crate::runtime::session::{OnnxError, SessionOptions};
use crate::stream::StreamState;

/// What happened to one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The 0-based stage where the frame left; `stages - 1` is the last stage.
    pub stage: usize,
    pub stages: usize,
    pub class_id: usize,
    pub confidence: f64,
    pub score: f64,
    /// MACs used / backbone MACs, when the bundle gives MACs.
    pub cost: Option<f64>,
    /// Wall time for preprocessing and inference.
    pub inference_ns: u64,
    /// When the stream rule answered with the last answer computed: its age in frames. The
    /// stage, class, confidence and score are then that answer's.
    pub reused: Option<u32>,
}

/// A frame that could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// Frames in, decisions out: preprocessing, the cascade and cost accounting together.
pub struct Classifier {
    preprocessor: Preprocessor,
    cascade: Cascade,
    costs: Option<CostTable>,
    labels: Option<Vec<String>>,
}

impl Classifier {
    /// Loads a bundle for running.
    pub fn open(
        bundle: &Bundle,
        mode: Mode,
        options: SessionOptions,
    ) -> Result<Classifier, LoadError> {
        // The cascade first: it refuses an input size its first stage does not take before the
        // preprocessor makes buffers of that size.
        let cascade = Cascade::load(bundle, mode, options)?;
        Ok(Classifier {
            preprocessor: Preprocessor::new(bundle.input.clone()),
            cascade,
            costs: CostTable::from_bundle(bundle),
            labels: bundle.labels.as_ref().map(|l| l.names.clone()),
        })
    }

    /// An uncut backbone as a one-stage classifier, fed exactly like the bundle's first stage.
    pub fn backbone(
        model: &Path,
        input: InputSpec,
        output: Output,
        options: SessionOptions,
    ) -> Result<Classifier, LoadError> {
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bundle = Bundle {
            file: model
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf)
                .join("(backbone)"),
            format: Format::V1,
            name: None,
            input,
            labels: None,
            metric: Metric::MaxProb,
            gate: None,
            promise: None,
            reuse: None,
            stages: vec![Stage {
                segment: name,
                macs: None,
                exit: None,
            }],
            output,
        };
        Classifier::open(&bundle, Mode::Full, options)
    }

    pub fn stages(&self) -> usize {
        self.cascade.stages()
    }

    pub fn classes(&self) -> usize {
        self.cascade.classes()
    }

    /// Forgets the previous frame's answer, which a format-2 gate may read: call it where the
    /// frames stop being one continuous stream (a new file, a seek, a flush, a gap).
    pub fn reset_stream(&mut self) {
        self.cascade.reset_stream();
    }

    /// See [`Cascade::stream`].
    pub fn stream(&self) -> StreamState {
        self.cascade.stream()
    }

    /// See [`Cascade::set_stream`].
    pub fn set_stream(&mut self, state: StreamState) {
        self.cascade.set_stream(state);
    }

    pub fn label(&self, class_id: usize) -> Option<&str> {
        self.labels.as_ref()?.get(class_id).map(String::as_str)
    }

    /// Preprocesses one frame and runs it through every exit: see [`Cascade::run_every_exit`].
    pub fn every_exit(
        &mut self,
        frame: &Frame,
        signals: &mut Vec<Option<Signals>>,
    ) -> Result<(), RunError> {
        let shape = self.preprocessor.shape();
        let tensor = self.preprocessor.run(frame)?;
        Ok(self.cascade.run_every_exit(&shape, tensor, signals)?)
    }

    /// Preprocesses and runs one frame.
    pub fn classify(&mut self, frame: &Frame) -> Result<Decision, RunError> {
        let start = Instant::now();
        let shape = self.preprocessor.shape();
        let tensor = self.preprocessor.run(frame)?;
        let outcome = self.cascade.run(&shape, tensor)?;
        let inference_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let heads_ran = self.cascade.mode() == Mode::EarlyExit;
        Ok(Decision {
            stage: outcome.stage,
            stages: self.stages(),
            class_id: outcome.verdict.class_id,
            confidence: outcome.verdict.confidence,
            score: outcome.verdict.score,
            cost: self.costs.as_ref().map(|c| match outcome.reused {
                Some(_) => c.reused_cost(),
                None => c.cost(outcome.stage, heads_ran),
            }),
            inference_ns,
            reused: outcome.reused,
        })
    }
}
