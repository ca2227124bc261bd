//! Format 2: a patient rule written as the gate that runs it, and learned gates on a found
//! structure's exits.

use anyhow::Result;
use earlyexit::cost::CostTable;
use earlyexit::gate::{Gate, GateInput};
use earlyexit::rule::Metric;

use super::certificate::Certificate;
use super::certified::per_try;
use super::zoo::{Found, Zoo};
use crate::gating::{self, Gated};
use crate::outputs::ExitOutputs;
use crate::simulate::{Patience, Simulation};

/// A found patient rule as the gate that runs it (see [`gating::patient`]), so that the bundle,
/// `evaluate` and the report's held-out figures all run it the same way.
pub fn patient_as_gate(zoo: &Zoo, found: Found) -> Found {
    let rule = found.rule;
    let gated = (rule.patience != Patience::None).then(|| {
        gating::patient(
            rule.metric,
            &zoo.thresholds(&found.placed, rule.metric),
            rule.patience,
        )
    });
    Found { gated, ..found }
}

/// How a row of the gate comparison decides.
#[derive(Debug, Clone, PartialEq)]
pub enum GateRowRule {
    /// The found structure's patient rule, as a gate over these inputs.
    Patient(Vec<GateInput>),
    /// The found structure's metric alone.
    Metric(Metric),
    /// Learned gates over every input, at this threshold.
    Learned(f64),
    /// Learned gates without `agrees-last-frame`, at this threshold.
    StreamBlind(f64),
}

/// One way of deciding at the found structure's exits, on both halves of the held-out frames.
#[derive(Clone)]
pub struct GateRow {
    pub rule: GateRowRule,
    pub select: Simulation,
    pub certify: Simulation,
    pub certificate: Certificate,
}

/// What fitting learned gates on the found structure showed.
pub enum GateFindings {
    /// The found structure has no exit to gate.
    NoExits,
    /// Gates meet the target at no threshold on the selecting frames.
    NoThreshold,
    /// The learned gates, compared with the found rule.
    Compared(Box<GateComparison>),
}

/// The found rule, the learned gates and the gates without the stream signal (when some
/// threshold meets the target without it), and whether the learned gates are kept.
pub struct GateComparison {
    pub found: GateRow,
    pub learned: GateRow,
    pub stream_blind: Option<GateRow>,
    pub kept: bool,
}

/// Learned gates trained and certified on a found structure's exits.
struct Fitted {
    gated: Gated,
    select: Simulation,
    certify: Simulation,
    certificate: Certificate,
}

/// Trains a gate over `inputs` for each exit of `found` on the selecting frames, takes the
/// cheapest threshold that meets the target there, and certifies it as one try.
fn fit(
    zoo: &Zoo,
    found: &Found,
    inputs: Vec<GateInput>,
    costs: &CostTable,
    seed: u64,
    each: f64,
) -> Result<Option<Fitted>> {
    let outputs = |certifying: bool| -> Vec<&ExitOutputs> {
        found
            .placed
            .iter()
            .filter_map(|p| zoo.option(p))
            .map(|o| if certifying { &o.certify } else { &o.select })
            .collect()
    };
    let (select, certify) = (outputs(false), outputs(true));
    let goal = &zoo.problem.goal;
    let streams = &zoo.halves;
    let gate = Gate { inputs };
    let weights = gating::train(
        &gate,
        &select,
        &zoo.select,
        &streams.select_streams,
        goal,
        seed,
    )?;
    let mut gated = Gated {
        gate,
        weights,
        threshold: 0.0,
    };
    let best = gating::thresholds()
        .map(|threshold| {
            gated.threshold = threshold;
            let sim =
                gating::simulate(&gated, &select, &zoo.select, &streams.select_streams, costs);
            (threshold, sim)
        })
        .filter(|(_, sim)| zoo.error(sim) <= goal.limit())
        .min_by(|a, b| a.1.mean_cost.total_cmp(&b.1.mean_cost));
    let Some((threshold, select)) = best else {
        return Ok(None);
    };
    gated.threshold = threshold;
    let certify = gating::simulate(
        &gated,
        &certify,
        &zoo.certify,
        &streams.certify_streams,
        costs,
    );
    let certificate = zoo.certificate(&certify, each);
    Ok(Some(Fitted {
        gated,
        select,
        certify,
        certificate,
    }))
}

impl Fitted {
    /// The fitted gates' row in the comparison.
    fn row(&self, rule: GateRowRule) -> GateRow {
        GateRow {
            rule,
            select: self.select.clone(),
            certify: self.certify.clone(),
            certificate: self.certificate.clone(),
        }
    }

    /// `found`'s structure, with these gates deciding.
    fn on(self, found: &Found) -> Found {
        Found {
            rule: found.rule,
            placed: found.placed.clone(),
            gated: Some(self.gated),
            certificate: self.certificate,
            select: self.select,
            certify: self.certify,
        }
    }
}

/// What gating a found structure gives: the structure kept, the same gates without the stream
/// signal (for `baselines/`, when the learned gates are kept), and what was compared.
pub struct Gating {
    pub found: Found,
    pub stream_blind: Option<Found>,
    pub findings: GateFindings,
}

/// `--format 2`: learned gates on the found structure's exits (see [`fit`]), kept when their
/// certificate is better than the found rule's. When they are kept, the same gates without the
/// stream signal are fitted too, to show what it buys; they are returned for `baselines/`.
pub fn gate(zoo: &Zoo, found: Found, seed: u64, confidence: f64) -> Result<Gating> {
    let unchanged = |found, findings| Gating {
        found,
        stream_blind: None,
        findings,
    };
    let Some(costs) = zoo
        .costs(&found.placed)
        .filter(|_| !found.placed.is_empty())
    else {
        return Ok(unchanged(found, GateFindings::NoExits));
    };
    let each = per_try(confidence);
    let Some(learned) = fit(zoo, &found, gating::inputs(), &costs, seed, each)? else {
        return Ok(unchanged(found, GateFindings::NoThreshold));
    };
    let blind = fit(
        zoo,
        &found,
        gating::stream_blind_inputs(),
        &costs,
        seed,
        each,
    )?;
    let (ours, theirs) = (&learned.certificate, &found.certificate);
    let kept = match (ours.certified, theirs.certified) {
        (true, false) => true,
        (true, true) => learned.select.mean_cost < found.select.mean_cost,
        (false, true) => false,
        (false, false) => ours.better_uncertified_than(Some(theirs)),
    };
    let findings = GateFindings::Compared(Box::new(GateComparison {
        found: GateRow {
            rule: match &found.gated {
                Some(g) => GateRowRule::Patient(g.gate.inputs.clone()),
                None => GateRowRule::Metric(found.rule.metric),
            },
            select: found.select.clone(),
            certify: found.certify.clone(),
            certificate: found.certificate.clone(),
        },
        learned: learned.row(GateRowRule::Learned(learned.gated.threshold)),
        stream_blind: blind
            .as_ref()
            .map(|b| b.row(GateRowRule::StreamBlind(b.gated.threshold))),
        kept,
    }));
    if !kept {
        return Ok(unchanged(found, findings));
    }
    Ok(Gating {
        stream_blind: blind.map(|b| b.on(&found)),
        found: learned.on(&found),
        findings,
    })
}
