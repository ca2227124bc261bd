//! The staged runtime: segments run in order, and at each exit head the frame walks the exit
//! rule ([`FrameWalk`]) to see whether it may leave. [`crate::classifier::Classifier`] wraps it
//! with preprocessing and cost for the element and the search's `evaluate` alike.
//!
//! A format-2 gate may read the class answered for the previous frame, and a format-3 bundle's
//! stream rule ([`ReuseRule`]) may answer a frame with it, so a cascade remembers it
//! ([`StreamState`]) until the stream is reset.

use std::path::Path;

use crate::bundle::{Bundle, BundleError, Stage, Word};
use crate::gate::{ExitRule, Gate, GateWeights};
use crate::input::InputSpec;
use crate::reuse::{ReuseRule, Signer};
use crate::rule::{self, FrameWalk, Metric, Output, Signals, Verdict};
use crate::runtime::SharedModel;
use crate::runtime::session::{OnnxError, SessionOptions, Tensor};
use crate::stream::{Answered, StreamState};

/// Whether heads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    EarlyExit,
    /// Every segment and no head: the baseline backbone.
    Full,
}

/// A bundle that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

struct LoadedStage {
    segment: SharedModel,
    exit: Option<LoadedExit>,
}

struct LoadedExit {
    head: SharedModel,
    threshold: f64,
    gate: Option<GateWeights>,
}

/// The loaded stages of a bundle and the buffers they reuse.
pub struct Cascade {
    stages: Vec<LoadedStage>,
    metric: Metric,
    gate: Option<Gate>,
    /// The stream rule and what signs the input for it, with the signature buffer it reuses.
    reuse: Option<(ReuseRule, Signer)>,
    signature: Vec<f32>,
    stream: StreamState,
    output: Output,
    mode: Mode,
    classes: usize,
    /// Ping-pong activations: the current stage reads one and writes the other.
    activations: [Tensor; 2],
    head_out: Tensor,
    probs: Vec<f32>,
}

/// Where a frame left and what it was found to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub stage: usize,
    pub verdict: Verdict,
    /// When the stream rule reused the last answer computed: how many frames old it is (its
    /// `stage` and `verdict` are that answer's).
    pub reused: Option<u32>,
    /// When asked for: the answer at full depth, the last stage's, which the audit compares.
    pub full: Option<Verdict>,
    /// The first model that gave non-finite values on this frame: its exit was passed by,
    /// or, at the last stage, the answer is not finite ([`Outcome::unanswered`]).
    pub non_finite: Option<ModelAt>,
    /// Whether the answer itself is not finite: its class means nothing, its confidence is 0
    /// and its score one that no threshold clears.
    pub unanswered: bool,
}

/// How a frame that came too late to run in full is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hurry {
    /// With the stream's last answer, else as [`Hurry::Shallowest`].
    Reuse,
    /// At the first exit, whatever its rule says.
    Shallowest,
}

/// One model of a cascade: a stage's segment, or its exit's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelAt {
    pub stage: usize,
    pub head: bool,
}

