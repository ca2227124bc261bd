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

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle folder whose ONNX files are empty placeholders (the reader only checks that
    /// they exist), with `yaml` as its `exits.yaml`.
    fn folder(yaml: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in ["s0.onnx", "s1.onnx", "h0.onnx"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::write(dir.path().join(EXITS_FILE), yaml).unwrap();
        dir
    }

    const VALID: &str = "\
format: earlyexit/1
input: { layout: nhwc, width: 224, height: 160, color: bgr, mean: [127, 127.5, 0.25], std: [128, 1, 0.5] }
metric: entropy
promise: { measure: accuracy, target: 0.95, confidence: 0.9, frames: 1200 }
stages:
  - segment: s0.onnx
    macs: 100
    exit: { head: h0.onnx, threshold: 0.3, macs: 7 }
  - segment: s1.onnx
    output: probabilities
";

    fn error(yaml: &str) -> String {
        let dir = folder(yaml);
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.file, dir.path().join(EXITS_FILE), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: {}: ", e.file.display(), e.key)),
            "{text}"
        );
        text
    }

    #[test]
    fn every_key_is_read() {
        let dir = folder(VALID);
        let (b, warnings) = read(&dir.path().join(EXITS_FILE)).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(b.dir(), dir.path());
        assert_eq!(
            b.input,
            InputSpec {
                layout: Layout::Nhwc,
                width: 224,
                height: 160,
                color: Color::Bgr,
                mean: vec![127.0, 127.5, 0.25],
                std: vec![128.0, 1.0, 0.5],
            }
        );
        assert_eq!(b.input.shape(), [1, 160, 224, 3]);
        assert_eq!(b.metric, Metric::Entropy);
        assert_eq!(b.output, Output::Probabilities);
        assert_eq!(
            b.promise,
            Some(Promise {
                measure: Measure::Accuracy,
                target: 0.95,
                confidence: 0.9,
                frames: 1200
            })
        );
        assert_eq!(b.name, None);
        assert_eq!(b.labels, None);
        assert_eq!(b.segment_macs(), None);
        assert_eq!(
            b.stages[0].exit,
            Some(Exit {
                head: "h0.onnx".into(),
                threshold: 0.3,
                macs: Some(7)
            })
        );
        assert_eq!(b.resolve("s1.onnx"), dir.path().join("s1.onnx"));
    }

    #[test]
    fn defaults_apply_when_optional_keys_are_absent() {
        let dir = folder(
            "format: earlyexit/1\ninput: { layout: nchw, width: 2, height: 3, color: gray, mean: [0], std: [1] }\nstages: [ { segment: s0.onnx } ]\n",
        );
        let (b, _) = read(dir.path()).unwrap();
        assert_eq!(b.metric, Metric::MaxProb);
        assert_eq!(b.output, Output::Logits);
        assert_eq!(b.input.shape(), [1, 1, 3, 2]);
        assert_eq!(b.stages.len(), 1);
    }

    #[test]
    fn to_yaml_round_trips_names_that_need_quoting_and_awkward_numbers() {
        let dir = folder(VALID);
        let (mut b, _) = read(dir.path()).unwrap();
        b.name = Some("a: b # not a comment, 'quoted' \"too\"".into());
        b.stages[0].exit.as_mut().unwrap().threshold = 1e-7;
        b.input.std = vec![1e-3, 3.0e5, 0.1];
        b.input.mean = vec![-0.0, 1.0 / 3.0, 255.0];
        let text = to_yaml(&b);
        assert!(!text.contains("e-") && !text.contains("e+"), "{text}");
        assert!(text.contains("threshold: 0.0000001\n"), "{text}");
        std::fs::write(dir.path().join(EXITS_FILE), &text).unwrap();
        let (again, warnings) = read(dir.path()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(again, b);
    }

    #[test]
    fn promise_values_are_checked() {
        let e = error(&VALID.replace("target: 0.95", "target: 1.5"));
        assert!(e.contains("promise.target") && e.contains("0..1"), "{e}");
        let e = error(&VALID.replace("measure: accuracy", "measure: recall"));
        assert!(
            e.contains("promise.measure") && e.contains("agreement, accuracy"),
            "{e}"
        );
        let e = error(&VALID.replace("frames: 1200", "frames: -3"));
        assert!(e.contains("promise.frames"), "{e}");
        let e = error(&VALID.replace(", frames: 1200", ""));
        assert!(e.contains("promise.frames: missing"), "{e}");
    }

    #[test]
    fn sizes_counts_and_words_are_checked() {
        let e = error(&VALID.replace("width: 224", "width: 0"));
        assert!(e.contains("input.width"), "{e}");
        let e = error(&VALID.replace("height: 160", "height: 12.5"));
        assert!(e.contains("input.height"), "{e}");
        let e = error(&VALID.replace("macs: 100", "macs: -100"));
        assert!(e.contains("stages[0].macs"), "{e}");
        let e = error(&VALID.replace("macs: 7", "macs: lots"));
        assert!(e.contains("stages[0].exit.macs"), "{e}");
        let e = error(&VALID.replace("layout: nhwc", "layout: chw"));
        assert!(
            e.contains("input.layout") && e.contains("nchw, nhwc"),
            "{e}"
        );
        let e = error(&VALID.replace("color: bgr", "color: yuv"));
        assert!(
            e.contains("input.color") && e.contains("rgb, bgr, gray"),
            "{e}"
        );
        let e = error(&VALID.replace("output: probabilities", "output: scores"));
        assert!(
            e.contains("stages[1].output") && e.contains("logits, probabilities"),
            "{e}"
        );
        let e = error(&VALID.replace("mean: [127, 127.5, 0.25]", "mean: [127, .nan, 0]"));
        assert!(e.contains("input.mean[1]"), "{e}");
        let e = error(&VALID.replace("std: [128, 1, 0.5]", "std: [128, 1, 0.0]"));
        assert!(e.contains("input.std[2]"), "{e}");
        let e = error(&VALID.replace(
            "    exit: { head: h0.onnx, threshold: 0.3, macs: 7 }\n",
            "    exit: { head: h0.onnx }\n",
        ));
        assert!(e.contains("stages[0].exit.threshold: missing"), "{e}");
        let e = error(&VALID.replace("  - segment: s1.onnx\n", "  - macs: 3\n"));
        assert!(e.contains("stages[1].segment: missing"), "{e}");
        let e = error("format: earlyexit/1\nstages: 3\n");
        assert!(e.contains("input: missing"), "{e}");
        let e = error("- just\n- a list\n");
        assert!(e.contains("(document)"), "{e}");
        let e = error("format: [earlyexit/1\n");
        assert!(e.contains("not valid YAML"), "{e}");
        let e = error(&VALID.replace("format: earlyexit/1\n", ""));
        assert!(e.contains("format: missing"), "{e}");
    }

    #[test]
    fn labels_are_one_per_line_with_or_without_a_final_newline() {
        let yaml = VALID.replace("metric: entropy", "labels: names.txt\nmetric: entropy");
        let dir = folder(&yaml);
        for text in ["cat\r\ndog\r\n", "cat\ndog", "cat\ndog\n"] {
            std::fs::write(dir.path().join("names.txt"), text).unwrap();
            let (b, _) = read(dir.path()).unwrap();
            let labels = b.labels.unwrap();
            assert_eq!(labels.file, "names.txt");
            assert_eq!(labels.names, ["cat", "dog"], "{text:?}");
        }
    }
}
