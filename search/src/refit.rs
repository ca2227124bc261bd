//! `evaluate --refit`: exit structures compared at equal accuracy. Every frame also runs through
//! every exit of the bundle (and of `--compare`); then each structure's per-exit thresholds are
//! fitted on those very frames, for the cheapest mean cost that gets at least as many frames
//! right as the bundle, the compared bundle and the full backbone each did.
//!
//! Fitted on the frames it is scored on, a figure here is the best a structure can do on them:
//! it compares structures on equal terms, and promises nothing about other footage.

use anyhow::{Context, Result, bail};
use earlyexit::bundle::Bundle;
use earlyexit::cost::CostTable;
use earlyexit::rule::{FrameWalk, Metric, MetricThreshold, Signals};
use earlyexit::{Classifier, Frame, RunError};

use crate::outputs::ExitOutputs;
use crate::progress;

/// Threshold values tried at each exit: this many quantiles of its scores.
const LEVELS: usize = 256;

/// Threshold values tried at each of two neighbouring exits moved together.
const PAIR_LEVELS: usize = 32;

/// Coordinate passes at most; each pass that changes nothing ends the fit sooner.
const PASSES: usize = 20;

/// Every frame's answer and scores at every exit of one bundle.
pub struct Answers {
    metric: Metric,
    exits: Vec<Exit>,
    /// The last stage's answer per frame.
    last: Vec<u32>,
    last_cost: f64,
    /// One frame's signals at every stage, reused from frame to frame.
    signals: Vec<Option<Signals>>,
}

struct Exit {
    stage: usize,
    /// The bundle's own threshold: the fit starts from it as well as from no exit at all.
    threshold: f64,
    /// Cost of a frame that leaves here.
    cost: f64,
    outputs: ExitOutputs,
}

impl Answers {
    /// `what` names the bundle in errors (`--model DIR`, `--compare DIR`).
    pub fn new(bundle: &Bundle, what: &str) -> Result<Answers> {
        if bundle.gate.is_some() {
            // A gate may read the previous frame's answer, which depends on every threshold.
            bail!(
                "--refit: {what} decides by a gate (format 2); --refit fits the metric's per-exit thresholds, so it takes bundles whose exits decide by the metric alone (format 1 rules)"
            );
        }
        let Some(costs) = CostTable::from_bundle(bundle) else {
            bail!("--refit: {what} gives no MACs, so there is no cost to fit for");
        };
        let last = bundle.stages.len() - 1;
        Ok(Answers {
            metric: bundle.metric,
            exits: bundle
                .stages
                .iter()
                .enumerate()
                .take(last)
                .filter_map(|(stage, s)| {
                    Some(Exit {
                        stage,
                        threshold: s.exit.as_ref()?.threshold,
                        cost: costs.cost(stage, true),
                        outputs: ExitOutputs::default(),
                    })
                })
                .collect(),
            last: Vec::new(),
            last_cost: costs.cost(last, true),
            signals: Vec::new(),
        })
    }

    /// Runs one frame through every exit of `classifier` (this bundle's) and adds it.
    fn record(&mut self, classifier: &mut Classifier, frame: &Frame) -> Result<(), RunError> {
        classifier.every_exit(frame, &mut self.signals)?;
        let signals = &self.signals;
        for exit in &mut self.exits {
            match signals.get(exit.stage).copied().flatten() {
                Some(s) => exit.outputs.push(&s),
                // Missing signals never leave: NaN clears no threshold.
                None => exit.outputs.push_missing(),
            }
        }
        let last = signals.last().copied().flatten();
        self.last.push(last.map_or(u32::MAX, |s| s.class_id as u32));
        Ok(())
    }

    /// The bundle's own thresholds.
    fn own(&self) -> Vec<f64> {
        self.exits.iter().map(|e| e.threshold).collect()
    }

    /// Frames the bundle itself, at its own thresholds, answers as `reference` says.
    fn right_at_own(&self, reference: &[u32]) -> u64 {
        self.replay(reference, &self.own()).0
    }

