//! `report.md` and `pareto.svg`, written beside the bundle: the search's data rendered, and the
//! only place its prose is written.

mod figure;
mod latency;
pub mod plot;
mod selection;
mod text;

use std::fmt::Write;
use std::path::Path;

use earlyexit::bundle::{Bundle, Measure};

pub use self::selection::shortfall;
use self::text::{inputs_list, pct};
use crate::heads::Targets;
use crate::latency::StructureTimes;
use crate::problem::{Choice, CostKind, Problem, Strategy};
use crate::select::Findings;

/// What the report says about a search.
pub struct Summary<'a> {
    pub backbone: &'a Path,
    pub bundle: &'a Bundle,
    pub problem: &'a Problem<'a>,
    pub choice: &'a Choice,
    /// What the exit search found on its way (`--strategy nas`).
    pub findings: Option<&'a Findings>,
    /// With `--cost latency`: the chosen structure's measured times.
    pub latency: Option<StructureTimes>,
}

/// The report's Markdown.
pub fn markdown(s: &Summary) -> String {
    let mut r = String::new();
    header(&mut r, s);
    structure(&mut r, s);
    held_out(&mut r, s);
    if let (Some(latency), Some(times)) = (&s.problem.latency, &s.latency) {
        latency::section(&mut r, latency, times, s.choice);
    }
    if let Some(findings) = s.findings {
        let _ = writeln!(r, "\n![Pareto front]({})\n\n{}", plot::FILE, plot::CAPTION);
        selection::sections(&mut r, s.problem, findings);
    }
    r
}

/// `pareto.svg`, when the strategy searched a front.
pub fn pareto_svg(problem: &Problem, findings: &Findings) -> String {
    plot::pareto_svg(&figure::figure(problem, findings))
}

/// The backbone, the frames, the target, the cost and the exit rule.
fn header(r: &mut String, s: &Summary) {
    let problem = s.problem;
    let frames = &problem.frames;
    let _ = writeln!(r, "# Exit bundle report\n");
    let _ = writeln!(r, "- Backbone: `{}`", s.backbone.display());
    let trained_on = match frames.targets(problem.distills()) {
        Targets::Hard(_) if frames.train_labels.is_some() => "ground truth",
        Targets::Soft(_) if frames.train_labels.is_some() => {
            "ground truth blended with the backbone's probabilities"
        }
        Targets::Hard(_) => "the backbone's answers",
        Targets::Soft(_) => "the backbone's probabilities (distillation)",
    };
    let held_role = match problem.settings.strategy {
        Strategy::Nas => "held out to certify (the certifying frames)",
        Strategy::Even => "held out to calibrate thresholds",
    };
    let _ = write!(
        r,
        "- Frames: {} to train heads (on {trained_on}), ",
        frames.train.frames()
    );
    if problem.settings.strategy == Strategy::Nas {
        let _ = write!(
            r,
            "which are also the frames exit rules are chosen on (the selecting frames), each scored by heads cross-fitted over {} folds (each footage cut in time) that did not see it, ",
            frames.folds.count()
        );
    }
    let _ = writeln!(r, "{} {held_role}", frames.held.frames());
    if let Some(shares) = frames.runs {
        let _ = writeln!(
            r,
            "- Footage read in runs of {} consecutive frames, taken in the order of a hash of footage and run while the features fit in memory: {} of the training frames and {} of the held-out ones. Every statistic above counts the frames read; the certificate's bound is what the held-out frames read support, and it holds for them as a sample of the held-out footage",
            crate::problem::RUN,
            pct(shares.train),
            pct(shares.held)
        );
    }
    let goal = &problem.goal;
    match (goal.measure, goal.max_loss) {
        (_, Some(loss)) => writeln!(
            r,
            "- Target: accuracy at most {loss} below the full backbone's on the same held-out frames"
        ),
        (Measure::Agreement, None) => writeln!(
            r,
            "- Target: agreement with the full backbone ≥ {} on held-out frames",
            goal.target
        ),
        (Measure::Accuracy, None) => {
            writeln!(r, "- Target: accuracy ≥ {} on held-out frames", goal.target)
        }
    }
    .ok();
    let _ = writeln!(
        r,
        "- Cost searched on: {}",
        match problem.settings.cost {
            CostKind::Macs => "MACs (`--cost macs`)",
            CostKind::Latency =>
                "measured latency with ONNX Runtime on this machine (`--cost latency`)",
        }
    );
    let metric = s.bundle.metric.word();
    let _ = match &s.bundle.gate {
        Some(gate) => writeln!(
            r,
            "- Exit rule: a gate per exit over {} (format `earlyexit/2`), its probability against the threshold; scores use the metric `{metric}`\n",
            inputs_list(&gate.inputs)
        ),
        None => writeln!(r, "- Exit metric: `{metric}`"),
    };
    let _ = match &s.bundle.reuse {
        Some(rule) => writeln!(
            r,
            "- Stream rule (format `earlyexit/3`): a frame whose {}×{} block means differ from the last frame run by at most {} (detector `{}`) reuses its answer, at most {} frames in a row; on the held-out frames, {} of {} frames ({}) reused an answer, and {} of those agree with the backbone\n",
            rule.grid,
            rule.grid,
            rule.threshold,
            rule.detector.word(),
            rule.max_age,
            s.choice.held.reused.frames,
            s.choice.held.frames,
            pct(s.choice.held.reused.frames as f64 / s.choice.held.frames.max(1) as f64),
            s.choice.held.reused.agree,
        ),
        None => writeln!(r),
    };
}

