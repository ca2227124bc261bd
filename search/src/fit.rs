//! The `fit` command: feature shards to a bundle. The frames are read within the memory
//! allowed ([`sample`]), the exits chosen by the chosen strategy, and the bundle written with
//! its report and baselines. `search` ends here too, after extracting its footage.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use earlyexit::SessionOptions;
use earlyexit::bundle::{self, File, Format, Labels, Measure};
use earlyexit_graph::CutPoint;

use crate::assemble::{self, Backbone as Parts};
use crate::backbone::Backbone;
use crate::cli::{CostArg, FitArgs, FitOptions, OutputArg, Strategy as StrategyArg};
use crate::goal::Goal;
use crate::latency::Latency;
use crate::problem::{Choice, CostKind, Frames, Problem, Settings, Strategy};
use crate::report::{self, Summary};
use crate::sample;
use crate::select::{Baseline, Findings};
use crate::shard::{self, Shard};
use crate::table::Columns;
use crate::{placement, select};

pub fn run(args: &FitArgs) -> Result<()> {
    let goal = goal(&args.fit)?;
    // Before the long work, not after it.
    bundle::check_replaceable(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;
    let shards = open_all(&args.shards)?;
    // Checked against the first shard before any frame is read; the others against it then.
    let header = &shards[0].header.backbone;
    let first = shards[0].path.display();
    let input = crate::input::flags_of(&header.input)
        .with_context(|| format!("shard {first}: its input"))?;
    let output = match header.output.as_str() {
        "logits" => OutputArg::Logits,
        "probabilities" => OutputArg::Probabilities,
        other => bail!("shard {first}: output '{other}' is not logits or probabilities"),
    };
    let sha256 = shard::sha256_of(&args.backbone)?;
    if sha256 != header.sha256 {
        bail!(
            "--backbone {}: not the backbone shard {first} was extracted with (SHA-256 {} here, {} there)",
            args.backbone.display(),
            shard::short(&sha256),
            shard::short(&header.sha256)
        );
    }
    let backbone = Backbone::load(&args.backbone, &input, Some(output))?;
    let cuts: Vec<&str> = backbone
        .candidates
        .iter()
        .map(|c| c.tensor.as_str())
        .collect();
    if !cuts
        .iter()
        .copied()
        .eq(header.cuts.iter().map(|c| c.tensor.as_str()))
    {
        bail!(
            "shard {first}: its cuts are not the ones this build finds in --backbone {}; extract again with this build",
            args.backbone.display()
        );
    }
    let held_columns = held_columns(&settings(&args.fit), &backbone, &header.dims())?;
    let frames = sample::frames(&shards, budget(&args.fit), &held_columns)?;
    fit(
        &backbone,
        &args.backbone,
        frames,
        &args.fit,
        goal,
        args.threads,
        &args.out,
    )
}

/// The memory for frames, in bytes.
pub fn budget(options: &FitOptions) -> usize {
    options.feature_memory.saturating_mul(1_000_000)
}

/// The feature columns held-out frames hold at most under `settings`, for candidates of
/// feature sizes `dims`: what their share of the memory is sized by.
pub fn held_columns(
    settings: &Settings,
    backbone: &Backbone,
    dims: &[Vec<usize>],
) -> Result<Columns> {
    match settings.strategy {
        Strategy::Nas => Ok(select::held_columns_bound(
            &backbone.candidates,
            dims,
            settings.candidates,
        )),
        Strategy::Even => placement::held_columns(
            &backbone.candidates,
            backbone.graph.total_macs(),
            settings.exits,
            dims,
        ),
    }
}

/// Every shard named: files as they are, folders' `.parquet` files in name order.
fn open_all(paths: &[PathBuf]) -> Result<Vec<Shard>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("--shards {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // Hidden files are shards still being written.
                    !name.starts_with('.') && p.extension().is_some_and(|e| e == shard::EXTENSION)
                })
                .collect();
            if inside.is_empty() {
                bail!(
                    "--shards {}: no .{} files in it",
                    path.display(),
                    shard::EXTENSION
                );
            }
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    files.iter().map(|f| Shard::open(f)).collect()
}

/// Chooses the exits for `frames` of `backbone` (read from `path`) and writes the bundle.
pub fn fit(
    backbone: &Backbone,
    path: &Path,
    frames: Frames,
    options: &FitOptions,
    goal: Goal,
    threads: usize,
    out: &Path,
) -> Result<()> {
    if goal.measure == Measure::Accuracy && frames.held.all_labels().is_none() {
        bail!(
            "--target-accuracy and --max-accuracy-loss need ground truth for every held-out frame, and some have none: give --ground-truth with the footage they come from"
        );
    }
    let labels = labels(options.labels.as_deref(), backbone.classes)?;
    let settings = settings(options);
    let session = SessionOptions {
        threads,
        ..SessionOptions::default()
    };
    // Timed once the footage is decoded, so that no decoding competes for the cores.
    let latency = match settings.cost {
        CostKind::Macs => None,
        CostKind::Latency => Some(Latency::calibrated(
            &backbone.graph,
            &backbone.candidates,
            backbone.classes,
            session,
        )?),
    };
    let problem = Problem {
        settings,
        graph: &backbone.graph,
        input: backbone.input.clone(),
        goal,
        total_macs: backbone.graph.total_macs(),
        candidates: backbone.candidates.clone(),
        classes: backbone.classes,
        frames,
        latency,
    };
    let (choice, baselines, findings) = match problem.settings.strategy {
        Strategy::Even => (placement::choose_even(&problem)?, Vec::new(), None),
        Strategy::Nas => {
            let selected = select::choose(&problem)?;
            (selected.choice, selected.baselines, Some(selected.findings))
        }
    };
    let parts = Parts {
        graph: &backbone.graph,
        path,
        input: &backbone.input,
        labels: labels.as_ref(),
        output: backbone.output,
        classes: backbone.classes,
    };
    write(
        out,
        &parts,
        &problem,
        &choice,
        &baselines,
        findings.as_ref(),
    )
}

