//! The `search` command: `extract` of every footage into shards in a temporary folder, then
//! `fit` on them, so that one command and the two steps give the same bundle.

use std::collections::HashSet;

use anyhow::{Context, Result, bail};
use earlyexit::bundle::{self, Measure};

use crate::backbone::Backbone;
use crate::cli::SearchArgs;
use crate::extract::{self, Job};
use crate::footage::{Footage, Sampling, TimeRange, estimate_frames};
use crate::problem::FrameBytes;
use crate::shard::Shard;
use crate::{fit, sample};

pub fn run(args: &SearchArgs, footage: &[Footage], holdout: &[Footage]) -> Result<()> {
    let goal = fit::goal(&args.fit)?;
    // Before the long work, not after it.
    bundle::check_replaceable(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;
    let held_out = if holdout.is_empty() { footage } else { holdout };
    if goal.measure == Measure::Accuracy
        && let Some(f) = held_out.iter().find(|f| f.labels.is_none())
    {
        bail!(
            "--target-accuracy and --max-accuracy-loss need ground truth for every held-out frame, and footage {} has none: give --ground-truth after each --holdout (or after each --footage when holding out its end)",
            f.name
        );
    }
    let backbone = Backbone::load(&args.backbone, &args.input, args.output)?;
    for f in footage.iter().chain(holdout) {
        f.check_classes(backbone.classes)?;
    }
    fit::labels(args.fit.labels.as_deref(), backbone.classes)?;
    let mut extractor = backbone.extractor(args.threads)?;

    let budget = fit::budget(&args.fit);
    let description = extractor.description();
    let held_columns =
        fit::held_columns(&fit::settings(&args.fit), &backbone, &description.dims())?;
    let jobs = jobs(
        footage,
        holdout,
        args.max_frames,
        sample::bytes(description, &held_columns),
        budget,
    )?;
    let dir = tempfile::Builder::new()
        .prefix("earlyexit-shards-")
        .tempdir()
        .context("cannot make a temporary folder for the shards")?;
    let mut shards = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let path = dir.path().join(format!("{i}.parquet"));
        extract::extract(&mut extractor, job, &path)?;
        shards.push(Shard::open(&path)?);
    }
    drop(extractor);
    let frames = sample::frames(&shards, budget, &held_columns)?;
    fit::fit(
        &backbone,
        &args.backbone,
        frames,
        &args.fit,
        goal,
        args.threads,
        &args.out,
    )
}

/// What to extract of each footage: every frame, or with `max_frames`, that many in all spread
/// evenly; and when the footage would not fit in `budget` bytes of features, only runs of
/// frames `fit` may keep, so that no time goes on frames it drops.
fn jobs<'a>(
    footage: &'a [Footage],
    holdout: &'a [Footage],
    max_frames: Option<usize>,
    bytes: FrameBytes,
    budget: usize,
) -> Result<Vec<Job<'a>>> {
    let all: Vec<(&Footage, bool)> = footage
        .iter()
        .map(|f| (f, false))
        .chain(holdout.iter().map(|f| (f, true)))
        .collect();
    let per_footage = max_frames.map(|m| (m / all.len().max(1)).max(1));
    let short: Vec<String> = all.iter().map(|(f, _)| f.short_name()).collect();
    // Ids name footage in the shards: file names, unless two footage share one.
    let unique = short.iter().collect::<HashSet<_>>().len() == short.len();
    let mut jobs = Vec::with_capacity(all.len());
    for ((f, holdout), short) in all.into_iter().zip(short) {
        let total = estimate_frames(f)?;
        let sampling = match per_footage {
            Some(n) => Sampling::at_most(n, total),
            None => Sampling::All,
        };
        jobs.push(Job {
            footage: f,
            id: if unique { short } else { f.name.clone() },
            holdout,
            range: TimeRange::default(),
            sampling,
            share: 1.0,
            footage_frames: sampling.expected(total),
        });
    }
    // Only the frames `fit` may keep are run through the backbone: a footage's frames take its
    // role's share, or, when its end is held out, the larger of the two shares.
    let known: Option<Vec<(usize, bool)>> = jobs
        .iter()
        .map(|j| j.footage_frames.map(|n| (n, j.holdout)))
        .collect();
    if let Some(counts) = known {
        let (train, held) = sample::roles(&counts);
        let any_held_out = jobs.iter().any(|j| j.holdout);
        // The thresholds `fit` will take over every frame of the footage: extracting only the
        // runs under them gives it the same frames.
        let expected = jobs.iter().zip(&counts).flat_map(|(job, &(n, _))| {
            let boundary = (!any_held_out).then(|| sample::split(n) as u64);
            (0..n as u64).map(move |f| {
                let held = job.holdout || boundary.is_some_and(|b| f >= b);
                (job.id.as_str(), f, held)
            })
        });
        let shares = sample::thresholds(expected, train, held, bytes, budget);
        for job in &mut jobs {
            job.share = match (job.holdout, any_held_out) {
                (true, _) => shares.held,
                (false, true) => shares.train,
                (false, false) => shares.train.max(shares.held),
            };
        }
    }
    Ok(jobs)
}
