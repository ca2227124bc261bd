//! Format 2: a patient rule written as the gate that runs it, and learned gates, whose
//! thresholds are a certification ladder of their own.

use anyhow::Result;
use earlyexit::gate::{Gate, GateInput};

use super::zoo::{Found, Step, Structure, Zoo};
use crate::gating::{self, Gated};
use crate::outputs::ExitOutputs;
use crate::simulate::Patience;

/// A found patient rule as the gate that runs it (see [`gating::patient`]), so that the bundle,
/// `evaluate` and the report's held-out figures all run it the same way.
pub fn patient_as_gate(found: Found) -> Found {
    let rule = found.structure.rule;
    let gated = (rule.patience != Patience::None)
        .then(|| gating::patient(rule.metric, &found.structure.thresholds, rule.patience));
    Found {
        structure: Structure {
            gated,
            ..found.structure
        },
        ..found
    }
}

/// What fitting learned gates showed.
pub enum GateFindings {
    /// The search found no structure with exits to gate.
    NoExits,
    /// Gates were fitted; their thresholds are a ladder.
    Fitted(Box<GateFit>),
}

/// Learned gates on the structure the selecting frames prefer.
pub struct GateFit {
    /// Exits of the structure gated.
    pub exits: usize,
    /// The same gates without `agrees-last-frame`, at their cheapest threshold that meets the
    /// target on the selecting frames, certified alone: what the stream signal buys.
    pub stream_blind: Option<Found>,
}

/// What gating gives: a ladder, and what was fitted.
pub struct Gating {
    pub ladder: Vec<Step>,
    pub findings: GateFindings,
}

/// `--format 2`: a logistic gate per exit of `structure` (the one the selecting frames prefer),
/// trained on the selecting frames, and the ladder of the gates' thresholds, from the
/// strictest. Everything is fitted on the selecting frames, so the ladder is fixed before the
/// certifying frames are seen.
pub fn gate(
    zoo: &Zoo,
    structure: Option<&Structure>,
    seed: u64,
    confidence: f64,
) -> Result<Gating> {
    let Some(structure) = structure.filter(|s| !s.placed.is_empty()) else {
        return Ok(Gating {
            ladder: Vec::new(),
            findings: GateFindings::NoExits,
        });
    };
    let ladder = fit(zoo, structure, gating::inputs(), seed)?;
    let limit = zoo.problem.goal.limit();
    let stream_blind = fit(zoo, structure, gating::stream_blind_inputs(), seed)?
        .into_iter()
        .filter(|s| zoo.error(&s.select) <= limit)
        .min_by(|a, b| a.select.mean_cost.total_cmp(&b.select.mean_cost))
        .and_then(|s| s.certified(zoo, confidence));
    Ok(Gating {
        findings: GateFindings::Fitted(Box::new(GateFit {
            exits: structure.placed.len(),
            stream_blind,
        })),
        ladder,
    })
}

/// Trains a gate over `inputs` for each exit of `structure` on the selecting frames: a step
/// for each threshold, the strictest first.
fn fit(zoo: &Zoo, structure: &Structure, inputs: Vec<GateInput>, seed: u64) -> Result<Vec<Step>> {
    let select: Vec<&ExitOutputs> = structure
        .placed
        .iter()
        .filter_map(|p| zoo.option(p))
        .map(|o| &o.select)
        .collect();
    let gate = Gate { inputs };
    let weights = gating::train(
        &gate,
        &select,
        &zoo.select,
        &zoo.problem.frames.train_ranges,
        &zoo.problem.goal,
        seed,
    )?;
    let mut thresholds: Vec<f64> = gating::thresholds().collect();
    thresholds.reverse();
    Ok(thresholds
        .into_iter()
        .filter_map(|threshold| {
            let gated = Gated {
                gate: gate.clone(),
                weights: weights.clone(),
                threshold,
            };
            let structure = Structure {
                gated: Some(gated),
                ..structure.clone()
            };
            let select = zoo.run(&structure, false)?;
            Some(Step { structure, select })
        })
        .collect())
}
