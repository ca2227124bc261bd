//! What `evaluate` counts for one footage or for all of them, for the bundle and for the
//! `--compare` bundle, with their JSON.

use std::path::Path;

use anyhow::{Context, Result};
use earlyexit::{Classifier, Decision, Mode, SessionOptions, bundle};
use serde_json::json;

use crate::footage::Footage;
use crate::paired::Paired;

/// Counts for one footage or for all of them.
#[derive(Default, Clone)]
pub(super) struct Tally {
    pub(super) frames: u64,
    pub(super) labeled: u64,
    pub(super) correct: u64,
    /// Labeled frames the full backbone gets right.
    pub(super) full_correct: u64,
    pub(super) agree: u64,
    /// Frames that left at each stage, and frames that reused the last answer (stream rule).
    pub(super) exits: Vec<u64>,
    pub(super) reused: u64,
    /// With --audit: frames also run at full depth, frames answered at full depth, and the
    /// frames where the audit found the promise broken.
    pub(super) audited: u64,
    pub(super) fallbacks: u64,
    pub(super) audit_warnings: Vec<u64>,
    pub(super) cost_sum: f64,
    pub(super) cost_known: bool,
    /// Per timing run: nanoseconds summed over frames.
    pub(super) bundle_ns: Vec<u64>,
    pub(super) full_ns: Vec<u64>,
}

impl Tally {
    pub(super) fn new(stages: usize, runs: usize, cost_known: bool) -> Tally {
        Tally {
            exits: vec![0; stages],
            cost_known,
            bundle_ns: vec![0; runs],
            full_ns: vec![0; runs],
            ..Tally::default()
        }
    }

    pub(super) fn add(&mut self, other: &Tally) {
        self.frames += other.frames;
        self.labeled += other.labeled;
        self.correct += other.correct;
        self.full_correct += other.full_correct;
        self.agree += other.agree;
        self.reused += other.reused;
        self.audited += other.audited;
        self.fallbacks += other.fallbacks;
        self.audit_warnings.extend(&other.audit_warnings);
        self.cost_sum += other.cost_sum;
        for (a, b) in self.exits.iter_mut().zip(&other.exits) {
            *a += b;
        }
        for (a, b) in self.bundle_ns.iter_mut().zip(&other.bundle_ns) {
            *a += b;
        }
        for (a, b) in self.full_ns.iter_mut().zip(&other.full_ns) {
            *a += b;
        }
    }

    /// Counts one frame the bundle decided as `ours` and the full backbone as `full`; returns
    /// whether `ours` is right, when the frame has a label.
    pub(super) fn count(
        &mut self,
        ours: &Decision,
        full: &Decision,
        label: Option<u32>,
    ) -> Option<bool> {
        self.frames += 1;
        match ours.reused {
            Some(_) => self.reused += 1,
            None => self.exits[ours.stage] += 1,
        }
        self.audited += u64::from(ours.audited);
        self.fallbacks += u64::from(ours.fallback);
        self.cost_sum += ours.cost.unwrap_or(0.0);
        self.agree += u64::from(ours.class_id == full.class_id);
        let right = label.map(|label| ours.class_id as u32 == label);
        if let (Some(right), Some(label)) = (right, label) {
            self.labeled += 1;
            self.correct += u64::from(right);
            self.full_correct += u64::from(full.class_id as u32 == label);
        }
        right
    }

    pub(super) fn ratio(n: u64, d: u64) -> Option<f64> {
        (d > 0).then(|| n as f64 / d as f64)
    }

    /// Median over runs of the mean milliseconds per frame.
    pub(super) fn ms_per_frame(&self, ns: &[u64]) -> Option<f64> {
        let mut per_run = self.ms_per_run(ns);
        per_run.sort_by(f64::total_cmp);
        per_run.get(per_run.len() / 2).copied()
    }

    /// The mean milliseconds per frame of each run, in run order: the bundle's and the
    /// backbone's runs of one index timed the same frames back to back, so their spread shows
    /// how far apart two equal computations can measure.
    fn ms_per_run(&self, ns: &[u64]) -> Vec<f64> {
        ns.iter()
            .filter_map(|&n| Tally::ratio(n, self.frames))
            .map(|n| n / 1e6)
            .collect()
    }