/// Writes the bundle, its baselines, `report.md` and the plot at `out`, and prints the report.
fn write(
    out: &Path,
    backbone: &Parts,
    problem: &Problem,
    choice: &Choice,
    baselines: &[Baseline],
    findings: Option<&Findings>,
) -> Result<()> {
    let (bundle, mut files) = assemble::bundle(backbone, choice)?;
    for baseline in baselines {
        let (b, parts) = assemble::bundle(backbone, &baseline.choice)?;
        let dir = format!("baselines/{}", baseline.name);
        files.extend(
            bundle::own_files(&b)
                .into_iter()
                .chain(parts)
                .map(|f| File::new(format!("{dir}/{}", f.name), f.bytes)),
        );
    }
    let latency = match &problem.latency {
        Some(l) => {
            let cuts: Vec<&CutPoint> = choice.exits.iter().map(|e| &e.cut).collect();
            let heads: Vec<_> = choice.exits.iter().map(|e| &e.head).collect();
            Some(l.structure(&cuts, &heads)?)
        }
        None => None,
    };
    let summary = Summary {
        backbone: backbone.path,
        bundle: &bundle,
        problem,
        choice,
        findings,
        latency,
    };
    let report = report::markdown(&summary);
    files.push(File::new("report.md", report.clone().into_bytes()));
    if let Some(findings) = findings {
        let svg = report::pareto_svg(problem, findings);
        files.push(File::new(report::plot::FILE, svg.into_bytes()));
    }
    bundle::write_atomically(out, &bundle, &files)
        .with_context(|| format!("--out {}: cannot write the bundle", out.display()))?;
    println!("{report}");
    println!("bundle written to {}", out.display());
    if choice.exits.is_empty() {
        // On standard error too, for scripts: a bundle that saves nothing is worth a word.
        let why = findings
            .and_then(|f| report::shortfall(problem, f))
            .unwrap_or_else(|| {
                "no thresholds keep the target on the held-out frames (report.md says more)".into()
            });
        eprintln!("warning: {} has no exits: {why}", out.display());
    }
    Ok(())
}

/// The search's settings from its flags.
pub fn settings(args: &FitOptions) -> Settings {
    Settings {
        strategy: match args.strategy {
            StrategyArg::Even => Strategy::Even,
            StrategyArg::Nas => Strategy::Nas,
        },
        cost: match args.cost {
            CostArg::Macs => CostKind::Macs,
            CostArg::Latency => CostKind::Latency,
        },
        format: match args.format {
            1 => Format::V1,
            2 => Format::V2,
            _ => Format::V3,
        },
        seed: args.seed,
        confidence: args.confidence,
        budget: args.budget,
        candidates: args.candidates,
        exits: args.exits,
    }
}

/// `--labels`, checked against the backbone's classes, as the bundle's labels file.
pub fn labels(path: Option<&Path>, classes: usize) -> Result<Option<Labels>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let names =
        bundle::read_labels(path).with_context(|| format!("--labels {}", path.display()))?;
    if names.len() != classes {
        bail!(
            "--labels {}: {} lines, the backbone has {classes} classes",
            path.display(),
            names.len()
        );
    }
    Ok(Some(Labels {
        file: "labels.txt".into(),
        names,
    }))
}

/// What the held-out frames must keep, from the target flags.
pub fn goal(args: &FitOptions) -> Result<Goal> {
    for (flag, v) in [
        ("--target-agreement", args.target_agreement),
        ("--target-accuracy", args.target_accuracy),
    ] {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            bail!("{flag} {v}: must lie in 0..1");
        }
    }
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        bail!(
            "--confidence {}: must lie strictly between 0 and 1",
            args.confidence
        );
    }
    if let Some(loss) = args.max_accuracy_loss
        && !(0.0..=1.0).contains(&loss)
    {
        bail!("--max-accuracy-loss {loss}: must lie in 0..1");
    }
    Ok(match (args.target_accuracy, args.max_accuracy_loss) {
        (Some(target), _) => Goal {
            measure: Measure::Accuracy,
            target,
            min_agreement: args.target_agreement,
            max_loss: None,
        },
        (None, Some(loss)) => Goal {
            measure: Measure::Accuracy,
            target: 0.0,
            min_agreement: args.target_agreement,
            max_loss: Some(loss),
        },
        (None, None) => Goal::agreement(args.target_agreement.unwrap_or(0.99)),
    })
}