    /// A threshold no score clears.
    fn closed(&self) -> f64 {
        self.metric.never()
    }

    /// Replays the exit rule at these thresholds: frames answered as `reference` says, and the
    /// summed cost.
    fn replay(&self, reference: &[u32], thresholds: &[f64]) -> (u64, f64) {
        let mut right = 0;
        let mut cost = 0.0;
        for (f, want) in reference.iter().enumerate() {
            let decided = self.exits.iter().zip(thresholds).map(|(e, &threshold)| {
                let rule = MetricThreshold {
                    metric: self.metric,
                    threshold,
                };
                (e.outputs.signals(f), rule)
            });
            let (class, c) = FrameWalk::first_exit(None, decided)
                .map_or((self.last[f], self.last_cost), |(k, s)| {
                    (s.class_id as u32, self.exits[k].cost)
                });
            right += u64::from(class == *want);
            cost += c;
        }
        (right, cost)
    }

    /// For each of `targets`, the cheapest mean cost at which at least that many frames answer
    /// as `reference` says (`None` where no thresholds tried get there). Each is a local
    /// optimum of [`Answers::fit`]; the stricter targets go first, and each fit also starts
    /// from the one before it, so that a laxer target never costs more. `fitted` is called after
    /// each.
    pub fn cheapest(
        &self,
        reference: &[u32],
        targets: &[u64],
        mut fitted: impl FnMut(),
    ) -> Vec<Option<f64>> {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(targets[i]));
        let mut costs = vec![None; targets.len()];
        let mut stricter: Option<Vec<f64>> = None;
        for i in order {
            let (thresholds, (right, cost)) = self.fit(reference, targets[i], stricter.as_slice());
            if right >= targets[i] && !reference.is_empty() {
                costs[i] = Some(cost / reference.len() as f64);
            }
            stricter = Some(thresholds);
            fitted();
        }
        costs
    }

    /// Coordinate descent over the exits' thresholds from the best of these starts: the
    /// bundle's own thresholds, no exit at all, and `starts`. Gives the thresholds, the frames
    /// right and the summed cost. Never costlier than a start that gets `at_least` right, so
    /// never costlier than the bundle itself at its own figure.
    fn fit(&self, reference: &[u32], at_least: u64, starts: &[Vec<f64>]) -> (Vec<f64>, (u64, f64)) {
        // Feasible beats infeasible; among feasible the cheaper, at equal cost the more often
        // right (slack for later moves); among infeasible the more often right.
        let better = |a: (u64, f64), b: (u64, f64)| match (a.0 >= at_least, b.0 >= at_least) {
            (true, true) => a.1 < b.1 || (a.1 == b.1 && a.0 > b.0),
            (true, false) => true,
            (false, true) => false,
            (false, false) => a.0 > b.0,
        };
        let grids: Vec<Vec<f64>> = self
            .exits
            .iter()
            .map(|e| self.grid(&e.outputs.scores(self.metric)))
            .collect();
        let coarse: Vec<Vec<f64>> = grids
            .iter()
            .map(|g| {
                g.iter()
                    .step_by(g.len().div_ceil(PAIR_LEVELS))
                    .copied()
                    .collect()
            })
            .collect();
        let mut thresholds = self.own();
        let mut current = self.replay(reference, &thresholds);
        for start in std::iter::once(vec![self.closed(); self.exits.len()]).chain(starts.to_vec()) {
            let scored = self.replay(reference, &start);
            if better(scored, current) {
                (thresholds, current) = (start, scored);
            }
        }
        let mut step = |thresholds: &mut Vec<f64>, moves: &[(usize, f64)]| {
            let kept: Vec<f64> = moves.iter().map(|&(e, _)| thresholds[e]).collect();
            for &(e, t) in moves {
                thresholds[e] = t;
            }
            let tried = self.replay(reference, thresholds);
            if better(tried, current) {
                current = tried;
                return true;
            }
            for (&(e, _), k) in moves.iter().zip(kept) {
                thresholds[e] = k;
            }
            false
        };
        // One exit's threshold at a time; when that is stuck, two neighbouring exits at once
        // on a coarser grid, since frames one exit lets go the next one takes.
        for _ in 0..PASSES {
            let mut changed = false;
            for (e, grid) in grids.iter().enumerate() {
                for &t in grid {
                    changed |= step(&mut thresholds, &[(e, t)]);
                }
            }
            if !changed {
                for e in 1..grids.len() {
                    for &a in &coarse[e - 1] {
                        for &b in &coarse[e] {
                            changed |= step(&mut thresholds, &[(e - 1, a), (e, b)]);
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        (thresholds, current)
    }

    /// [`LEVELS`] quantiles of an exit's scores, and the closed threshold.
    fn grid(&self, scores: &[f64]) -> Vec<f64> {
        let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let mut grid = vec![self.closed()];
        if let Some(top) = sorted.len().checked_sub(1) {
            grid.extend((0..=LEVELS).map(|q| sorted[q * top / LEVELS]));
        }
        grid.dedup();
        grid
    }
}

/// What `--refit` records while `evaluate` runs, and the table it makes at the end.
pub struct Refit {
    model: Answers,
    compare: Option<Answers>,
    labels: Vec<Option<u32>>,
    backbone: Vec<u32>,
}

/// Whose share of frames right a row asks both structures to reach.
#[derive(Clone, Copy)]
pub enum At {
    Model,
    Compare,
    Backbone,
}

/// One row: the cheapest each structure gets to at a number of frames right.
pub struct Row {
    pub at: At,
    /// The share of frames right that both structures must reach.
    pub value: f64,
    pub cost: Option<f64>,
    pub compare_cost: Option<f64>,
}

pub struct Table {
    /// `accuracy` when every frame has a label, else `agreement` with the full backbone.
    pub measure: &'static str,
    pub rows: Vec<Row>,
}

impl Refit {
    pub fn new(model: Answers, compare: Option<Answers>) -> Refit {
        Refit {
            model,
            compare,
            labels: Vec::new(),
            backbone: Vec::new(),
        }
    }

    /// Runs one frame through every exit of the bundle (`model`) and of `--compare`, and adds
    /// it with its label and the full backbone's answer.
    pub fn record(
        &mut self,
        model: &mut Classifier,
        compare: Option<&mut Classifier>,
        frame: &Frame,
        label: Option<u32>,
        backbone: usize,
    ) -> Result<()> {
        self.model.record(model, frame).context("--model")?;
        if let (Some(answers), Some(classifier)) = (&mut self.compare, compare) {
            answers.record(classifier, frame).context("--compare")?;
        }
        self.labels.push(label);
        self.backbone.push(backbone as u32);
        Ok(())
    }

    /// Fits both structures at the bundle's, the compared bundle's and the backbone's share of
    /// frames right.
    pub fn table(&self) -> Table {
        let labeled: Option<Vec<u32>> = self.labels.iter().copied().collect();
        let (measure, reference) = match labeled {
            Some(labels) if !labels.is_empty() => ("accuracy", labels),
            _ => ("agreement", self.backbone.clone()),
        };
        let frames = reference.len() as f64;
        let backbone_right = self
            .backbone
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a == b)
            .count() as u64;
        let mut at = vec![At::Model];
        let mut targets = vec![self.model.right_at_own(&reference)];
        if let Some(c) = &self.compare {
            at.push(At::Compare);
            targets.push(c.right_at_own(&reference));
        }
        at.push(At::Backbone);
        targets.push(backbone_right);
        if reference.is_empty() {
            return Table {
                measure,
                rows: Vec::new(),
            };
        }
        let structures = 1 + usize::from(self.compare.is_some());
        let bar = progress::bar(
            "refitting thresholds",
            Some((structures * targets.len()) as u64),
        );
        let costs = self.model.cheapest(&reference, &targets, || bar.inc(1));
        let compare_costs = match &self.compare {
            Some(c) => c.cheapest(&reference, &targets, || bar.inc(1)),
            None => vec![None; targets.len()],
        };
        bar.finish_and_clear();
        Table {
            measure,
            rows: (0..targets.len())
                .map(|i| Row {
                    at: at[i],
                    value: targets[i] as f64 / frames,
                    cost: costs[i],
                    compare_cost: compare_costs[i],
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earlyexit::rule::PerMetric;

    /// Two exits and the last stage over `classes`/`scores` per exit.
    fn answers(
        metric: Metric,
        exits: [(&[u32], &[f64]); 2],
        last: &[u32],
        own: [f64; 2],
    ) -> Answers {
        Answers {
            metric,
            exits: exits
                .iter()
                .zip(own)
                .enumerate()
                .map(|(stage, ((classes, scores), threshold))| Exit {
                    stage,
                    threshold,
                    cost: [0.2, 0.5][stage],
                    outputs: ExitOutputs::from_columns(
                        classes,
                        &PerMetric::from_fn(|_| scores.to_vec()),
                    ),
                })
                .collect(),
            last: last.to_vec(),
            last_cost: 1.0,
            signals: Vec::new(),
        }
    }

    /// Every pair of thresholds from each exit's grid: the exact optimum the descent is
    /// checked against.
    fn exhaustive(a: &Answers, reference: &[u32], at_least: u64) -> Option<f64> {
        let grids: Vec<Vec<f64>> = a
            .exits
            .iter()
            .map(|e| a.grid(&e.outputs.scores(a.metric)))
            .collect();
        let mut best: Option<f64> = None;
        for &t0 in &grids[0] {
            for &t1 in &grids[1] {
                let (right, cost) = a.replay(reference, &[t0, t1]);
                if right >= at_least {
                    let mean = cost / reference.len() as f64;
                    best = Some(best.map_or(mean, |b: f64| b.min(mean)));
                }
            }
        }
        best
    }

    #[test]
    fn the_fit_finds_the_cheapest_thresholds_that_keep_enough_frames_right() {
        // Exit 0 is right on frames 0-3 (sure on 0-2, less so on 3), wrong and fairly sure
        // on 4; exit 1 is right on 4 and 5; the last stage is right everywhere but frame 5.
        let reference = [1, 1, 1, 1, 2, 3, 4, 5];
        let exit0: (&[u32], &[f64]) = (
            &[1, 1, 1, 1, 9, 9, 9, 9],
            &[0.9, 0.95, 0.99, 0.6, 0.8, 0.3, 0.2, 0.1],
        );
        let exit1: (&[u32], &[f64]) = (
            &[1, 1, 1, 1, 2, 3, 9, 9],
            &[0.5, 0.5, 0.5, 0.5, 0.9, 0.9, 0.4, 0.4],
        );
        let last = [1, 1, 1, 1, 2, 0, 4, 5];
        let a = answers(Metric::MaxProb, [exit0, exit1], &last, [0.5, 0.5]);
        let targets: Vec<u64> = (0..=9).collect();
        let fitted = a.cheapest(&reference, &targets, || ());
        for (at_least, fitted) in targets.iter().zip(&fitted) {
            assert_eq!(*fitted, exhaustive(&a, &reference, *at_least), "{at_least}");
        }
        // All 8 right: frames 0-2 at exit 0 (a threshold above 0.8 keeps the wrong frame 4
        // in, and frame 3 with it), 3-5 at exit 1, 6 and 7 at the last stage.
        let all = fitted[8].unwrap();
        assert!(
            (all - (3.0 * 0.2 + 3.0 * 0.5 + 2.0) / 8.0).abs() < 1e-12,
            "{all}"
        );
        // No thresholds get more right than there are frames.
        assert_eq!(fitted[9], None);

        // Entropy leaves below its threshold: the same scores mirrored fit to the same costs.
        let mirror = |v: &[f64]| v.iter().map(|x| 1.0 - x).collect::<Vec<f64>>();
        let (m0, m1) = (mirror(exit0.1), mirror(exit1.1));
        let e = answers(
            Metric::Entropy,
            [(exit0.0, &m0), (exit1.0, &m1)],
            &last,
            [0.5, 0.5],
        );
        assert_eq!(e.cheapest(&reference, &targets, || ()), fitted);
    }
}