    /// Frames per stage, and those that reused an answer when any did.
    pub(super) fn stages_text(&self) -> String {
        let mut text = format!("{:?}", self.exits);
        if self.reused > 0 {
            text += &format!(" + {} reused", self.reused);
        }
        if self.audited > 0 {
            text += &format!(
                "; {} audited, {} at full depth, warnings at frames {:?}",
                self.audited, self.fallbacks, self.audit_warnings
            );
        }
        text
    }

    pub(super) fn accuracy(&self) -> Option<f64> {
        Tally::ratio(self.correct, self.labeled)
    }

    /// The full backbone's accuracy on the same labeled frames.
    pub(super) fn full_accuracy(&self) -> Option<f64> {
        Tally::ratio(self.full_correct, self.labeled)
    }

    pub(super) fn agreement(&self) -> Option<f64> {
        Tally::ratio(self.agree, self.frames)
    }

    pub(super) fn mean_cost(&self) -> Option<f64> {
        self.cost_known
            .then(|| self.cost_sum / self.frames.max(1) as f64)
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "frames": self.frames,
            "accuracy": self.accuracy(),
            "accuracy_full": self.full_accuracy(),
            "agreement": self.agreement(),
            "exits": self.exits,
            "reused": self.reused,
            "audited": self.audited,
            "fallback_frames": self.fallbacks,
            "audit_warnings": self.audit_warnings,
            "mean_cost": self.mean_cost(),
            "ms_per_frame": self.ms_per_frame(&self.bundle_ns),
            "ms_per_frame_full": self.ms_per_frame(&self.full_ns),
            "ms_per_frame_runs": self.ms_per_run(&self.bundle_ns),
            "ms_per_frame_full_runs": self.ms_per_run(&self.full_ns),
        })
    }
}

/// The `--compare` bundle, run on the same frames.
pub(super) struct Compared<'a> {
    pub(super) path: &'a Path,
    pub(super) bundle: bundle::Bundle,
    pub(super) classifier: Classifier,
    cost_known: bool,
}

impl Compared<'_> {
    pub(super) fn open(path: &Path, options: SessionOptions) -> Result<Compared<'_>> {
        let (bundle, warnings) = bundle::read(path)?;
        for w in warnings {
            eprintln!("warning: --compare {}: {w}", path.display());
        }
        let classifier = Classifier::open(&bundle, Mode::EarlyExit, options)
            .with_context(|| format!("--compare {}", path.display()))?;
        Ok(Compared {
            path,
            cost_known: earlyexit::cost::CostTable::from_bundle(&bundle).is_some(),
            classifier,
            bundle,
        })
    }

    /// Counts before the first frame.
    pub(super) fn start(&self) -> Comparison {
        Comparison {
            tally: Tally::new(self.classifier.stages(), 0, self.cost_known),
            paired: Paired::default(),
        }
    }
}

/// The `--compare` bundle's counts, and how it and the evaluated bundle differ on the same
/// labeled frames.
pub(super) struct Comparison {
    pub(super) tally: Tally,
    pub(super) paired: Paired,
}

impl Comparison {
    pub(super) fn add(&mut self, other: &Comparison) {
        self.tally.add(&other.tally);
        self.paired.merge(other.paired);
    }

    /// The evaluated bundle's accuracy minus this one's, on labeled frames.
    pub(super) fn difference(&self) -> Option<f64> {
        self.paired.difference(self.tally.labeled)
    }

    /// McNemar's p for that difference, on labeled frames.
    pub(super) fn p_value(&self) -> Option<f64> {
        (self.tally.labeled > 0).then(|| self.paired.p_value())
    }

    /// Its figures (untimed) and the paired test.
    pub(super) fn json(&self, model: &Path) -> serde_json::Value {
        let mut o = self.tally.json();
        if let Some(o) = o.as_object_mut() {
            o.remove("ms_per_frame");
            o.remove("ms_per_frame_full");
        }
        o["model"] = json!(model.display().to_string());
        o["only_model_right"] = json!(self.paired.only_a);
        o["only_compare_right"] = json!(self.paired.only_b);
        o["accuracy_difference"] = json!(self.difference());
        o["p_value"] = json!(self.p_value());
        o
    }
}

/// One footage's figures.
pub(super) struct FootageReport<'a> {
    pub(super) footage: &'a Footage,
    pub(super) tally: Tally,
    pub(super) comparison: Option<Comparison>,
}

/// All footage's figures together.
pub(super) struct Totals {
    pub(super) tally: Tally,
    pub(super) comparison: Option<Comparison>,
}
