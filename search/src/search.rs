//! `search`: extract every candidate exit's features once, choose the exits (their positions,
//! heads and thresholds) by the chosen strategy, and write the bundle with its report.

use std::ops::Range;

use anyhow::{Context, Result, bail};
use earlyexit::bundle::{
    self, Bundle, Exit, Format, Labels, Measure, Metric, Output, Promise, Stage,
};
use earlyexit::cost::CostTable;
use earlyexit::gate::{Gate, GateWeights};
use earlyexit::graph::heads::build_head;
use earlyexit::graph::{self, CutPoint, Graph};
use earlyexit::rule;

use crate::calibrate::{ExitScores, Goal, Simulation};
use crate::cli::{CostArg, OutputArg, SearchArgs, Strategy};
use crate::features::{Extractor, FeatureTable, detect_output};
use crate::footage::{Footage, Sampling, estimate_frames};
use crate::heads::{HeadKind, Targets, TrainedHead, Training, train};
use crate::latency::Latency;
use crate::{placement, plot, report};

/// The share of each footage held out, at its end, when no `--holdout` is given.
const HOLDOUT_SHARE: f64 = 0.2;

/// Frames, split for their roles.
pub struct Frames {
    /// Heads are trained on these.
    pub train: FeatureTable,
    /// Thresholds are calibrated and structures compared on these.
    pub held: FeatureTable,
    /// Each footage's frames within `held`, in time order.
    pub held_ranges: Vec<Range<usize>>,
    /// Ground truth of every training frame, when all have it.
    pub train_labels: Option<Vec<u32>>,
    /// With ground truth: half the label, half the backbone's probabilities, per frame.
    pub blended: Option<Vec<f32>>,
}

impl Frames {
    /// What heads learn: the ground truth when every training frame has it, else the
    /// backbone's answers, as classes or, when `distill`, as probabilities. With ground truth
    /// and `distill`, a blend of both: a head that also learns where the backbone hesitates
    /// agrees with it more often.
    pub fn targets(&self, distill: bool) -> Targets<'_> {
        match (&self.train_labels, &self.blended, distill) {
            (Some(_), Some(blended), true) => Targets::Soft(blended),
            (Some(labels), _, _) => Targets::Hard(labels),
            (None, _, true) => Targets::Soft(&self.train.soft),
            (None, _, false) => Targets::Hard(&self.train.teacher),
        }
    }
}

/// What the search knows before choosing.
pub struct Problem<'a> {
    pub args: &'a SearchArgs,
    pub graph: &'a Graph,
    pub goal: Goal,
    pub candidates: Vec<CutPoint>,
    pub total_macs: u64,
    pub classes: usize,
    pub frames: Frames,
    /// Measured times with `--cost latency`; structures are costed by MACs without.
    pub latency: Option<Latency>,
}

impl Problem<'_> {
    /// The cost table of a structure cut at `cuts` (candidates, in order) with exit heads of
    /// cost `heads` (one per stage, 0 for the last): MACs, or measured nanoseconds against the
    /// uncut backbone's.
    pub fn cost_table(&self, cuts: &[&CutPoint], heads: Vec<u64>) -> Result<CostTable> {
        match &self.latency {
            Some(l) => CostTable::with_backbone(l.segments(cuts)?, heads, l.backbone())
                .context("the backbone took no measurable time"),
            None => CostTable::new(segment_macs(self, cuts), heads)
                .context("the backbone counts no MACs, so cost cannot be measured"),
        }
    }

    /// The cost of `head` trained at candidate `candidate`, in the unit of [`Self::cost_table`].
    pub fn head_cost(&self, candidate: usize, head: &TrainedHead) -> Result<u64> {
        match &self.latency {
            Some(l) => l.head(candidate, head),
            None => head_macs(self, &self.candidates[candidate], head),
        }
    }

    /// The share of the backbone's cost spent before candidate `candidate`.
    pub fn share_before(&self, candidate: usize) -> f64 {
        match &self.latency {
            Some(l) => l.before(candidate) as f64 / l.backbone() as f64,
            None => self.candidates[candidate].macs_before as f64 / self.total_macs as f64,
        }
    }
}

