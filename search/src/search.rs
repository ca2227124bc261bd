//! The `search` command: the problem from the flags and the footage, the exits chosen by the
//! chosen strategy, and the bundle written with its report and baselines.

use std::path::Path;

use anyhow::{Context, Result, bail};
use earlyexit::SessionOptions;
use earlyexit::bundle::{self, File, Format, Labels, Measure};
use earlyexit::rule::Output;
use earlyexit_graph::{CutPoint, Graph};

use crate::assemble::{self, Backbone};
use crate::cli::{CostArg, OutputArg, SearchArgs, Strategy as StrategyArg};
use crate::features::{Extractor, detect_output};
use crate::footage::Footage;
use crate::goal::Goal;
use crate::latency::Latency;
use crate::problem::{Choice, CostKind, Frames, Problem, Settings, Strategy};
use crate::report::{self, Summary};
use crate::select::{Baseline, Findings};
use crate::{placement, select};

pub fn run(args: &SearchArgs, footage: &[Footage], holdout: &[Footage]) -> Result<()> {
    let settings = settings(args);
    let goal = goal(args)?;
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
    let (graph, input) = crate::input::load_backbone(&args.backbone, &args.input)?;
    let output = match args.output {
        Some(OutputArg::Logits) => Output::Logits,
        Some(OutputArg::Probabilities) => Output::Probabilities,
        None => detect_output(&graph),
    };
    let classes = classes(&graph, &args.backbone)?;
    for f in footage.iter().chain(holdout) {
        f.check_classes(classes)?;
    }
    let labels = labels(args.labels.as_deref(), classes)?;
    let candidates = candidates(&graph, &args.backbone)?;
    let options = SessionOptions {
        threads: args.threads,
        ..SessionOptions::default()
    };
    let mut extractor =
        Extractor::new(&graph, &candidates, input.clone(), output, classes, options)?;
    let frames = Frames::extract(&mut extractor, footage, holdout, settings.max_frames)?;
    drop(extractor);
    // Timed once the footage is decoded, so that no decoding competes for the cores.
    let latency = match settings.cost {
        CostKind::Macs => None,
        CostKind::Latency => Some(Latency::calibrated(&graph, &candidates, classes, options)?),
    };
    let problem = Problem {
        settings,
        graph: &graph,
        input: input.clone(),
        goal,
        total_macs: graph.total_macs(),
        candidates,
        classes,
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
    let backbone = Backbone {
        graph: &graph,
        path: &args.backbone,
        input: &input,
        labels: labels.as_ref(),
        output,
        classes,
    };
    write(
        &args.out,
        &backbone,
        &problem,
        &choice,
        &baselines,
        findings.as_ref(),
    )
}

/// Writes the bundle, its baselines, `report.md` and the plot at `out`, and prints the report.
fn write(
    out: &Path,
    backbone: &Backbone,
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
fn settings(args: &SearchArgs) -> Settings {
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
        max_frames: args.max_frames,
    }
}

/// The number of classes the backbone predicts, from its output `[N, classes]`.
fn classes(graph: &Graph, backbone: &Path) -> Result<usize> {
    match graph.output().shape.as_slice() {
        [1, c] if *c > 0 => Ok(*c as usize),
        other => bail!(
            "backbone {}: the output must be [N, classes], found {other:?}",
            backbone.display()
        ),
    }
}

/// `--labels`, checked against the backbone's classes, as the bundle's labels file.
fn labels(path: Option<&Path>, classes: usize) -> Result<Option<Labels>> {
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

/// The backbone's cut points worth an exit.
fn candidates(graph: &Graph, backbone: &Path) -> Result<Vec<CutPoint>> {
    let cut_points = graph.cut_points();
    let candidates: Vec<CutPoint> = placement::candidates(&cut_points, graph.total_macs())
        .into_iter()
        .cloned()
        .collect();
    if candidates.is_empty() {
        bail!(
            "backbone {}: no cut point is worth an exit",
            backbone.display()
        );
    }
    Ok(candidates)
}

/// What the held-out frames must keep, from the target flags.
fn goal(args: &SearchArgs) -> Result<Goal> {
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
