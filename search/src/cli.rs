//! The command line, as `docs/spec/search-v1.md` defines it.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};

use crate::footage::Footage;

#[derive(Parser)]
#[command(
    name = "earlyexit-search",
    version,
    about = "Find where to cut a backbone, which exit head to put at each cut and when frames may leave; evaluate exit bundles"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List every place where the backbone can be cut into two parts joined by one tensor.
    Inspect(InspectArgs),
    /// Train exit heads on footage, calibrate thresholds on held-out frames, write a bundle:
    /// `extract` of every footage, then `fit`, in one command.
    Search(Box<SearchArgs>),
    /// Run the backbone over one footage, or a time range of it, and write what the search
    /// needs of every frame into a feature shard (Parquet), for `fit`.
    Extract(Box<ExtractArgs>),
    /// Choose and certify exits from feature shards, and write the bundle, as `search` does
    /// after extracting; memory stays within --feature-memory however many frames.
    Fit(Box<FitArgs>),
    /// Print each footage's length (frames, seconds, frame rate) as a JSON line, from its
    /// container, without decoding it: for drivers that cut footage into time ranges.
    Probe(ProbeArgs),
    /// Run a bundle over footage as the element would, and compare it with the full backbone.
    Evaluate(EvaluateArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// The backbone ONNX model.
    #[arg(long)]
    pub backbone: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Args)]
pub struct ProbeArgs {
    /// Footage (paths or URIs).
    #[arg(required = true)]
    pub footage: Vec<String>,
}

