//! `search`: pick exit positions, train a head at each on the training frames, calibrate the
//! thresholds on held-out frames, and write the bundle with its report.

use anyhow::{Context, Result, bail};
use earlyexit::bundle::{self, Bundle, Exit, Format, Labels, Measure, Metric, Output, Stage};
use earlyexit::cost::CostTable;
use earlyexit::graph::heads::{HeadSpec, Pool, build_head};
use earlyexit::graph::{self, Graph};
use earlyexit::{SessionOptions, rule};

use crate::calibrate::{self, ExitScores, Goal, Reference};
use crate::cli::{OutputArg, SearchArgs};
use crate::features::{Extractor, Sample, detect_output};
use crate::footage::{Footage, estimate_frames};
use crate::heads::{LinearHead, Training, train_linear};
use crate::{placement, report};

/// The share of each footage held out, at its end, when no `--holdout` is given.
const HOLDOUT_SHARE: f64 = 0.2;

pub fn run(args: &SearchArgs, footage: &[Footage], holdout: &[Footage]) -> Result<()> {
    let goal = goal(args)?;
    let graph = Graph::load(&args.backbone)?;
    let input = crate::input::resolve(&graph.input().shape, &args.input)
        .with_context(|| format!("backbone {}", args.backbone.display()))?;
    let output = match args.output {
        Some(OutputArg::Logits) => Output::Logits,
        Some(OutputArg::Probabilities) => Output::Probabilities,
        None => detect_output(&graph),
    };
    let classes = match graph.output().shape.as_slice() {
        [1, c] if *c > 0 => *c as usize,
        other => bail!(
            "backbone {}: the output must be [N, classes], found {other:?}",
            args.backbone.display()
        ),
    };
    let labels = match &args.labels {
        Some(path) => {
            let names = bundle::read_labels(path)
                .with_context(|| format!("--labels {}", path.display()))?;
            if names.len() != classes {
                bail!(
                    "--labels {}: {} lines, the backbone has {classes} classes",
                    path.display(),
                    names.len()
                );
            }
            Some(Labels {
                file: "labels.txt".into(),
                names,
            })
        }
        None => None,
    };

    let total = graph.total_macs();
    let cut_points = graph.cut_points();
    let candidates = placement::candidates(&cut_points, total);
    let chosen = placement::evenly_by_macs(&candidates, total, args.exits)?;
    let cut_names: Vec<&str> = chosen.iter().map(|c| c.tensor.as_str()).collect();
    eprintln!(
        "exits after: {}",
        chosen
            .iter()
            .map(|c| format!(
                "{} ({:.0}% of MACs)",
                c.tensor,
                100.0 * c.macs_before as f64 / total as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let options = SessionOptions {
        threads: args.threads,
    };
    let (train, held) = frames(
        args,
        &graph,
        &cut_names,
        input.clone(),
        options,
        footage,
        holdout,
    )?;
    if goal.measure == Measure::Accuracy && held.iter().any(|s| s.label.is_none()) {
        bail!(
            "--target-accuracy needs ground truth for every held-out frame: give --ground-truth after each --holdout (or after each --footage when holding out its end)"
        );
    }
    let trained_on_labels = train.iter().all(|s| s.label.is_some());
    let targets: Vec<u32> = train
        .iter()
        .map(|s| {
            if trained_on_labels {
                s.label.unwrap_or(s.teacher)
            } else {
                s.teacher
            }
        })
        .collect();

    let segments = graph.split(&cut_names)?;
    let metric = Metric::MaxProb;
    let mut heads = Vec::new();
    let mut exit_scores = Vec::new();
    for (k, cut) in chosen.iter().enumerate() {
        let bar = crate::progress::bar(&format!("training head {}/{}", k + 1, chosen.len()), None);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let (x, d) = stack(&train, k);
        let training = Training {
            seed: args.seed.wrapping_add(k as u64),
            ..Training::default()
        };
        let head = train_linear(&x, d, &targets, classes, &training)?;
        bar.finish_and_clear();
        let (hx, _) = stack(&held, k);
        exit_scores.push(score(&head, &hx, metric)?);
        let spec = HeadSpec::Linear {
            pool: Pool::Global,
            weight: head.weight.clone(),
            bias: head.bias.clone(),
        };
        heads.push(build_head(&spec, &cut.shape, classes, graph.opset())?);
    }

    let mut head_macs: Vec<u64> = heads.iter().map(|h| h.macs).collect();
    head_macs.push(0);
    let costs = CostTable::new(segments.iter().map(|s| s.macs).collect(), head_macs)
        .context("the backbone counts no MACs, so cost cannot be measured")?;
    let teacher: Vec<u32> = held.iter().map(|s| s.teacher).collect();
    let truth: Option<Vec<u32>> = held.iter().map(|s| s.label).collect();
    let reference = Reference {
        teacher: &teacher,
        labels: truth.as_deref(),
    };
    let (thresholds, sim) = calibrate::calibrate(metric, &exit_scores, &reference, &costs, &goal);

    let last = segments.len() - 1;
    let stages = segments
        .iter()
        .enumerate()
        .map(|(k, s)| Stage {
            segment: format!("stage-{k}.onnx"),
            macs: Some(s.macs),
            exit: (k < last).then(|| Exit {
                head: format!("exit-{k}.onnx"),
                threshold: thresholds[k],
                macs: Some(heads[k].macs),
            }),
        })
        .collect();
    let bundle = Bundle {
        file: Default::default(),
        format: Format::V1,
        name: args
            .backbone
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned()),
        input,
        labels,
        metric,
        promise: None,
        stages,
        output,
    };
    let backbone_accuracy = truth.as_ref().map(|t| {
        t.iter().zip(&teacher).filter(|(a, b)| a == b).count() as f64 / t.len().max(1) as f64
    });
    let summary = report::Summary {
        backbone: &args.backbone.display().to_string(),
        bundle: &bundle,
        cuts: chosen
            .iter()
            .map(|c| (c.tensor.clone(), c.macs_before as f64 / total as f64))
            .collect(),
        train_frames: train.len(),
        holdout_frames: held.len(),
        trained_on: if trained_on_labels {
            "ground truth"
        } else {
            "the backbone's answers"
        },
        measure: goal.measure,
        target: goal.target,
        holdout: &sim,
        backbone_accuracy,
    };
    let report = report::markdown(&summary);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, s) in segments.iter().enumerate() {
        files.push((format!("stage-{k}.onnx"), graph::encode_model(&s.model)));
    }
    for (k, h) in heads.iter().enumerate() {
        files.push((format!("exit-{k}.onnx"), graph::encode_model(&h.model)));
    }
    files.push(("report.md".into(), report.clone().into_bytes()));
    bundle::write_atomically(&args.out, &bundle, &files)
        .with_context(|| format!("--out {}: cannot write the bundle", args.out.display()))?;
    println!("{report}");
    println!("bundle written to {}", args.out.display());
    Ok(())
}

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
    Ok(match args.target_accuracy {
        Some(target) => Goal {
            measure: Measure::Accuracy,
            target,
            min_agreement: args.target_agreement,
        },
        None => Goal {
            measure: Measure::Agreement,
            target: args.target_agreement.unwrap_or(0.99),
            min_agreement: None,
        },
    })
}

