//! `report.md`, written beside the bundle.

use std::fmt::Write;

use earlyexit::bundle::{Bundle, Measure};

use crate::calibrate::{Goal, Simulation};

/// What the report says about a search.
pub struct Summary<'a> {
    pub backbone: &'a str,
    pub bundle: &'a Bundle,
    /// Per exit: the cut tensor, the head's architecture and the share of MACs before it.
    pub cuts: Vec<(String, String, f64)>,
    pub train_frames: usize,
    pub holdout_frames: usize,
    pub trained_on: &'a str,
    pub goal: Goal,
    pub holdout: &'a Simulation,
    /// The full backbone's accuracy on held-out frames, when labeled.
    pub backbone_accuracy: Option<f64>,
    /// What the search compared structures by.
    pub cost: Cost,
    /// With [`Cost::Latency`]: the measured times.
    pub latency: Option<String>,
    /// Sections the strategy adds (search space, Pareto front, certificate).
    pub notes: &'a str,
    /// The Pareto front plot's file beside the report, when the strategy drew one.
    pub plot: Option<&'a str>,
}

/// The cost the search minimised (`--cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    Macs,
    Latency,
}

pub fn markdown(s: &Summary) -> String {
    let mut r = String::new();
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let _ = writeln!(r, "# Exit bundle report\n");
    let _ = writeln!(r, "- Backbone: `{}`", s.backbone);
    let _ = writeln!(
        r,
        "- Frames: {} to train heads (on {}), {} held out to calibrate thresholds",
        s.train_frames, s.trained_on, s.holdout_frames
    );
    let goal = &s.goal;
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
        match s.cost {
            Cost::Macs => "MACs (`--cost macs`)",
            Cost::Latency =>
                "measured latency with ONNX Runtime on this machine (`--cost latency`)",
        }
    );
    let metric = earlyexit::bundle::Word::word(s.bundle.metric);
    let _ = match &s.bundle.gate {
        Some(gate) => writeln!(
            r,
            "- Exit rule: a gate per exit over {} (format `earlyexit/2`), its probability against the threshold; scores use the metric `{metric}`\n",
            gate.inputs
                .iter()
                .map(|i| format!("`{}`", earlyexit::bundle::Word::word(*i)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => writeln!(r, "- Exit metric: `{metric}`\n"),
    };
    let _ = writeln!(r, "## Structure\n");
    let _ = writeln!(
        r,
        "| stage | cut after | head | MACs before | exit threshold | frames leaving (held out) | agreement there | accuracy there |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
    let h = s.holdout;
    for (k, stage) in s.bundle.stages.iter().enumerate() {
        let (cut, head, share) = s.cuts.get(k).map_or(
            ("(backbone output)".to_owned(), "-", "100%".to_owned()),
            |(t, h, m)| (format!("`{t}`"), h.as_str(), pct(*m)),
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
            if s.backbone_accuracy.is_some() {
                rate(h.correct[k])
            } else {
                "-".into()
            },
        );
    }
    let _ = writeln!(r, "\n## On the held-out frames\n");
    let _ = writeln!(r, "| | agreement | accuracy | mean cost |");
    let _ = writeln!(r, "|---|---|---|---|");
    let acc = |x: Option<f64>| x.map_or("-".to_owned(), pct);
    let _ = writeln!(
        r,
        "| full backbone | 100.00% | {} | 1.000 |",
        acc(s.backbone_accuracy)
    );
    let _ = writeln!(
        r,
        "| this bundle | {} | {} | {:.3} |",
        pct(h.agreement()),
        acc(s.backbone_accuracy.map(|_| h.accuracy())),
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
        match s.cost {
            Cost::Macs => "MACs used / backbone MACs",
            Cost::Latency => "measured time / the uncut backbone's measured time",
        }
    );
    if let Some(latency) = &s.latency {
        r.push_str(latency);
    }
    if let Some(file) = s.plot {
        let _ = writeln!(r, "\n![Pareto front]({file})\n\n{}", crate::plot::CAPTION);
    }
    r.push_str(s.notes);
    r
}