/// How a frame becomes the backbone's input (`docs/spec/bundle-v1.md`, `input`).
#[derive(Args, Clone, Default)]
pub struct InputArgs {
    /// Tensor layout; required when the model's input shape fits both.
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Input width: required when the model leaves it open, else checked against the model's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub width: Option<u32>,
    /// Input height: required when the model leaves it open, else checked against the model's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub height: Option<u32>,
    /// Color: gray by default for 1 channel, else rgb.
    #[arg(long, value_enum)]
    pub color: Option<ColorArg>,
    /// Per-channel mean, comma-separated, or one number for all channels [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    pub mean: Option<String>,
    /// Per-channel std, comma-separated, or one number for all channels [default: 255].
    #[arg(long, allow_hyphen_values = true)]
    pub std: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Nchw,
    Nhwc,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ColorArg {
    Rgb,
    Bgr,
    Gray,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Strategy {
    Even,
    Nas,
}

/// What the search minimises.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum CostArg {
    Macs,
    Latency,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputArg {
    Logits,
    Probabilities,
}

#[derive(Args)]
pub struct SearchArgs {
    /// The backbone ONNX model.
    #[arg(long)]
    pub backbone: PathBuf,
    /// Footage to train exit heads on (path or URI); repeatable, each optionally followed by --ground-truth.
    #[arg(long, required = true)]
    pub footage: Vec<String>,
    /// Labels (CSV `frame,label`) of the --footage or --holdout just before it.
    #[arg(long)]
    pub ground_truth: Vec<PathBuf>,
    /// Footage used only to calibrate and compare, never to train; default: the last 20% of each footage, in time.
    #[arg(long)]
    pub holdout: Vec<String>,
    #[command(flatten)]
    pub input: InputArgs,
    /// What the backbone returns [default: probabilities when it ends with a Softmax, else logits].
    #[arg(long, value_enum)]
    pub output: Option<OutputArg>,
    /// Use at most N frames in all, taken evenly from each footage (the first ones of footage
    /// whose length is unknown, such as a live stream).
    #[arg(long, value_parser = at_least_one)]
    pub max_frames: Option<usize>,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose. Exit heads run on one.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub fit: FitOptions,
    /// Where to write the bundle (a folder); written only when the search finishes.
    #[arg(long)]
    pub out: PathBuf,
}

/// What `search` and `fit` share: the target, how exits are chosen, and the memory for frames.
#[derive(Args)]
pub struct FitOptions {
    /// Class names, one per line, copied into the bundle.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Lowest agreement with the full backbone on held-out frames [default: 0.99 unless --target-accuracy].
    #[arg(long)]
    pub target_agreement: Option<f64>,
    /// Lowest accuracy on held-out frames (needs ground truth there).
    #[arg(long, conflicts_with = "max_accuracy_loss")]
    pub target_accuracy: Option<f64>,
    /// Highest accuracy loss against the full backbone on the same held-out frames (needs
    /// ground truth there), e.g. 0.005 for half a point.
    #[arg(long)]
    pub max_accuracy_loss: Option<f64>,
    /// Confidence of the promise written into the bundle.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Bundle format to write: 1 is read by every tool; 2 lets `--strategy nas` also try the
    /// exit metrics format 1 does not name, patient rules, and learned exit gates (over each
    /// exit's metric values, agreement with the previous exit and with the last frame's answer),
    /// and keep them when they certify better; 3 also lets it try the stream rule (reuse the
    /// last answer while the picture has not changed, on footage read whole). The bundle is
    /// written in the first format that holds what was kept.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub format: u8,
    /// Same inputs and seed, same bundle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How exits are chosen: `nas` searches positions, heads and exit rules (NSGA-II) and
    /// certifies the result; `even` (the first version's rule) places --exits GAP → Linear
    /// heads evenly by MACs.
    #[arg(long, value_enum, default_value_t = Strategy::Nas)]
    pub strategy: Strategy,
    /// What structures are compared by: `latency` (the default) times every piece of the
    /// backbone between candidate cuts and every head with ONNX Runtime on this machine
    /// (--threads threads, median of warm runs) and compares measured time, so that a bundle
    /// is not slower than its backbone; `macs` counts multiply-accumulates. Times are kept in
    /// the cache folder (EARLYEXIT_CACHE, else $XDG_CACHE_HOME/earlyexit or
    /// ~/.cache/earlyexit), so that the same seed gives the same bundle on this machine; delete
    /// it to time again. The bundle's `macs` stay MACs.
    #[arg(long, value_enum, default_value_t = CostArg::Latency)]
    pub cost: CostArg,
    /// With --strategy even: the number of exits, spread evenly over the backbone's MACs.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub exits: usize,
    /// With --strategy nas: candidate positions kept after saliency pruning.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    pub candidates: usize,
    /// With --strategy nas: exit structures scored at most, each at every threshold level.
    #[arg(long, default_value_t = 3000)]
    pub budget: usize,
    /// Megabytes the frames' features may take in memory; beyond it, runs of 250 frames are
    /// taken in the order of a hash of footage and run while they fit, the same whatever the
    /// shards, and the report says which share. Held-out frames keep at least half, and hold
    /// only the features the certificate reads. Head training takes at most about 1 GB more,
    /// the rest about 0.5 GB: at the default, the whole fit peaked at 3.0 GiB for Fashion-MNIST
    /// and 3.2 GiB for EfficientNet-Lite0.
    #[arg(long, default_value_t = 2_400, value_parser = at_least_one)]
    pub feature_memory: usize,
}

/// Which role a footage's frames take in `fit`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Role {
    /// Frames to train and choose exits on; the last 20% of each such footage is held out
    /// when no footage is held out whole.
    Train,
    /// Frames held out whole: they only certify.
    Holdout,
}

#[derive(Args)]
pub struct ExtractArgs {
    /// The backbone ONNX model.
    #[arg(long)]
    pub backbone: PathBuf,
    /// The footage (path or URI).
    #[arg(long)]
    pub footage: String,
    /// Labels (CSV `frame,label`) of the footage, numbered from its first frame.
    #[arg(long)]
    pub ground_truth: Option<PathBuf>,
    /// What the footage's frames are for.
    #[arg(long, value_enum, default_value_t = Role::Train)]
    pub role: Role,
    /// The footage's id in the shards: the same for every part of one footage [default: its file name].
    #[arg(long)]
    pub id: Option<String>,
    /// Extract from this time on (seconds, or [h:]m:s): decoding seeks there.
    #[arg(long, value_parser = seconds)]
    pub start: Option<f64>,
    /// Extract up to this time, excluded (seconds, or [h:]m:s).
    #[arg(long, value_parser = seconds)]
    pub end: Option<f64>,
    /// Keep only the runs of 250 frames whose hash of id and run is below this share: `fit`
    /// takes runs in that order when they do not all fit in its memory, so a share above the
    /// one it reads gives it the same frames on a smaller disk.
    #[arg(long, default_value_t = 1.0, value_parser = share)]
    pub share: f64,
    #[command(flatten)]
    pub input: InputArgs,
    /// What the backbone returns [default: probabilities when it ends with a Softmax, else logits].
    #[arg(long, value_enum)]
    pub output: Option<OutputArg>,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The shard to write (`.parquet`), or an existing folder to write it in, named after the
    /// id and the time range. A complete shard of the same frames already there is kept, and
    /// nothing is extracted.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct FitArgs {
    /// The backbone ONNX model the shards were extracted with.
    #[arg(long)]
    pub backbone: PathBuf,
    /// Shards: `.parquet` files, or folders whose `.parquet` files are all read; repeatable.
    #[arg(long, required = true)]
    pub shards: Vec<PathBuf>,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose. Exit heads run on one.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub fit: FitOptions,
    /// Where to write the bundle (a folder); written only when the fit finishes.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct EvaluateArgs {
    /// The bundle: its exits.yaml or the folder that holds it.
    #[arg(long)]
    pub model: PathBuf,
    /// Footage to run (path or URI); repeatable, each optionally followed by --ground-truth.
    #[arg(long, required = true)]
    pub footage: Vec<String>,
    /// Labels (CSV `frame,label`) of the --footage just before it.
    #[arg(long)]
    pub ground_truth: Vec<PathBuf>,
    /// The uncut backbone to compare with; default: the chain of all the bundle's segments.
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// Write one row per frame: footage,frame,stage,class_id,score; with a format-3 stream rule,
    /// also reused (the age of a reused answer, else 0).
    #[arg(long)]
    pub per_frame: Option<PathBuf>,
    /// Write one SVG per footage into this folder (created if needed), named after the
    /// footage's file: the stage where each frame left over the footage, with the frames that
    /// disagree with the full backbone marked.
    #[arg(long, value_name = "DIR")]
    pub timeline: Option<PathBuf>,
    /// Another bundle (a baseline, say) to run on the same frames, untimed: reports its figures
    /// and, with ground truth, the accuracy difference on the same frames with the p-value of
    /// McNemar's exact test.
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
    /// Also fit the exit thresholds of the bundle (and of --compare) on these very frames, for
    /// the cheapest mean cost at the accuracy (agreement, without labels) of the bundle, of
    /// --compare and of the full backbone: exit structures compared at equal accuracy.
    /// In-sample, so not a calibration; format-1 exit rules only.
    #[arg(long)]
    pub refit: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose. Exit heads run on one.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Time each footage this many times, bundle and backbone alternating; the median is reported.
    /// Both first run 32 frames untimed, so that neither pays the process's warm-up.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Audit the bundle as the element's `audit` property does: this share of trusted frames
    /// also runs at full depth, every frame until the audit trusts the bundle, and frames the
    /// audit does not trust are answered at full depth. 0 (the default) runs the bundle alone.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub audit: f64,
    /// Which frames the audit samples, as the element's `audit-seed`.
    #[arg(long, default_value_t = 0)]
    pub audit_seed: u64,
    /// With --audit: keep the bundle's answers while the audit does not trust it, as the
    /// element's `audit-fallback=false`.
    #[arg(long)]
    pub audit_no_fallback: bool,
}

/// A share in 0..=1.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("expected a number in 0..=1, found '{s}'")),
    }
}

