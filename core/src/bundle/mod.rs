//! Exit bundles (`exits.yaml` plus the ONNX files it names): the types, a validating reader and
//! a writer. The format is documented for users in `docs/bundle-format.md`.

mod read;
mod write;

use std::path::{Path, PathBuf};

pub use read::{BundleError, read, read_labels};
pub use write::{to_yaml, write_atomically};

/// The file name of a bundle's description inside its folder.
pub const EXITS_FILE: &str = "exits.yaml";

/// The `format` values this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    V1,
}

/// The enum-valued keys of the format, with the word each value is written as.
pub trait Word: Copy + Sized + 'static {
    const ALL: &'static [Self];
    fn word(self) -> &'static str;
}

macro_rules! words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl Word for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn word(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }
    };
}

words!(Layout { Nchw => "nchw", Nhwc => "nhwc" });
words!(Color { Rgb => "rgb", Bgr => "bgr", Gray => "gray" });
words!(Metric { MaxProb => "max-prob", Margin => "margin", Entropy => "entropy" });
words!(Output { Logits => "logits", Probabilities => "probabilities" });
words!(Measure { Agreement => "agreement", Accuracy => "accuracy" });
words!(Format { V1 => "earlyexit/1" });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Rgb,
    Bgr,
    /// BT.601 luma of the frame.
    Gray,
}

impl Color {
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb | Color::Bgr => 3,
        }
    }
}

/// How a frame becomes stage 0's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub color: Color,
    /// One per channel; tensor value = (pixel - mean) / std, pixel in 0..255.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputSpec {
    /// The tensor shape for batch 1.
    pub fn shape(&self) -> [i64; 4] {
        let (c, h, w) = (
            self.color.channels() as i64,
            i64::from(self.height),
            i64::from(self.width),
        );
        match self.layout {
            Layout::Nchw => [1, c, h, w],
            Layout::Nhwc => [1, h, w, c],
        }
    }
}

/// The exit metric: how a head's probabilities become a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    #[default]
    MaxProb,
    Margin,
    Entropy,
}

/// What the last stage returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Logits,
    /// The backbone already ends with a softmax.
    Probabilities,
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
    pub threshold: f64,
    pub macs: Option<u64>,
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
    pub metric: Metric,
    pub promise: Option<Promise>,
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
}
