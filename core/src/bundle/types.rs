//! A bundle as its `exits.yaml` describes it: the stages, their exits and files, the labels and
//! the promise. The exit rule's types (metric, gates) and the input spec are their modules'; a
//! bundle only holds them.

use std::path::{Path, PathBuf};

use crate::gate::{Gate, GateWeights};
use crate::input::InputSpec;
use crate::reuse::ReuseRule;
use crate::rule::{Metric, Output};

/// The file name of a bundle's description inside its folder.
pub const EXITS_FILE: &str = "exits.yaml";

/// The `format` values this crate reads, each a superset of the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    V1,
    /// Format 1 plus optional learned gates.
    V2,
    /// Format 2 plus the stream rule (`reuse`), which a reader must know to run the bundle.
    V3,
}

impl Format {
    /// The metrics a bundle of this format may name: format 1 the three of
    /// `docs/spec/bundle-v1.md`, so that every reader of format 1 takes its bundles; format 2
    /// every metric.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Format::V1 => &[Metric::MaxProb, Metric::Margin, Metric::Entropy],
            Format::V2 | Format::V3 => &Metric::ALL,
        }
    }

    /// The first format that names `metric`: what a bundle deciding by it alone is written as.
    pub fn naming(metric: Metric) -> Format {
        if Format::V1.metrics().contains(&metric) {
            Format::V1
        } else {
            Format::V2
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Agreement,
    Accuracy,
}

/// What the writer certifies, and on how many held-out frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Promise {
    pub measure: Measure,
    pub target: f64,
    pub confidence: f64,
    pub frames: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Path relative to the bundle folder.
    pub head: String,
    /// Compared with the metric's value, or with the gate's probability when there is a gate.
    pub threshold: f64,
    pub macs: Option<u64>,
    /// Format 2: this exit's gate; present exactly when the bundle has a [`Bundle::gate`].
    pub gate: Option<GateWeights>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Path relative to the bundle folder.
    pub segment: String,
    pub macs: Option<u64>,
    pub exit: Option<Exit>,
}

/// Class names, one per class.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Path relative to the bundle folder.
    pub file: String,
    pub names: Vec<String>,
}

/// A bundle as described by its `exits.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The `exits.yaml` it was read from; empty for a bundle not yet written.
    pub file: PathBuf,
    pub format: Format,
    pub name: Option<String>,
    pub input: InputSpec,
    pub labels: Option<Labels>,
    /// The reported score, and the exit rule when there is no gate.
    pub metric: Metric,
    /// Format 2: the inputs of every exit's gate. With a gate, exits leave on its probability.
    pub gate: Option<Gate>,
    pub promise: Option<Promise>,
    /// Format 3: the stream rule, reusing the last answer while the picture has not changed.
    pub reuse: Option<ReuseRule>,
    pub stages: Vec<Stage>,
    /// What the last stage returns.
    pub output: Output,
}

impl Bundle {
    /// The folder that relative paths are resolved against.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir().join(relative)
    }

    /// MACs of every segment, when all are given.
    pub fn segment_macs(&self) -> Option<Vec<u64>> {
        self.stages.iter().map(|s| s.macs).collect()
    }

    /// Whether the bundle is its backbone alone: one stage (so no exit) and no stream rule, so
    /// that every frame runs the very computation of the full backbone.
    pub fn is_backbone_alone(&self) -> bool {
        self.stages.len() == 1 && self.reuse.is_none()
    }
}