/// Extracts every footage; returns the training frames and the held-out frames.
fn frames(
    args: &SearchArgs,
    graph: &Graph,
    cuts: &[&str],
    input: earlyexit::bundle::InputSpec,
    options: SessionOptions,
    footage: &[Footage],
    holdout: &[Footage],
) -> Result<(Vec<Sample>, Vec<Sample>)> {
    let mut extractor = Extractor::new(graph, cuts, input, Pool::Global, options)?;
    let per_footage = args
        .max_frames
        .map(|m| (m / (footage.len() + holdout.len()).max(1)).max(1));
    let (mut train, mut held) = (Vec::new(), Vec::new());
    let all = footage
        .iter()
        .map(|f| (f, false))
        .chain(holdout.iter().map(|f| (f, true)));
    for (f, is_holdout) in all {
        let keep_every = match per_footage {
            Some(budget) => estimate_frames(f)?.map_or(1, |n| n.div_ceil(budget).max(1)),
            None => 1,
        };
        let samples = extractor.extract(f, keep_every, per_footage)?;
        if is_holdout {
            held.extend(samples);
        } else if holdout.is_empty() {
            // Neighbouring frames are near copies: hold out the end in time, not a random share.
            let split = ((samples.len() as f64) * (1.0 - HOLDOUT_SHARE)).round() as usize;
            let mut samples = samples;
            held.extend(samples.split_off(split.clamp(1, samples.len())));
            train.extend(samples);
        } else {
            train.extend(samples);
        }
    }
    if train.is_empty() || held.is_empty() {
        bail!(
            "too few frames: {} to train and {} held out",
            train.len(),
            held.len()
        );
    }
    Ok((train, held))
}

/// Row-major features of exit `k` for all samples, and their length.
fn stack(samples: &[Sample], k: usize) -> (Vec<f32>, usize) {
    let d = samples.first().map_or(0, |s| s.features[k].len());
    let mut x = Vec::with_capacity(samples.len() * d);
    for s in samples {
        x.extend_from_slice(&s.features[k]);
    }
    (x, d)
}

/// The exit's class and score for every row, with the shared exit rule.
fn score(head: &LinearHead, x: &[f32], metric: Metric) -> Result<ExitScores> {
    let logits = head.logits(x)?;
    let mut probs = Vec::new();
    let (mut class, mut scores) = (Vec::new(), Vec::new());
    for row in logits.chunks_exact(head.classes) {
        rule::softmax_into(row, &mut probs);
        let v = rule::verdict(metric, &probs);
        class.push(v.class_id as u32);
        scores.push(v.score);
    }
    Ok(ExitScores {
        class,
        score: scores,
    })
}
