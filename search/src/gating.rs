//! Learned exit gates (`--format 2`): for a structure the search found, a per-exit logistic
//! model over what the exit knows of a frame (its max-prob, margin and entropy, whether it
//! agrees with the previous exit, whether it agrees with the answer given to the previous
//! frame of the stream), trained on the selecting frames to predict that leaving there costs
//! nothing under the goal. One threshold on the gates' probability is then calibrated for all
//! exits, so selection fits a single number on top of the gates.

use std::ops::Range;

use anyhow::Result;
use earlyexit::bundle::Metric;
use earlyexit::cost::CostTable;
use earlyexit::gate::{ExitRule, FrameWalk, Gate, GateInput, GateWeights, Signals};

use crate::calibrate::{ExitScores, Goal, Patience, Reference, Simulation, tally};
use crate::heads::{self, Training};

/// Every input a gate may read; training decides what each is worth.
pub const INPUTS: [GateInput; 5] = [
    GateInput::MaxProb,
    GateInput::Margin,
    GateInput::Entropy,
    GateInput::AgreesPreviousExit,
    GateInput::AgreesLastFrame,
];

/// [`INPUTS`] but `agrees-last-frame`: what a gate knows of a frame without the stream.
pub fn stream_blind_inputs() -> Vec<GateInput> {
    INPUTS
        .into_iter()
        .filter(|i| *i != GateInput::AgreesLastFrame)
        .collect()
}

/// The gate thresholds tried: a probability that leaving costs nothing.
const THRESHOLDS: usize = 200;

/// One exit's outputs on some frames, under the three metrics, in `rule` order
/// (max-prob, margin, entropy): what its signals are made of.
pub type ExitOutputs<'a> = &'a [ExitScores];

fn signals(exit: ExitOutputs, i: usize, previous_exit: Option<u32>, last: Option<u32>) -> Signals {
    Signals {
        class_id: exit[0].class[i] as usize,
        max_prob: exit[0].score[i],
        margin: exit[1].score[i],
        entropy: exit[2].score[i],
        previous_exit: previous_exit.map(|c| c as usize),
        last_frame: last.map(|c| c as usize),
    }
}

/// A gated structure: the gate, each exit's weights, and the one threshold.
#[derive(Debug, Clone)]
pub struct Gated {
    pub gate: Gate,
    pub weights: Vec<GateWeights>,
    pub threshold: f64,
}

/// Where each stream starts: the last frame's answer is forgotten there.
fn starts(streams: &[Range<usize>], frames: usize) -> Vec<bool> {
    let mut start = vec![false; frames];
    for r in streams {
        if r.start < frames {
            start[r.start] = true;
        }
    }
    if let Some(first) = start.first_mut() {
        *first = true;
    }
    start
}

/// Trains one `gate` per exit on the frames of `reference` (streams in time order).
///
/// The answer given to the previous frame is not known before the gates exist, so training
/// reads the backbone's answer there; the bundle agrees with it on nearly every frame.
pub fn train(
    gate: &Gate,
    exits: &[ExitOutputs],
    reference: &Reference,
    streams: &[Range<usize>],
    goal: &Goal,
    seed: u64,
) -> Result<Vec<GateWeights>> {
    let frames = reference.teacher.len();
    let start = starts(streams, frames);
    let mut weights = Vec::with_capacity(exits.len());
    for (k, exit) in exits.iter().enumerate() {
        let mut x = Vec::with_capacity(frames * gate.inputs.len());
        let mut harmless = Vec::with_capacity(frames);
        for i in 0..frames {
            let previous = (k > 0).then(|| exits[k - 1][0].class[i]);
            let last = (!start[i]).then(|| reference.teacher[i - 1]);
            let s = signals(exit, i, previous, last);
            x.extend(gate.input_vector(&s).into_iter().map(|v| v as f32));
            let label = reference.labels.map(|l| l[i]);
            let class = exit[0].class[i];
            harmless.push(goal.penalty(class, reference.teacher[i], label) <= 0.0);
        }
        let training = Training {
            seed: seed.wrapping_add(k as u64),
            ..Training::default()
        };
        let (w, bias) = heads::logistic(&x, gate.inputs.len(), &harmless, &training)?;
        weights.push(GateWeights { weights: w, bias });
    }
    Ok(weights)
}

/// Runs the frames through the gated exits, as the element would, with one threshold.
pub fn simulate(
    gate: &Gate,
    weights: &[GateWeights],
    threshold: f64,
    exits: &[ExitOutputs],
    reference: &Reference,
    streams: &[Range<usize>],
    costs: &CostTable,
) -> Simulation {
    let start = starts(streams, reference.teacher.len());
    tally(exits.len() + 1, reference, costs, |i, last| {
        let last = if start[i] { None } else { last };
        let mut walk = FrameWalk::new(last.map(|c| c as usize));
        exits
            .iter()
            .zip(weights)
            .enumerate()
            .find_map(|(k, (exit, w))| {
                let (s, leaves) = walk.exit_with(
                    signals(exit, i, None, None),
                    ExitRule::Gate(gate, w),
                    threshold,
                );
                leaves.then_some((k, s.class_id as u32))
            })
    })
}