/// Every stage of the bundle: where it is cut, its head and threshold, and the held-out frames
/// that leave there.
fn structure(r: &mut String, s: &Summary) {
    let _ = writeln!(r, "## Structure\n");
    let _ = writeln!(
        r,
        "| stage | cut after | head | MACs before | exit threshold | frames leaving (held out) | agreement there | accuracy there |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
    let h = &s.choice.held;
    let labeled = s.problem.frames.backbone_accuracy().is_some();
    for (k, stage) in s.bundle.stages.iter().enumerate() {
        let (cut, head, share) = s.choice.exits.get(k).map_or(
            (
                "(backbone output)".to_owned(),
                "-".to_owned(),
                "100%".to_owned(),
            ),
            |e| {
                (
                    format!("`{}`", e.cut.tensor),
                    e.head.describe(),
                    pct(e.cut.macs_before as f64 / s.problem.total_macs as f64),
                )
            },
        );
        let threshold = stage
            .exit
            .as_ref()
            .map_or("-".to_owned(), |e| format!("{:.6}", e.threshold));
        let rate = |n: usize| {
            if h.exits[k] == 0 {
                "-".to_owned()
            } else {
                pct(n as f64 / h.exits[k] as f64)
            }
        };
        let _ = writeln!(
            r,
            "| {k} | {cut} | {head} | {share} | {threshold} | {} ({}) | {} | {} |",
            h.exits[k],
            pct(h.exits[k] as f64 / h.frames.max(1) as f64),
            rate(h.agree[k]),
            if labeled {
                rate(h.correct[k])
            } else {
                "-".into()
            },
        );
    }
}

/// The bundle against the full backbone on all held-out frames, and its promise.
fn held_out(r: &mut String, s: &Summary) {
    let h = &s.choice.held;
    let backbone_accuracy = s.problem.frames.backbone_accuracy();
    let _ = writeln!(r, "\n## On the held-out frames\n");
    let _ = writeln!(r, "| | agreement | accuracy | mean cost |");
    let _ = writeln!(r, "|---|---|---|---|");
    let acc = |x: Option<f64>| x.map_or("-".to_owned(), pct);
    let _ = writeln!(
        r,
        "| full backbone | 100.00% | {} | 1.000 |",
        acc(backbone_accuracy)
    );
    let _ = writeln!(
        r,
        "| this bundle | {} | {} | {:.3} |",
        pct(h.agreement()),
        acc(backbone_accuracy.map(|_| h.accuracy())),
        h.mean_cost
    );
    if let Some(p) = &s.bundle.promise {
        let measure = match p.measure {
            Measure::Agreement => "agreement with the full backbone",
            Measure::Accuracy => "accuracy",
        };
        let _ = writeln!(
            r,
            "\n**Promise:** {measure} ≥ {} with {:.0}% confidence, certified on {} held-out frames that nothing was fitted on.",
            p.target,
            100.0 * p.confidence,
            p.frames
        );
    }
    let _ = writeln!(
        r,
        "\nCost is {}; a frame that reaches the last stage also paid for every head.",
        match s.problem.settings.cost {
            CostKind::Macs => "MACs used / backbone MACs",
            CostKind::Latency => "measured time / the uncut backbone's measured time",
        }
    );
}