impl Cascade {
    /// Loads every segment and head, then runs one frame of zeros through all of them, so that
    /// shape faults surface now, naming the file and tensor, rather than on the first frame.
    pub fn load(
        bundle: &Bundle,
        mode: Mode,
        options: SessionOptions,
    ) -> Result<Cascade, LoadError> {
        // The reader checked these, but bundles built in code come here directly.
        bundle.check()?;
        let stages = bundle
            .stages
            .iter()
            .enumerate()
            .map(|(i, stage)| load_stage(bundle, i, stage, options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cascade = Cascade {
            stages,
            metric: bundle.metric,
            gate: bundle.gate.clone(),
            reuse: bundle.reuse.clone().map(|r| {
                let signer = r.signer(&bundle.input);
                (r, signer)
            }),
            signature: Vec::new(),
            stream: StreamState::default(),
            output: bundle.output,
            mode,
            classes: 0,
            activations: Default::default(),
            head_out: Tensor::default(),
            probs: Vec::new(),
        };
        cascade.classes = cascade.check_shapes(&bundle.input)?;
        if let Some(labels) = &bundle.labels
            && labels.names.len() != cascade.classes
        {
            return Err(BundleError {
                file: bundle.resolve(&labels.file),
                key: "labels".into(),
                message: format!(
                    "has {} lines, but the model has {} classes",
                    labels.names.len(),
                    cascade.classes
                ),
            }
            .into());
        }
        Ok(cascade)
    }

    /// Number of classes the bundle predicts.
    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn stages(&self) -> usize {
        self.stages.len()
    }

    /// Whether heads run.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Forgets the previous frame's answer: the next frame starts a new stream.
    pub fn reset_stream(&mut self) {
        self.stream = StreamState::default();
    }

    /// What the cascade remembers of the stream, to resume from with [`Cascade::set_stream`].
    pub fn stream(&self) -> StreamState {
        self.stream.clone()
    }

    /// Continues a stream from `state`, such as when the same frames are run again for timing.
    pub fn set_stream(&mut self, state: StreamState) {
        self.stream = state;
    }

    fn check_shapes(&mut self, input: &InputSpec) -> Result<usize, OnnxError> {
        let mut shape = input.shape().to_vec();
        let first = &self.stages[0].segment;
        // Before a frame of the bundle's size is made: a size no model takes must not abort
        // the process by asking for more memory than there is.
        if let Some(declared) = first.declared_input_shape()
            && (declared.len() != shape.len()
                || declared.iter().zip(&shape).any(|(d, s)| *d > 0 && d != s))
        {
            return Err(OnnxError::model(
                first.path(),
                Some(first.input_name()),
                format!(
                    "takes {declared:?}, but the bundle's input gives {shape:?} ({} layout)",
                    input.layout.word()
                ),
            ));
        }
        let len = shape.iter().product::<i64>() as usize;
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| {
            OnnxError::model(
                first.path(),
                Some(first.input_name()),
                format!("an input of {shape:?} does not fit in memory"),
            )
        })?;
        data.resize(len, 0.0);
        let mut outputs = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter_mut().enumerate() {
            let mut out = Tensor::default();
            stage
                .segment
                .run_into(&shape, &data, &mut out)
                .map_err(|e| {
                    if i == 0 {
                        e
                    } else {
                        OnnxError::model(
                            stage.segment.path(),
                            Some(stage.segment.input_name()),
                            format!(
                                "does not take the previous stage's output {shape:?}: {}",
                                e.detail()
                            ),
                        )
                    }
                })?;
            shape.clone_from(&out.shape);
            data.clone_from(&out.data);
            outputs.push(out);
        }
        let last = &self.stages[self.stages.len() - 1].segment;
        let classes = class_count(&shape).ok_or_else(|| {
            OnnxError::model(
                last.path(),
                last.output_names().first().map(String::as_str),
                format!("the last stage must output [1, classes], found {shape:?}"),
            )
        })?;
        for (stage, activation) in self.stages.iter_mut().zip(&outputs) {
            let Some(LoadedExit { head, .. }) = &mut stage.exit else {
                continue;
            };
            let mut out = Tensor::default();
            head.run_into(&activation.shape, &activation.data, &mut out)
                .map_err(|e| {
                    OnnxError::model(
                        head.path(),
                        Some(head.input_name()),
                        format!(
                            "does not take its segment's output {:?}: {}",
                            activation.shape,
                            e.detail()
                        ),
                    )
                })?;
            if class_count(&out.shape) != Some(classes) {
                return Err(OnnxError::model(
                    head.path(),
                    head.output_names().first().map(String::as_str),
                    format!(
                        "a head must output logits [1, {classes}] like the last stage, found {:?}",
                        out.shape
                    ),
                ));
            }
        }
        Ok(classes)
    }

    /// The answer for a frame that came too late to run in full, and how it was had (see
    /// [`Hurry`]): the stream's last answer, or, given the `input`, the first exit's whatever
    /// its rule says; None when neither can be had, and the frame must run in full. The stream's
    /// memory stays as it was: a hurried answer is not one to compare later frames with.
    pub fn hurried(
        &mut self,
        hurry: Hurry,
        shape: &[i64],
        input: Option<&[f32]>,
    ) -> Result<Option<(Outcome, Hurry)>, OnnxError> {
        let outcome = |stage: usize, verdict: Verdict| Outcome {
            stage,
            verdict,
            reused: None,
            full: None,
            non_finite: None,
            unanswered: false,
        };
        if hurry == Hurry::Reuse
            && let Some(last) = self.stream.last()
        {
            return Ok(Some((outcome(last.stage, last.verdict), Hurry::Reuse)));
        }
        let (Some(input), Some(first_exit)) =
            (input, self.stages.iter().position(|s| s.exit.is_some()))
        else {
            return Ok(None);
        };
        let [a, b] = &mut self.activations;
        let (mut current, mut next) = (a, b);
        for (i, stage) in self.stages.iter_mut().enumerate().take(first_exit + 1) {
            run_segment(stage, i, shape, input, current, next)?;
            std::mem::swap(&mut current, &mut next);
        }
        if let Some(exit) = &mut self.stages[first_exit].exit {
            head_probs(exit, current, &mut self.head_out, &mut self.probs)?;
        }
        Ok(all_finite(&self.probs).then(|| {
            let verdict = Signals::of(&self.probs).verdict(self.metric);
            (outcome(first_exit, verdict), Hurry::Shallowest)
        }))
    }

    /// Runs one preprocessed frame, the next of the stream: with a stream rule, it first asks
    /// whether the frame may reuse the last answer. The full mode runs every frame. With
    /// `full`, the outcome also holds the answer at full depth: the segments after the one the
    /// frame left at run too (all of them for a reused answer), and no head.
    pub fn run(&mut self, shape: &[i64], input: &[f32], full: bool) -> Result<Outcome, OnnxError> {
        let rule = self.reuse.as_ref().filter(|_| self.mode == Mode::EarlyExit);
        if let Some((rule, signer)) = rule {
            signer.sign(input, &mut self.signature);
            if let Some(last) = self.stream.last()
                && self.stream.reuse.reusable(rule, &self.signature)
            {
                let reused = Some(self.stream.reuse.reused());
                return Ok(Outcome {
                    stage: last.stage,
                    verdict: last.verdict,
                    reused,
                    full: if full {
                        Some(self.run_segments_from(0, shape, input)?)
                    } else {
                        None
                    },
                    non_finite: None,
                    unanswered: false,
                });
            }
        }
        let watched = rule.is_some();
        let mut outcome = self.run_stages(shape, input)?;
        if full {
            let last = self.stages.len() - 1;
            outcome.full = Some(if outcome.stage == last {
                outcome.verdict
            } else {
                // The activation the frame left with is the last one written.
                self.run_segments_from(outcome.stage + 1, shape, input)?
            });
        }
        // An answer that is not one is neither reused nor compared with later frames.
        if outcome.unanswered {
            return Ok(outcome);
        }
        if watched {
            self.stream.reuse.ran(&self.signature);
        }
        self.stream.answered(Answered {
            stage: outcome.stage,
            verdict: outcome.verdict,
        });
        Ok(outcome)
    }

    fn run_stages(&mut self, shape: &[i64], input: &[f32]) -> Result<Outcome, OnnxError> {
        let last = self.stages.len() - 1;
        let mut walk = FrameWalk::new(self.stream.last_answer());
        let mut non_finite = None;
        let [a, b] = &mut self.activations;
        let (mut current, mut next) = (a, b);
        for (i, stage) in self.stages.iter_mut().enumerate() {
            run_segment(stage, i, shape, input, current, next)?;
            std::mem::swap(&mut current, &mut next);
            if i == last {
                let verdict = last_verdict(self.output, self.metric, current, &mut self.probs);
                let unanswered = verdict.is_none();
                if unanswered {
                    non_finite.get_or_insert(ModelAt {
                        stage: i,
                        head: false,
                    });
                }
                return Ok(Outcome {
                    stage: i,
                    verdict: verdict.unwrap_or(unsure(self.metric)),
                    reused: None,
                    full: None,
                    non_finite,
                    unanswered,
                });
            }
            if self.mode == Mode::Full {
                continue;
            }
            if let Some(exit) = &mut stage.exit {
                head_probs(exit, current, &mut self.head_out, &mut self.probs)?;
                // No frame leaves on non-finite scores: the exit is passed by.
                if !all_finite(&self.probs) {
                    non_finite.get_or_insert(culprit(i, current));
                    continue;
                }
                let rule = ExitRule::of(
                    self.metric,
                    self.gate.as_ref(),
                    exit.gate.as_ref(),
                    exit.threshold,
                );
                let (signals, leaves) = walk.exit(Signals::of(&self.probs), &rule);
                if leaves {
                    return Ok(Outcome {
                        stage: i,
                        verdict: signals.verdict(self.metric),
                        reused: None,
                        full: None,
                        non_finite,
                        unanswered: false,
                    });
                }
            }
        }
        unreachable!("the last stage always returns")
    }

    /// The last stage's answer, running the segments from `first` on, no head: from the input
    /// when `first` is 0, else from the activation `run_stages` left (stage `first - 1`'s).
    fn run_segments_from(
        &mut self,
        first: usize,
        shape: &[i64],
        input: &[f32],
    ) -> Result<Verdict, OnnxError> {
        let [a, b] = &mut self.activations;
        // run_stages writes stage k's output into the second buffer when k is even (it swaps
        // after each segment), so the first segment to run reads from there when it is odd.
        let (mut current, mut next) = if first % 2 == 1 { (b, a) } else { (a, b) };
        for (i, stage) in self.stages.iter_mut().enumerate().skip(first) {
            run_segment(stage, i, shape, input, current, next)?;
            std::mem::swap(&mut current, &mut next);
        }
        Ok(
            last_verdict(self.output, self.metric, current, &mut self.probs)
                .unwrap_or(unsure(self.metric)),
        )
    }

    /// The file of one of the cascade's models.
    pub fn model_path(&self, at: ModelAt) -> Option<&Path> {
        let stage = self.stages.get(at.stage)?;
        if at.head {
            stage.exit.as_ref().map(|e| e.head.path())
        } else {
            Some(stage.segment.path())
        }
    }

    /// Runs one preprocessed frame through every segment and every exit head, whatever the
    /// thresholds, the gates and the mode say, and gives each stage's signals (`None` where a
    /// stage has no exit): what the frame would answer wherever it left. Not a decision, so
    /// the stream's last answer stays as it was.
    pub fn run_every_exit(
        &mut self,
        shape: &[i64],
        input: &[f32],
        signals: &mut Vec<Option<Signals>>,
    ) -> Result<(), OnnxError> {
        signals.clear();
        let last = self.stages.len() - 1;
        let [a, b] = &mut self.activations;
        let (mut current, mut next) = (a, b);
        for (i, stage) in self.stages.iter_mut().enumerate() {
            run_segment(stage, i, shape, input, current, next)?;
            std::mem::swap(&mut current, &mut next);
            let here = if i == last {
                self.output
                    .probabilities_into(&current.data, &mut self.probs);
                Some(Signals::of(&self.probs))
            } else if let Some(exit) = &mut stage.exit {
                head_probs(exit, current, &mut self.head_out, &mut self.probs)?;
                Some(Signals::of(&self.probs))
            } else {
                None
            };
            signals.push(here);
        }
        Ok(())
    }
}

/// Runs stage `i`'s segment on the frame (stage 0) or on the previous stage's output.
fn run_segment(
    stage: &mut LoadedStage,
    i: usize,
    shape: &[i64],
    input: &[f32],
    current: &Tensor,
    next: &mut Tensor,
) -> Result<(), OnnxError> {
    if i == 0 {
        stage.segment.run_into(shape, input, next)
    } else {
        stage.segment.run_into(&current.shape, &current.data, next)
    }
}

/// Runs an exit's head on its segment's output, into probabilities.
fn head_probs(
    exit: &mut LoadedExit,
    current: &Tensor,
    head_out: &mut Tensor,
    probs: &mut Vec<f32>,
) -> Result<(), OnnxError> {
    exit.head
        .run_into(&current.shape, &current.data, head_out)?;
    rule::softmax_into(&head_out.data, probs);
    Ok(())
}

/// The last stage's output as probabilities, and its verdict; None when they are not finite.
fn last_verdict(
    output: Output,
    metric: Metric,
    out: &Tensor,
    probs: &mut Vec<f32>,
) -> Option<Verdict> {
    output.probabilities_into(&out.data, probs);
    all_finite(probs).then(|| rule::verdict(metric, probs))
}

/// The answer given for a frame whose last stage gave non-finite values: class 0, confidence
/// 0, and a score that no threshold clears.
fn unsure(metric: Metric) -> Verdict {
    Verdict {
        class_id: 0,
        confidence: 0.0,
        score: metric.never(),
    }
}

fn all_finite(values: &[f32]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// Which model of stage `stage` gave non-finite values: its segment when its output
/// (`segment_out`) is not finite, else its head.
fn culprit(stage: usize, segment_out: &Tensor) -> ModelAt {
    ModelAt {
        stage,
        head: all_finite(&segment_out.data),
    }
}

fn class_count(shape: &[i64]) -> Option<usize> {
    match shape {
        [1, classes] if *classes > 0 => Some(*classes as usize),
        _ => None,
    }
}

fn load_stage(
    bundle: &Bundle,
    index: usize,
    stage: &Stage,
    options: SessionOptions,
) -> Result<LoadedStage, OnnxError> {
    // The format asks every error to name the key too: which entry of exits.yaml named the file.
    let load = |relative: &str, key: &str, options: SessionOptions| {
        let named = |message: String| format!("stages[{index}].{key}: {message}");
        let model = SharedModel::load(&bundle.resolve(relative), options).map_err(|e| match e {
            OnnxError::Model {
                file,
                tensor,
                message,
            } => OnnxError::Model {
                file,
                tensor,
                message: named(message),
            },
            other => other,
        })?;
        // The format allows one output; a second would be ignored without a word.
        let outputs = model.output_names().len();
        if outputs != 1 {
            return Err(OnnxError::model(
                model.path(),
                None,
                named(format!("expected exactly one output, found {outputs}")),
            ));
        }
        Ok(model)
    };
    let segment = load(&stage.segment, "segment", options)?;
    let exit = match &stage.exit {
        Some(exit) => Some(LoadedExit {
            head: load(&exit.head, "exit.head", options.head())?,
            threshold: exit.threshold,
            gate: exit.gate.clone(),
        }),
        None => None,
    };
    Ok(LoadedStage { segment, exit })
}