/// A patient rule as a gate: exit k lets a frame leave when `metric` passes `thresholds[k]`
/// and `patience` allows it (see [`Patience`]). Two heads at different depths that agree are
/// rarely both wrong, which holds on footage the thresholds never saw.
///
/// The gate's sum is `scale · (value − threshold)` (negated for entropy), less `veto` unless
/// the exit agrees with the previous one (`agrees-previous-exit` is 0 at the first exit); at
/// gate threshold 0.5 that leaves exactly when the sum is not negative. The scale keeps the sum
/// far from zero in floating point, and the veto outweighs any metric.
pub fn patient(metric: Metric, thresholds: &[f64], patience: Patience) -> Gated {
    const SCALE: f64 = 1e6;
    const VETO: f64 = 100.0 * SCALE;
    let sign = earlyexit::rule::surer(metric);
    let weights = thresholds
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let veto = if patience.allows(k, false) { 0.0 } else { VETO };
            GateWeights {
                weights: vec![sign * SCALE, veto],
                bias: -sign * SCALE * t - veto,
            }
        })
        .collect();
    Gated {
        gate: Gate {
            inputs: vec![GateInput::from(metric), GateInput::AgreesPreviousExit],
        },
        weights,
        threshold: 0.5,
    }
}

/// The gate thresholds worth trying: from "every frame leaves" to "almost none".
pub fn thresholds() -> impl Iterator<Item = f64> {
    (0..THRESHOLDS).map(|j| 0.5 + 0.5 * (j as f64 + 0.5) / THRESHOLDS as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit 0 is right exactly when the last frame's answer is its class: only the stream
    /// signal tells right from wrong.
    #[test]
    fn the_gate_learns_the_stream_signal_and_resets_at_a_new_stream() {
        let n = 2000;
        // Runs of 10 frames share a class.
        let teacher: Vec<u32> = (0..n).map(|i| ((i / 10) % 4) as u32).collect();
        let class: Vec<u32> = (0..n)
            .map(|i| {
                if i % 10 == 0 {
                    (teacher[i] + 1) % 4
                } else {
                    teacher[i]
                }
            })
            .collect();
        let flat = ExitScores {
            class,
            score: vec![0.9; n],
        };
        let exit = vec![flat.clone(), flat.clone(), flat];
        let exits = [exit.as_slice()];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let goal = Goal::agreement(0.99);
        let streams = [0..1005, 1005..n];
        let gate = Gate {
            inputs: INPUTS.to_vec(),
        };
        let weights = train(&gate, &exits, &reference, &streams, &goal, 1).unwrap();
        let costs = CostTable::new(vec![50, 50], vec![1, 0]).unwrap();
        let sim = simulate(&gate, &weights, 0.7, &exits, &reference, &streams, &costs);
        // Frames that agree with the previous one leave early and are right; the first of
        // each run goes on to the backbone, and so does the first of the second stream.
        assert_eq!(sim.agreement(), 1.0, "{sim:?}");
        assert_eq!(sim.exits, vec![n - n / 10 - 1, n / 10 + 1]);

        // Without the stream signal every input is the same on every frame: a gate can only
        // let all frames leave, wrong ones included, or keep right ones too.
        let blind = Gate {
            inputs: stream_blind_inputs(),
        };
        let weights = train(&blind, &exits, &reference, &streams, &goal, 1).unwrap();
        let blind_sim = simulate(&blind, &weights, 0.7, &exits, &reference, &streams, &costs);
        assert!(
            blind_sim.agreement() < 1.0 || blind_sim.exits[0] < sim.exits[0],
            "{blind_sim:?}"
        );
    }

    /// A patient gate decides every frame as the patient metric rule does.
    #[test]
    fn the_patient_gate_is_the_patient_rule() {
        let n = 500;
        let outputs = |seed: usize| -> Vec<ExitScores> {
            let class: Vec<u32> = (0..n).map(|i| ((i * seed) % 7 % 3) as u32).collect();
            // Each metric's scores, in the gate's order: max-prob, margin, entropy.
            [0.0, 0.3, 1.0]
                .iter()
                .map(|shift| ExitScores {
                    class: class.clone(),
                    score: (0..n)
                        .map(|i| shift + ((i * seed * 31) % 101) as f64 / 101.0)
                        .collect(),
                })
                .collect()
        };
        let exits = [outputs(3), outputs(5), outputs(11)];
        let views: Vec<&[ExitScores]> = exits.iter().map(Vec::as_slice).collect();
        let teacher: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let costs = CostTable::new(vec![25, 25, 25, 25], vec![1, 1, 1, 0]).unwrap();
        let one_stream = [Range { start: 0, end: n }];
        for (m, metric) in [Metric::MaxProb, Metric::Margin, Metric::Entropy]
            .into_iter()
            .enumerate()
        {
            let thresholds = match metric {
                Metric::Entropy => [1.4, 1.5, 2.0],
                _ => [0.6, 0.5, 0.2],
            };
            let by_metric: Vec<&ExitScores> = exits.iter().map(|e| &e[m]).collect();
            let rule = |patience| {
                crate::calibrate::simulate(
                    metric,
                    &thresholds,
                    &by_metric,
                    &reference,
                    &costs,
                    patience,
                )
            };
            for patience in [Patience::AfterFirst, Patience::Every] {
                let g = patient(metric, &thresholds, patience);
                let gated = simulate(
                    &g.gate,
                    &g.weights,
                    g.threshold,
                    &views,
                    &reference,
                    &one_stream,
                    &costs,
                );
                assert_eq!(gated, rule(patience), "{metric:?} {patience:?}");
            }
            // Patience must matter here, or the test shows nothing.
            let exits = |p| rule(p).exits;
            assert_ne!(exits(Patience::None), exits(Patience::AfterFirst));
            assert_ne!(exits(Patience::AfterFirst), exits(Patience::Every));
        }
    }
}
