//! Format 2: a patient rule written as the gate that runs it, and learned gates on a found
//! structure's exits.

use std::fmt::Write;

use anyhow::Result;
use earlyexit::bundle::Word;
use earlyexit::cost::CostTable;
use earlyexit::gate::{Gate, GateInput};

use super::certified::per_try;
use super::rules::{METRICS, rule_of};
use super::tables::{bound_cell, measure_name, measure_of};
use super::zoo::{Certificate, Found, Zoo};
use crate::calibrate::{ExitScores, Patience, Simulation};
use crate::gating::{self, Gated};

/// A found patient rule as the gate that runs it (see [`gating::patient`]), so that the bundle,
/// `evaluate` and the report's held-out figures all run it the same way.
pub(super) fn patient_as_gate(zoo: &Zoo, found: Found) -> Found {
    let (metric, patience) = rule_of(found.metric);
    let gated = (patience != Patience::None).then(|| {
        let thresholds: Vec<f64> = found
            .placed
            .iter()
            .filter_map(|&(c, k, t)| zoo.options[c][k].as_ref().map(|o| o.thresholds[metric][t]))
            .collect();
        gating::patient(METRICS[metric], &thresholds, patience)
    });
    Found {
        metric,
        gated,
        ..found
    }
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
    inputs: &[GateInput],
    costs: &CostTable,
    seed: u64,
    each: f64,
) -> Result<Option<Fitted>> {
    let outputs = |certifying: bool| -> Vec<&[ExitScores]> {
        found
            .placed
            .iter()
            .filter_map(|&(c, k, _)| zoo.options[c][k].as_ref())
            .map(|o| {
                if certifying {
                    o.certify.as_slice()
                } else {
                    o.select.as_slice()
                }
            })
            .collect()
    };
    let (select, certify) = (outputs(false), outputs(true));
    let goal = &zoo.problem.goal;
    let gate = Gate {
        inputs: inputs.to_vec(),
    };
    let weights = gating::train(&gate, &select, &zoo.select, &zoo.select_streams, goal, seed)?;
    let best = gating::thresholds()
        .map(|t| {
            let sim = gating::simulate(
                &gate,
                &weights,
                t,
                &select,
                &zoo.select,
                &zoo.select_streams,
                costs,
            );
            (t, sim)
        })
        .filter(|(_, sim)| zoo.error(sim) <= goal.limit())
        .min_by(|a, b| a.1.mean_cost.total_cmp(&b.1.mean_cost));
    let Some((threshold, select)) = best else {
        return Ok(None);
    };
    let certify = gating::simulate(
        &gate,
        &weights,
        threshold,
        &certify,
        &zoo.certify,
        &zoo.certify_streams,
        costs,
    );
    let certificate = zoo.certificate(&certify, each);
    Ok(Some(Fitted {
        gated: Gated {
            gate,
            weights,
            threshold,
        },
        select,
        certify,
        certificate,
    }))
}

impl Fitted {
    /// `found`'s structure, with these gates deciding; its scored configurations stay behind.
    fn on(self, found: &Found) -> Found {
        Found {
            metric: found.metric,
            placed: found.placed.clone(),
            gated: Some(self.gated),
            certificate: self.certificate,
            select: self.select,
            certify: self.certify,
            scored: Vec::new(),
        }
    }
}

fn inputs_list(inputs: &[GateInput]) -> String {
    inputs
        .iter()
        .map(|i| format!("`{}`", i.word()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--format 2`: learned gates on the found structure's exits (see [`fit`]), kept when their
/// certificate is better than the found rule's. When they are kept, the same gates without the
/// stream signal are fitted too, to show what it buys; they are returned for `baselines/`.
pub(super) fn gate(
    zoo: &Zoo,
    found: Found,
    seed: u64,
    confidence: f64,
    notes: &mut String,
) -> Result<(Found, Option<Found>)> {
    let _ = writeln!(notes, "\n## Learned gate\n");
    let Some(costs) = zoo
        .costs(&found.placed)
        .filter(|_| !found.placed.is_empty())
    else {
        let _ = writeln!(notes, "No structure with exits to gate.");
        return Ok((found, None));
    };
    let each = per_try(confidence);
    let Some(fitted) = fit(zoo, &found, &gating::INPUTS, &costs, seed, each)? else {
        let _ = writeln!(
            notes,
            "Gates on the found structure's exits meet the target at no threshold on the selecting frames."
        );
        return Ok((found, None));
    };
    let blind = fit(
        zoo,
        &found,
        &gating::stream_blind_inputs(),
        &costs,
        seed,
        each,
    )?;

    let goal = &zoo.problem.goal;
    let m = measure_name(goal.measure);
    let _ = writeln!(
        notes,
        "Each exit of the found structure gets a logistic gate over {}, trained on the selecting frames to tell when leaving costs nothing; one threshold on the gates' probability, the cheapest that meets the target there, is certified as one more try. The same gates without `{}`, fitted the same way, show what the stream signal buys; they are not a candidate.\n",
        inputs_list(&gating::INPUTS),
        GateInput::AgreesLastFrame.word()
    );
    let _ = writeln!(
        notes,
        "| rule | cost (select) | {m} (select) | cost (certify) | {m} (certify) | bound |"
    );
    let _ = writeln!(notes, "|---|---|---|---|---|---|");
    let found_name = match &found.gated {
        Some(g) => format!("patient: gate over {}", inputs_list(&g.gate.inputs)),
        None => format!("metric `{}`", METRICS[found.metric].word()),
    };
    let mut rows = vec![
        (
            found_name,
            &found.select,
            &found.certify,
            &found.certificate,
        ),
        (
            format!("gate ≥ {:.4}", fitted.gated.threshold),
            &fitted.select,
            &fitted.certify,
            &fitted.certificate,
        ),
    ];
    if let Some(b) = &blind {
        rows.push((
            format!(
                "gate ≥ {:.4} without `{}`",
                b.gated.threshold,
                GateInput::AgreesLastFrame.word()
            ),
            &b.select,
            &b.certify,
            &b.certificate,
        ));
    }
    for (name, sel, cert, c) in rows {
        let _ = writeln!(
            notes,
            "| {name} | {:.4} | {:.2}% | {:.4} | {:.2}% | {}{} |",
            sel.mean_cost,
            100.0 * measure_of(goal.measure, sel),
            cert.mean_cost,
            100.0 * measure_of(goal.measure, cert),
            bound_cell(c),
            match (c.certified, c.refuted) {
                (true, _) => "",
                (false, false) => " (not certified)",
                (false, true) => " (refuted)",
            }
        );
    }
    if blind.is_none() {
        let _ = writeln!(
            notes,
            "\nWithout `{}`, gates meet the target at no threshold on the selecting frames.",
            GateInput::AgreesLastFrame.word()
        );
    }
    let (ours, theirs) = (&fitted.certificate, &found.certificate);
    let better = match (ours.certified, theirs.certified) {
        (true, false) => true,
        (true, true) => fitted.select.mean_cost < found.select.mean_cost,
        (false, true) => false,
        (false, false) => ours.better_uncertified_than(Some(theirs)),
    };
    if !better {
        let _ = writeln!(notes, "\nThe metric rule stays: its certificate is better.");
        return Ok((found, None));
    }
    let _ = writeln!(
        notes,
        "\nThe gates are kept (bundle format `earlyexit/2`); the gates without `{}` are written under `baselines/no-last-frame`.",
        GateInput::AgreesLastFrame.word()
    );
    let blind = blind.map(|b| b.on(&found));
    let mut kept = fitted.on(&found);
    kept.scored = found.scored;
    Ok((kept, blind))
}