/// One exit of the chosen structure.
pub struct ChosenExit {
    pub cut: CutPoint,
    pub head: TrainedHead,
    pub threshold: f64,
}

/// The chosen structure and what is known of it.
pub struct Choice {
    pub exits: Vec<ChosenExit>,
    pub metric: Metric,
    /// Format 2: the gate's inputs and each exit's weights; the exits' thresholds are then
    /// on the gate's probability.
    pub gate: Option<(Gate, Vec<GateWeights>)>,
    pub promise: Option<Promise>,
    /// No configuration tried certified the target: the promise is the bound the chosen one
    /// did certify.
    pub uncertified: bool,
    /// The structure on all held-out frames, in time order: what `evaluate` on the held-out
    /// footage reproduces.
    pub held: Simulation,
    /// Extra sections for the report.
    pub notes: String,
    /// Baseline structures, written as bundles under `baselines/NAME/`.
    pub baselines: Vec<(&'static str, Choice)>,
    /// The Pareto front with the baselines marked, as SVG, when the strategy has a front.
    pub plot: Option<String>,
}

pub fn run(args: &SearchArgs, footage: &[Footage], holdout: &[Footage]) -> Result<()> {
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
    let classes = match graph.output().shape.as_slice() {
        [1, c] if *c > 0 => *c as usize,
        other => bail!(
            "backbone {}: the output must be [N, classes], found {other:?}",
            args.backbone.display()
        ),
    };
    for f in footage.iter().chain(holdout) {
        f.check_classes(classes)?;
    }
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
    let total_macs = graph.total_macs();
    let cut_points = graph.cut_points();
    let candidates: Vec<CutPoint> = placement::candidates(&cut_points, total_macs)
        .into_iter()
        .cloned()
        .collect();
    if candidates.is_empty() {
        bail!(
            "backbone {}: no cut point is worth an exit",
            args.backbone.display()
        );
    }
    let options = earlyexit::SessionOptions {
        threads: args.threads,
    };
    let mut extractor =
        Extractor::new(&graph, &candidates, input.clone(), output, classes, options)?;
    let frames = frames(args, &mut extractor, footage, holdout)?;
    drop(extractor);
    // Timed once the footage is decoded, so that no decoding competes for the cores.
    let latency = match args.cost {
        CostArg::Macs => None,
        CostArg::Latency => Some(Latency::measure(&graph, &candidates, classes, options)?),
    };
    let problem = Problem {
        args,
        graph: &graph,
        goal,
        candidates,
        total_macs,
        classes,
        frames,
        latency,
    };
    let choice = match args.strategy {
        Strategy::Even => placement::choose_even(&problem)?,
        Strategy::Nas => crate::select::choose(&problem)?,
    };

    let describe = |choice: &Choice| -> Result<(Bundle, Vec<File>)> {
        bundle_parts(
            &graph,
            choice,
            &args.backbone,
            &input,
            labels.clone(),
            output,
            classes,
        )
    };
    let (bundle, mut files) = describe(&choice)?;
    for (name, baseline) in &choice.baselines {
        let (b, parts) = describe(baseline)?;
        let dir = format!("baselines/{name}");
        files.extend(
            bundle::own_files(&b)
                .into_iter()
                .chain(parts)
                .map(|(n, bytes)| (format!("{dir}/{n}"), bytes)),
        );
    }
    let held = &problem.frames.held;
    let backbone_accuracy = held
        .all_labels()
        .map(|t| crate::calibrate::share_alike(&t, &held.teacher));
    let summary = report::Summary {
        backbone: &args.backbone.display().to_string(),
        bundle: &bundle,
        cuts: choice
            .exits
            .iter()
            .map(|e| {
                (
                    e.cut.tensor.clone(),
                    e.head.describe(),
                    e.cut.macs_before as f64 / total_macs as f64,
                )
            })
            .collect(),
        train_frames: problem.frames.train.frames(),
        holdout_frames: held.frames(),
        trained_on: match problem.frames.targets(args.strategy == Strategy::Nas) {
            Targets::Hard(_) if problem.frames.train_labels.is_some() => "ground truth",
            Targets::Soft(_) if problem.frames.train_labels.is_some() => {
                "ground truth blended with the backbone's probabilities"
            }
            Targets::Hard(_) => "the backbone's answers",
            Targets::Soft(_) => "the backbone's probabilities (distillation)",
        },
        goal,
        holdout: &choice.held,
        backbone_accuracy,
        cost: match args.cost {
            CostArg::Macs => report::Cost::Macs,
            CostArg::Latency => report::Cost::Latency,
        },
        latency: match &problem.latency {
            Some(l) => Some(l.section(&choice.exits, choice.held.mean_cost)?),
            None => None,
        },
        notes: &choice.notes,
        plot: choice.plot.as_ref().map(|_| plot::FILE),
    };
    let report = report::markdown(&summary);
    files.push(("report.md".into(), report.clone().into_bytes()));
    if let Some(svg) = &choice.plot {
        files.push((plot::FILE.into(), svg.clone().into_bytes()));
    }
    bundle::write_atomically(&args.out, &bundle, &files)
        .with_context(|| format!("--out {}: cannot write the bundle", args.out.display()))?;
    println!("{report}");
    println!("bundle written to {}", args.out.display());
    if choice.exits.is_empty() {
        // On standard error too, for scripts: a bundle that saves nothing is worth a word.
        eprintln!(
            "warning: {} has no exits: no configuration keeps the target on the held-out frames (report.md, under Search and Certificate, says why)",
            args.out.display()
        );
    } else if choice.uncertified {
        // The bundle is written, but short of the target.
        eprintln!(
            "warning: no configuration tried certifies the target on the {} certifying frames; {} promises only what they did certify (its `promise`, and report.md under Certificate)",
            choice.promise.as_ref().map_or(0, |p| p.frames),
            args.out.display()
        );
    }
    Ok(())
}

/// A file of a bundle: its name inside the bundle's folder, and its bytes.
type File = (String, Vec<u8>);

/// A choice as a bundle: its description and its ONNX files (segments and heads).
fn bundle_parts(
    graph: &Graph,
    choice: &Choice,
    backbone: &std::path::Path,
    input: &earlyexit::bundle::InputSpec,
    labels: Option<Labels>,
    output: Output,
    classes: usize,
) -> Result<(Bundle, Vec<File>)> {
    let cuts: Vec<&str> = choice.exits.iter().map(|e| e.cut.tensor.as_str()).collect();
    let segments = graph.split(&cuts)?;
    let heads = choice
        .exits
        .iter()
        .map(|e| build_head(&e.head.spec(), &e.cut.shape, classes, graph.opset()))
        .collect::<Result<Vec<_>, _>>()?;
    let last = segments.len() - 1;
    let stages = segments
        .iter()
        .enumerate()
        .map(|(k, s)| Stage {
            segment: format!("stage-{k}.onnx"),
            macs: Some(s.macs),
            exit: (k < last).then(|| Exit {
                head: format!("exit-{k}.onnx"),
                threshold: choice.exits[k].threshold,
                macs: Some(heads[k].macs),
                gate: choice.gate.as_ref().map(|(_, w)| w[k].clone()),
            }),
        })
        .collect();
    let bundle = Bundle {
        file: Default::default(),
        // Format 1 whenever it can say everything, so every reader takes the bundle.
        format: if choice.gate.is_some() {
            Format::V2
        } else {
            Format::V1
        },
        name: backbone
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned()),
        input: input.clone(),
        labels,
        metric: choice.metric,
        gate: choice.gate.as_ref().map(|(g, _)| g.clone()),
        promise: choice.promise.clone(),
        stages,
        output,
    };
    let mut files: Vec<File> = Vec::new();
    for (k, s) in segments.iter().enumerate() {
        files.push((format!("stage-{k}.onnx"), graph::encode_model(&s.model)));
    }
    for (k, h) in heads.iter().enumerate() {
        files.push((format!("exit-{k}.onnx"), graph::encode_model(&h.model)));
    }
    Ok((bundle, files))
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

/// Extracts every footage into training and held-out frames.
fn frames(
    args: &SearchArgs,
    extractor: &mut Extractor,
    footage: &[Footage],
    holdout: &[Footage],
) -> Result<Frames> {
    let per_footage = args
        .max_frames
        .map(|m| (m / (footage.len() + holdout.len()).max(1)).max(1));
    let mut train = FeatureTable::default();
    let mut held = FeatureTable::default();
    let mut held_ranges = Vec::new();
    let mut add_held = |held: &mut FeatureTable, part: FeatureTable| {
        let start = held.frames();
        held_ranges.push(start..start + part.frames());
        held.extend(part);
    };
    let all = footage
        .iter()
        .map(|f| (f, false))
        .chain(holdout.iter().map(|f| (f, true)));
    for (f, is_holdout) in all {
        let total = estimate_frames(f)?;
        let sampling = per_footage.map_or(Sampling::All, |b| Sampling::at_most(b, total));
        let table = extractor.extract(f, total, sampling)?;
        if is_holdout {
            add_held(&mut held, table);
        } else if holdout.is_empty() {
            // Neighbouring frames are near copies: hold out the end in time, not a random share.
            let n = table.frames();
            let split = ((n as f64) * (1.0 - HOLDOUT_SHARE)).round() as usize;
            let split = split.clamp(1, n);
            add_held(&mut held, table.slice(split..n));
            train.extend(table.slice(0..split));
        } else {
            train.extend(table);
        }
    }
    if train.frames() == 0 || held.frames() == 0 {
        bail!(
            "too few frames: {} to train and {} held out",
            train.frames(),
            held.frames()
        );
    }
    let train_labels = train.all_labels();
    let blended = train_labels.as_ref().map(|labels| {
        let mut p: Vec<f32> = train.soft.iter().map(|v| 0.5 * v).collect();
        for (row, &l) in p.chunks_exact_mut(train.classes).zip(labels) {
            if let Some(v) = row.get_mut(l as usize) {
                *v += 0.5;
            }
        }
        p
    });
    Ok(Frames {
        train,
        held,
        held_ranges,
        train_labels,
        blended,
    })
}

/// Trains a head of `kind` on candidate `cut` (an index into the problem's candidates), on
/// soft targets when `distill` and there is no ground truth.
pub fn train_head(
    problem: &Problem,
    cut: usize,
    kind: HeadKind,
    distill: bool,
    training: &Training,
) -> Result<TrainedHead> {
    let (x, d) = problem.frames.train.column(cut, kind.pool_index());
    let targets = problem.frames.targets(distill);
    train(kind, x, d, targets, problem.classes, training)
}

/// The MACs of a trained head placed at `cut`.
fn head_macs(problem: &Problem, cut: &CutPoint, head: &TrainedHead) -> Result<u64> {
    Ok(build_head(
        &head.spec(),
        &cut.shape,
        problem.classes,
        problem.graph.opset(),
    )?
    .macs)
}

/// MACs of each segment when the backbone is cut at `cuts` (in order).
fn segment_macs(problem: &Problem, cuts: &[&CutPoint]) -> Vec<u64> {
    let mut bounds: Vec<u64> = cuts.iter().map(|c| c.macs_before).collect();
    bounds.push(problem.total_macs);
    let mut previous = 0;
    bounds
        .into_iter()
        .map(|b| {
            let m = b - previous;
            previous = b;
            m
        })
        .collect()
}

/// A head's probabilities for every frame of `table`, rows of `head.classes`: the softmax of
/// its logits, or for an ensemble the mean of its members'.
fn probabilities(head: &TrainedHead, table: &FeatureTable, cut: usize) -> Result<Vec<f32>> {
    if head.kind == HeadKind::Ensemble {
        let mut mean = vec![0f32; table.frames() * head.classes];
        let share = 1.0 / head.members().len().max(1) as f32;
        for member in head.members() {
            for (m, p) in mean.iter_mut().zip(probabilities(member, table, cut)?) {
                *m += share * p;
            }
        }
        return Ok(mean);
    }
    let (x, _) = table.column(cut, head.kind.pool_index());
    let mut probs = Vec::new();
    let mut all = Vec::new();
    for row in head.logits(x)?.chunks_exact(head.classes) {
        rule::softmax_into(row, &mut probs);
        all.extend_from_slice(&probs);
    }
    Ok(all)
}

/// A head's class and score under `metric` for every frame of `table`, with the shared exit rule.
pub fn score(
    head: &TrainedHead,
    table: &FeatureTable,
    cut: usize,
    metrics: &[Metric],
) -> Result<Vec<ExitScores>> {
    let mut out: Vec<ExitScores> = metrics
        .iter()
        .map(|_| ExitScores {
            class: Vec::new(),
            score: Vec::new(),
        })
        .collect();
    for probs in probabilities(head, table, cut)?.chunks_exact(head.classes) {
        for (m, scores) in metrics.iter().zip(out.iter_mut()) {
            let v = rule::verdict(*m, probs);
            scores.class.push(v.class_id as u32);
            scores.score.push(v.score);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ensemble answers with the mean of its members' probabilities, each member reading
    /// its own pooling of the same cut; the metrics follow from that mean.
    #[test]
    fn an_ensemble_scores_the_mean_of_its_members() {
        let (frames, classes) = (40usize, 3usize);
        // One cut, global (2 features) and 2×2 (8 features) poolings.
        let dims = vec![2usize, 8];
        let columns: Vec<Vec<f32>> = dims
            .iter()
            .map(|&d| {
                (0..frames * d)
                    .map(|i| ((i * 7919 + d) % 23) as f32 / 23.0 - 0.5)
                    .collect()
            })
            .collect();
        let table = FeatureTable {
            columns: vec![columns],
            dims: vec![dims],
            teacher: (0..frames).map(|i| (i % classes) as u32).collect(),
            labels: vec![None; frames],
            classes,
            ..FeatureTable::default()
        };
        let training = Training {
            epochs: 3,
            ..Training::default()
        };
        let members: Vec<TrainedHead> = [HeadKind::LinearGap, HeadKind::LinearGrid2]
            .into_iter()
            .map(|k| {
                let (x, d) = table.column(0, k.pool_index());
                train(k, x, d, Targets::Hard(&table.teacher), classes, &training).unwrap()
            })
            .collect();
        let ensemble = TrainedHead::ensemble(members.clone());
        let mean = probabilities(&ensemble, &table, 0).unwrap();
        let (a, b) = (
            probabilities(&members[0], &table, 0).unwrap(),
            probabilities(&members[1], &table, 0).unwrap(),
        );
        for ((m, x), y) in mean.iter().zip(&a).zip(&b) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6);
        }
        let scores = score(&ensemble, &table, 0, &[Metric::MaxProb]).unwrap();
        for (f, row) in mean.chunks_exact(classes).enumerate() {
            let v = rule::verdict(Metric::MaxProb, row);
            assert_eq!(scores[0].class[f], v.class_id as u32);
            assert_eq!(scores[0].score[f], v.score);
        }
        // The members disagree somewhere, or the test shows nothing.
        assert!(
            a.chunks_exact(classes)
                .zip(b.chunks_exact(classes))
                .any(|(x, y)| (x[0] - y[0]).abs() > 1e-3)
        );
        assert_eq!(ensemble.describe(), "ensemble (gap-linear + grid2-linear)");
    }
}
