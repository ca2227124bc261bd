//! The `extract` command: one footage, or a time range of it, into a feature shard. `search`
//! extracts each of its footage with [`extract`] too, so both write the same shards.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::backbone::Backbone;
use crate::cli::{ExtractArgs, ProbeArgs, Role};
use crate::features::{Extractor, Source};
use crate::footage::{Footage, Sampling, TimeRange, estimate_frames, length};
use crate::problem::RUN;
use crate::shard::{self, Header, Part, Shard};

/// One footage's frames to extract.
pub struct Job<'a> {
    pub footage: &'a Footage,
    pub id: String,
    pub holdout: bool,
    pub range: TimeRange,
    pub sampling: Sampling,
    /// The share of runs kept ([`shard::keeps`]).
    pub share: f64,
    /// The frames the whole footage gives the search: the container's count, or with
    /// `sampling`, the frames it keeps of them.
    pub footage_frames: Option<usize>,
}

impl Job<'_> {
    /// The part a job writes, before any frame.
    fn part(&self) -> Part {
        Part {
            id: self.id.clone(),
            footage: self.footage.uri.clone(),
            labels: self.footage.labels.as_deref().map(shard::labels_hash),
            holdout: self.holdout,
            footage_frames: self.footage_frames,
            spread: matches!(self.sampling, Sampling::Evenly { .. }),
            share: self.share,
            start_ns: self.range.start.map(|t| t.nseconds()),
            end_ns: self.range.end.map(|t| t.nseconds()),
            decoded: 0,
            first: None,
            frames: 0,
        }
    }
}

pub fn run(args: &ExtractArgs) -> Result<()> {
    if let (Some(start), Some(end)) = (args.start, args.end)
        && end <= start
    {
        bail!("--end {end} must come after --start {start}");
    }
    let footage = Footage::new(&args.footage, args.ground_truth.as_deref())?;
    let backbone = Backbone::load(&args.backbone, &args.input, args.output)?;
    footage.check_classes(backbone.classes)?;
    let to_time = |s: f64| gst::ClockTime::from_nseconds((s * 1e9).round() as u64);
    let id = args.id.clone().unwrap_or_else(|| footage.short_name());
    let out = if args.out.is_dir() {
        args.out.join(file_name(&id, args.start, args.end))
    } else {
        args.out.clone()
    };
    // Before the long work, not after it.
    let folder = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        bail!("--out {}: no folder {}", out.display(), folder.display());
    }
    let mut extractor = backbone.extractor(args.threads)?;

    let job = Job {
        footage: &footage,
        id,
        holdout: args.role == Role::Holdout,
        range: TimeRange {
            start: args.start.map(to_time),
            end: args.end.map(to_time),
        },
        sampling: Sampling::All,
        share: args.share,
        footage_frames: estimate_frames(&footage)?,
    };
    if complete(&out, extractor.description(), &job)? {
        eprintln!("shard {} is complete: nothing to extract", out.display());
        return Ok(());
    }
    let header =
        extract(&mut extractor, &job, &out).with_context(|| format!("--out {}", out.display()))?;
    eprintln!(
        "shard {} written: {} frames of {}",
        out.display(),
        header.part.frames,
        footage.name
    );
    Ok(())
}

/// `probe`: each footage's length, one JSON object per line.
pub fn probe(args: &ProbeArgs) -> Result<()> {
    for name in &args.footage {
        let footage = Footage::new(name, None)?;
        let length = length(&footage)?;
        let line = serde_json::json!({
            "footage": name,
            "frames": length.frames,
            "seconds": length.seconds,
            "fps": length.fps,
        });
        println!("{line}");
    }
    Ok(())
}

/// A shard's file name from its footage's id and time range.
fn file_name(id: &str, start: Option<f64>, end: Option<f64>) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    match (start, end) {
        (None, None) => format!("{safe}.{}", shard::EXTENSION),
        (s, e) => format!(
            "{safe}.{:.3}-{}.{}",
            s.unwrap_or(0.0),
            e.map_or_else(|| "end".into(), |e| format!("{e:.3}")),
            shard::EXTENSION
        ),
    }
    .into()
}

/// Whether a complete shard of `job`'s frames is at `out` already; an error when something
/// else is.
fn complete(out: &Path, backbone: &shard::Backbone, job: &Job) -> Result<bool> {
    if !out.exists() {
        return Ok(false);
    }
    let there = Shard::open(out).with_context(|| {
        format!(
            "--out {} exists, and is not a whole shard; remove it to extract again",
            out.display()
        )
    })?;
    if there.header.backbone != *backbone || !there.header.part.same_request(&job.part()) {
        bail!(
            "--out {}: a shard of other frames, labels or backbone is there; remove it or choose another --out",
            out.display()
        );
    }
    Ok(true)
}

/// Extracts `job` into a shard at `out`, written whole or not at all.
pub fn extract(extractor: &mut Extractor, job: &Job, out: &Path) -> Result<Header> {
    let mut writer = shard::Writer::create(out, extractor.description().clone(), job.part())?;
    let source = Source {
        range: job.range,
        sampling: job.sampling,
        total: job.footage_frames,
        chunk: writer.batch_rows(),
    };
    let seen = extractor.extract(
        job.footage,
        source,
        |n| shard::keeps(&job.id, n, RUN as u64, job.share),
        |table, keys| writer.append(table, keys),
    )?;
    writer.finish(seen.decoded, seen.first)
}