/// A time: seconds, or `[h:]m:s` with decimal seconds.
fn seconds(s: &str) -> Result<f64, String> {
    let mut total = 0.0;
    for part in s.split(':') {
        let v: f64 = part
            .parse()
            .map_err(|_| format!("expected seconds or [h:]m:s, found '{s}'"))?;
        total = total * 60.0 + v;
    }
    if !(total.is_finite() && total >= 0.0) || s.split(':').count() > 3 {
        return Err(format!("expected seconds or [h:]m:s, found '{s}'"));
    }
    Ok(total)
}

/// Each value of argument `id` with its position on the command line.
fn positions<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Vec<(usize, T)> {
    // `evaluate` has no `--holdout`, and clap's debug builds panic on asking for an unknown id.
    if !matches.ids().any(|i| i.as_str() == id) {
        return Vec::new();
    }
    match (matches.indices_of(id), matches.get_many::<T>(id)) {
        (Some(i), Some(v)) => i.zip(v.cloned()).collect(),
        _ => Vec::new(),
    }
}

/// Pairs each `--ground-truth` with the `--footage` or `--holdout` given just before it.
/// Returns the footage and the holdout footage, in command-line order.
pub fn pair_footage(matches: &ArgMatches) -> Result<(Vec<Footage>, Vec<Footage>)> {
    let truths: Vec<(usize, PathBuf)> = positions(matches, "ground_truth");
    // Every footage-like argument in order, with whether it is held out.
    let mut items: Vec<(usize, String, bool)> = positions(matches, "footage")
        .into_iter()
        .map(|(i, f)| (i, f, false))
        .chain(
            positions(matches, "holdout")
                .into_iter()
                .map(|(i, f)| (i, f, true)),
        )
        .collect();
    items.sort_by_key(|(i, _, _)| *i);
    let mut truth_of: Vec<Option<PathBuf>> = vec![None; items.len()];
    for (at, path) in truths {
        let Some(owner) = items.iter().rposition(|(i, _, _)| *i < at) else {
            bail!(
                "--ground-truth {} comes before any --footage; put it right after the footage it labels",
                path.display()
            );
        };
        if truth_of[owner].replace(path.clone()).is_some() {
            bail!(
                "--ground-truth {}: {} already has ground truth",
                path.display(),
                items[owner].1
            );
        }
    }
    let (mut footage, mut holdout) = (Vec::new(), Vec::new());
    for ((_, name, held_out), truth) in items.into_iter().zip(truth_of) {
        let f = Footage::new(&name, truth.as_deref())?;
        if held_out {
            holdout.push(f)
        } else {
            footage.push(f)
        }
    }
    Ok((footage, holdout))
}

/// A count that must be at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
