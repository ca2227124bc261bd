//! Frames in, decisions out: preprocessing, the [`Cascade`] and cost accounting together. The
//! element and the search's `evaluate` both run frames through [`Classifier`], so they cannot
//! disagree on a frame.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::audit::{AuditEvent, AuditSettings, Auditor};
use crate::bundle::{Bundle, Format, Stage};
use crate::cascade::{Cascade, Hurry, LoadError, Mode};
use crate::cost::CostTable;
use crate::frame::{Frame, PixelFormat};
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
    /// Whether the audit also ran the frame at full depth.
    pub audited: bool,
    /// Whether the answer is full depth's because the audit does not trust the bundle here:
    /// the stage is then the last, and the class, confidence and score the backbone's.
    pub fallback: bool,
    /// What the audit concluded on this frame, when it changed its mind.
    pub audit: Option<AuditEvent>,
    /// The first model file that gave non-finite values on this frame: its exit was passed
    /// by, or the answer is not finite (`unanswered`).
    pub non_finite: Option<PathBuf>,
    /// Whether no finite answer could be computed: the class then means nothing, the
    /// confidence is 0 and the score one that no threshold clears.
    pub unanswered: bool,
    /// How the frame was answered in a hurry, when it came too late to run in full.
    pub hurried: Option<Hurry>,
}

/// What [`Classifier::resume_point`] keeps.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    stream: StreamState,
    auditor: Option<Auditor>,
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
    /// The bundle's promised rate, which the audit holds it to; None for a bundle that always
    /// answers as its backbone (one stage, no stream rule), which has nothing to audit.
    promise: Option<f64>,
    auditor: Option<Auditor>,
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
            promise: bundle
                .promise
                .as_ref()
                .filter(|_| !bundle.is_backbone_alone())
                .map(|p| p.target),
            auditor: None,
        })
    }

    /// Audits the bundle from the next frame on (see [`crate::audit`]): its promise, whatever
    /// its measure, is held as agreement with full depth, the one rate a stream without labels
    /// shows. A rate of 0 turns the audit off, and a bundle without a promise, one that always
    /// answers as its backbone, or one run in full mode, has nothing to audit.
    pub fn set_audit(&mut self, settings: AuditSettings) {
        self.auditor = self
            .promise
            .filter(|_| settings.rate > 0.0 && self.cascade.mode() == Mode::EarlyExit)
            .map(|promise| Auditor::new(settings, promise));
    }

    /// The audit's figures so far, when it is on.
    pub fn auditor(&self) -> Option<&Auditor> {
        self.auditor.as_ref()
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

    /// Where the classifier stands between frames: its stream and its audit, to run the same
    /// frames again from with [`Classifier::resume`], such as for timing.
    pub fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            stream: self.cascade.stream(),
            auditor: self.auditor.clone(),
        }
    }

    /// Continues from a [`ResumePoint`] of this classifier.
    pub fn resume(&mut self, point: ResumePoint) {
        self.cascade.set_stream(point.stream);
        self.auditor = point.auditor;
    }

    pub fn label(&self, class_id: usize) -> Option<&str> {
        self.labels.as_ref()?.get(class_id).map(String::as_str)
    }

    /// How long a frame of zeros at the input's own size takes through preprocessing, every
    /// segment and every head: about the most a frame can take past its resizing, what a live
    /// pipeline must allow the element before the first frames are timed.
    pub fn time_every_exit(&mut self) -> Result<Duration, RunError> {
        let (width, height) = (
            self.preprocessor.spec().width,
            self.preprocessor.spec().height,
        );
        let pixels = vec![0u8; width as usize * height as usize];
        let frame = Frame::new(PixelFormat::Gray8, width, height, width as usize, &pixels)
            .map_err(|e| PreprocessError {
                format: "GRAY8",
                width,
                height,
                message: e.to_string(),
            })?;
        let start = Instant::now();
        self.every_exit(&frame, &mut Vec::new())?;
        Ok(start.elapsed())
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

    /// Preprocesses and runs one frame, the next of the stream, audited when the audit picks
    /// it.
    pub fn classify(&mut self, frame: &Frame) -> Result<Decision, RunError> {
        let start = Instant::now();
        let audited = self.auditor.as_mut().is_some_and(Auditor::next_frame);
        let fallback = self.auditor.as_ref().is_some_and(Auditor::falls_back);
        let shape = self.preprocessor.shape();
        let tensor = self.preprocessor.run(frame)?;
        let outcome = self.cascade.run(&shape, tensor, audited)?;
        let inference_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let heads_ran = self.cascade.mode() == Mode::EarlyExit;
        let audit = match (&mut self.auditor, outcome.full) {
            (Some(a), Some(full)) => {
                a.fallbacks += u64::from(fallback);
                a.record(full.class_id == outcome.verdict.class_id)
            }
            _ => None,
        };
        let last = self.stages() - 1;
        let (stage, verdict) = match outcome.full {
            Some(full) if fallback => (last, full),
            _ => (outcome.stage, outcome.verdict),
        };
        Ok(Decision {
            stage,
            stages: self.stages(),
            class_id: verdict.class_id,
            confidence: verdict.confidence,
            score: verdict.score,
            cost: self
                .costs
                .as_ref()
                .map(|c| match (audited, outcome.reused) {
                    (true, reused) => c.audited_cost(outcome.stage, reused.is_some()),
                    (false, Some(_)) => c.reused_cost(),
                    (false, None) => c.cost(outcome.stage, heads_ran),
                }),
            inference_ns,
            reused: outcome.reused.filter(|_| !fallback),
            audited,
            fallback,
            audit,
            non_finite: outcome
                .non_finite
                .and_then(|at| self.cascade.model_path(at))
                .map(Path::to_path_buf),
            unanswered: outcome.unanswered && !fallback,
            hurried: None,
        })
    }

    /// Answers a frame that came too late to run in full, as `hurry` says: the stream's last
    /// answer costs nothing (not even preprocessing), the first exit only the stages before it.
    /// Neither audits the frame nor changes what the stream remembers. A bundle with neither a
    /// last answer nor an exit runs the frame in full.
    pub fn classify_in_a_hurry(
        &mut self,
        frame: &Frame,
        hurry: Hurry,
    ) -> Result<Decision, RunError> {
        let start = Instant::now();
        let shape = self.preprocessor.shape();
        let mut answered = self.cascade.hurried(hurry, &shape, None)?;
        if answered.is_none() {
            let tensor = self.preprocessor.run(frame)?;
            answered = self
                .cascade
                .hurried(Hurry::Shallowest, &shape, Some(tensor))?;
        }
        let Some((outcome, how)) = answered else {
            return self.classify(frame);
        };
        Ok(Decision {
            stage: outcome.stage,
            stages: self.stages(),
            class_id: outcome.verdict.class_id,
            confidence: outcome.verdict.confidence,
            score: outcome.verdict.score,
            cost: self.costs.as_ref().map(|c| match how {
                Hurry::Reuse => 0.0,
                Hurry::Shallowest => c.cost(outcome.stage, true),
            }),
            inference_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            reused: None,
            audited: false,
            fallback: false,
            audit: None,
            non_finite: None,
            unanswered: false,
            hurried: Some(how),
        })
    }
}
