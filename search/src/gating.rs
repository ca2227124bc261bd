//! Learned exit gates (`--format 2`): for a structure the search found, a per-exit logistic
//! model over what the exit knows of a frame (its score under every metric, whether it agrees
//! with the previous exit, whether it agrees with the answer given to the previous frame of the
//! stream), trained on the selecting frames to predict that leaving there costs nothing under
//! the goal. One threshold on the gates' probability is then calibrated for all exits, so
//! selection fits a single number on top of the gates.

use std::ops::Range;

use anyhow::Result;
use earlyexit::cost::CostTable;
use earlyexit::gate::{Gate, GateInput, GateThreshold, GateWeights};
use earlyexit::rule::{FrameWalk, Metric, Signals};

use crate::goal::Goal;
use crate::heads::{self, Training};
use crate::outputs::ExitOutputs;
use crate::reuse::{Replay, stream_starts};
use crate::simulate::{Patience, Reference, Simulation, tally};

/// Every input a gate may read; training decides what each is worth.
pub fn inputs() -> Vec<GateInput> {
    GateInput::ALL.to_vec()
}

/// [`inputs`] but `agrees-last-frame`: what a gate knows of a frame without the stream.
pub fn stream_blind_inputs() -> Vec<GateInput> {
    GateInput::ALL
        .into_iter()
        .filter(|i| *i != GateInput::AgreesLastFrame)
        .collect()
}

/// The gate thresholds tried: a probability that leaving costs nothing.
const THRESHOLDS: usize = 200;

/// A gated structure: the gate, each exit's weights, and the one threshold.
#[derive(Debug, Clone)]
pub struct Gated {
    pub gate: Gate,
    pub weights: Vec<GateWeights>,
    pub threshold: f64,
}

