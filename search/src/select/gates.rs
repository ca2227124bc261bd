//! Format 2: a patient rule written as the gate that runs it, and learned gates on a found
//! structure's exits.

use std::fmt::Write;

use anyhow::Result;
use earlyexit::bundle::Word;

use super::certified::CERTIFY_TRIES;
use super::rules::{METRICS, rule_of};
use super::tables::{bound_cell, measure_name, measure_of};
use super::zoo::{Found, Zoo};
use crate::calibrate::{ExitScores, Patience};
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

/// `--format 2`: learned gates on the found structure's exits, trained on the selecting frames,
/// with the cheapest threshold that meets the target there. The gated structure is certified
/// as one more try and replaces the found one when its certificate is better.
pub(super) fn gate(
    zoo: &Zoo,
    found: Found,
    seed: u64,
    confidence: f64,
    notes: &mut String,
) -> Result<Found> {
    let _ = writeln!(notes, "\n## Learned gate\n");
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
    let Some(costs) = zoo.costs(&found.placed).filter(|_| !select.is_empty()) else {
        let _ = writeln!(notes, "No structure with exits to gate.");
        return Ok(found);
    };
    let goal = &zoo.problem.goal;
    let weights = gating::train(&select, &zoo.select, &zoo.select_streams, goal, seed)?;
    let gate = earlyexit::gate::Gate {
        inputs: gating::INPUTS.to_vec(),
    };
    let best = gating::thresholds()
        .map(|t| {
            let sim = gating::simulate(
                &gate,
                &weights,
                t,
                &select,
                &zoo.select,
                &zoo.select_streams,
                &costs,
            );
            (t, sim)
        })
        .filter(|(_, sim)| zoo.error(sim) <= goal.limit())
        .min_by(|a, b| a.1.mean_cost.total_cmp(&b.1.mean_cost));
    let Some((threshold, select_sim)) = best else {
        let _ = writeln!(
            notes,
            "Gates on the found structure's exits meet the target at no threshold on the selecting frames."
        );
        return Ok(found);
    };
    let certify_sim = gating::simulate(
        &gate,
        &weights,
        threshold,
        &certify,
        &zoo.certify,
        &zoo.certify_streams,
        &costs,
    );
    let each = 1.0 - (1.0 - confidence) / CERTIFY_TRIES as f64;
    let certificate = zoo.certificate(&certify_sim, each);
    let m = measure_name(goal.measure);
    let _ = writeln!(
        notes,
        "Each exit of the found structure gets a logistic gate over {}, trained on the selecting frames to tell when leaving costs nothing; one threshold on the gates' probability, the cheapest that meets the target there, is certified as one more try.\n",
        gating::INPUTS
            .iter()
            .map(|i| format!("`{}`", i.word()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        notes,
        "| rule | cost (select) | {m} (select) | cost (certify) | {m} (certify) | bound |"
    );
    let _ = writeln!(notes, "|---|---|---|---|---|---|");
    for (name, sel, cert, c) in [
        (
            match &found.gated {
                Some(g) => format!(
                    "patient: gate over {}",
                    g.gate
                        .inputs
                        .iter()
                        .map(|i| format!("`{}`", i.word()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("metric `{}`", METRICS[found.metric].word()),
            },
            &found.select,
            &found.certify,
            &found.certificate,
        ),
        (
            format!("gate ≥ {threshold:.4}"),
            &select_sim,
            &certify_sim,
            &certificate,
        ),
    ] {
        let _ = writeln!(
            notes,
            "| {name} | {:.4} | {:.2}% | {:.4} | {:.2}% | {}{} |",
            sel.mean_cost,
            100.0 * measure_of(goal.measure, sel),
            cert.mean_cost,
            100.0 * measure_of(goal.measure, cert),
            bound_cell(c),
            if c.certified { "" } else { " (not certified)" }
        );
    }
    let better = match (certificate.certified, found.certificate.certified) {
        (true, false) => true,
        (true, true) => select_sim.mean_cost < found.select.mean_cost,
        (false, true) => false,
        (false, false) => certificate.merit() > found.certificate.merit(),
    };
    if !better {
        let _ = writeln!(notes, "\nThe metric rule stays: its certificate is better.");
        return Ok(found);
    }
    let _ = writeln!(notes, "\nThe gates are kept (bundle format `earlyexit/2`).");
    Ok(Found {
        gated: Some(Gated {
            gate,
            weights,
            threshold,
        }),
        certificate,
        select: select_sim,
        certify: certify_sim,
        ..found
    })
}