/// Trains one `gate` per exit on the frames of `reference` (streams in time order).
///
/// The answer given to the previous frame is not known before the gates exist, so training
/// reads the backbone's answer there; the bundle agrees with it on nearly every frame.
pub fn train(
    gate: &Gate,
    exits: &[&ExitOutputs],
    reference: &Reference,
    streams: &[Range<usize>],
    goal: &Goal,
    seed: u64,
) -> Result<Vec<GateWeights>> {
    let frames = reference.frames();
    let start = stream_starts(streams, frames);
    let mut weights = Vec::with_capacity(exits.len());
    for (k, exit) in exits.iter().enumerate() {
        let mut x = Vec::with_capacity(frames * gate.inputs.len());
        let mut harmless = Vec::with_capacity(frames);
        for (i, &starts_stream) in start.iter().enumerate() {
            let signals = Signals {
                previous_exit: (k > 0).then(|| exits[k - 1].class(i) as usize),
                last_frame: (!starts_stream).then(|| reference.teacher[i - 1] as usize),
                ..exit.signals(i)
            };
            x.extend(gate.input_vector(&signals).into_iter().map(|v| v as f32));
            harmless.push(reference.harmless(goal, i, exit.class(i)));
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

/// Runs the frames through the gated exits, after the stream rule of `reuse`, as the element
/// would, with one threshold.
pub fn simulate(
    gated: &Gated,
    exits: &[&ExitOutputs],
    reference: &Reference,
    streams: &[Range<usize>],
    costs: &CostTable,
    reuse: Option<&Replay>,
) -> Simulation {
    let start = stream_starts(streams, reference.frames());
    tally(exits.len() + 1, reference, costs, reuse, |i, last| {
        let last = if start[i] { None } else { last };
        let decided = exits.iter().zip(&gated.weights).map(|(exit, weights)| {
            let rule = GateThreshold {
                gate: &gated.gate,
                weights,
                threshold: gated.threshold,
            };
            (exit.signals(i), rule)
        });
        FrameWalk::first_exit(last.map(|c| c as usize), decided)
            .map(|(k, s)| (k, s.class_id as u32))
    })
}

/// A patient rule as a gate: exit k lets a frame leave when `metric` passes `thresholds[k]`
/// and `patience` allows it (see [`Patience`]). Two heads at different depths that agree are
/// rarely both wrong, which holds on footage the thresholds never saw.
///
/// The gate's sum is `scale · (value − threshold)` (negated where a lower score is surer),
/// less `veto` unless the exit agrees with the previous one (`agrees-previous-exit` is 0 at the
/// first exit); at gate threshold 0.5 that leaves exactly when the sum is not negative. The
/// scale keeps the sum far from zero in floating point, and the veto outweighs any metric.
pub fn patient(metric: Metric, thresholds: &[f64], patience: Patience) -> Gated {
    const SCALE: f64 = 1e6;
    const VETO: f64 = 100.0 * SCALE;
    let sign = metric.sign();
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
            inputs: vec![GateInput::Metric(metric), GateInput::AgreesPreviousExit],
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
    use crate::simulate::tests::outputs;
    use earlyexit::rule::{PerMetric, Surer};

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
        let exit = outputs(class, vec![0.9; n]);
        let exits = [&exit];
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let goal = Goal::agreement(0.99);
        let streams = [0..1005, 1005..n];
        let gate = Gate { inputs: inputs() };
        let weights = train(&gate, &exits, &reference, &streams, &goal, 1).unwrap();
        let costs = CostTable::new(vec![50, 50], vec![1, 0]).unwrap();
        let gated = Gated {
            gate,
            weights,
            threshold: 0.7,
        };
        let sim = simulate(&gated, &exits, &reference, &streams, &costs, None);
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
        let blind = Gated {
            gate: blind,
            weights,
            threshold: 0.7,
        };
        let blind_sim = simulate(&blind, &exits, &reference, &streams, &costs, None);
        assert!(
            blind_sim.agreement() < 1.0 || blind_sim.exits[0] < sim.exits[0],
            "{blind_sim:?}"
        );
    }

    /// A patient gate decides every frame as the patient metric rule does.
    #[test]
    fn the_patient_gate_is_the_patient_rule() {
        let n = 500;
        let shift = |metric: Metric| 0.3 * metric as usize as f64;
        let exit = |seed: usize| -> ExitOutputs {
            let class: Vec<u32> = (0..n).map(|i| ((i * seed) % 7 % 3) as u32).collect();
            // Each metric's scores shifted apart, so that a rule reading the wrong one fails.
            let scores = PerMetric::from_fn(|metric| {
                (0..n)
                    .map(|i| shift(metric) + ((i * seed * 31) % 101) as f64 / 101.0)
                    .collect()
            });
            ExitOutputs::from_columns(&class, &scores)
        };
        let exits = [exit(3), exit(5), exit(11)];
        let views: Vec<&ExitOutputs> = exits.iter().collect();
        let teacher: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let reference = Reference {
            teacher: &teacher,
            labels: None,
        };
        let costs = CostTable::new(vec![25, 25, 25, 25], vec![1, 1, 1, 0]).unwrap();
        let one_stream = [Range { start: 0, end: n }];
        for metric in Metric::ALL {
            let thresholds = match metric.surer() {
                Surer::Higher => [0.6, 0.5, 0.2],
                Surer::Lower => [0.4, 0.5, 1.0],
            }
            .map(|t| t + shift(metric));
            let rule = |patience| {
                crate::simulate::simulate(
                    metric,
                    &thresholds,
                    &views,
                    &reference,
                    &costs,
                    patience,
                    None,
                )
            };
            for patience in [Patience::AfterFirst, Patience::Every] {
                let g = patient(metric, &thresholds, patience);
                let gated = simulate(&g, &views, &reference, &one_stream, &costs, None);
                assert_eq!(gated, rule(patience), "{metric:?} {patience:?}");
            }
            // Patience must matter here, or the test shows nothing.
            let exits = |p| rule(p).exits;
            assert_ne!(
                exits(Patience::None),
                exits(Patience::AfterFirst),
                "{metric:?}"
            );
            assert_ne!(
                exits(Patience::AfterFirst),
                exits(Patience::Every),
                "{metric:?}"
            );
        }
    }
}
