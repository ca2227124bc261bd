//! What `evaluate` prints: a table per footage and in total, or one JSON object; and the
//! `--refit` rows.

use std::path::Path;

use serde_json::json;

use super::tally::{Comparison, FootageReport, Tally, Totals};
use crate::refit::{At, Table};

/// Prints the figures of every footage, their total and the refit rows: as a table, or as one
/// JSON object when `as_json`.
pub(super) fn output(
    as_json: bool,
    reports: &[FootageReport],
    total: &Totals,
    compare_path: Option<&Path>,
    refitted: Option<&Table>,
) -> anyhow::Result<()> {
    if !as_json {
        print_table(reports, total, compare_path);
        if let Some(t) = refitted {
            print_refit(t, compare_path.is_some());
        }
        return Ok(());
    }
    let with_comparison = |t: &Tally, c: &Option<Comparison>| {
        let mut o = t.json();
        if let (Some(c), Some(path)) = (c, compare_path) {
            o["compare"] = c.json(path);
        }
        o
    };
    let mut top = with_comparison(&total.tally, &total.comparison);
    top["footage"] = reports
        .iter()
        .map(|r| {
            let mut o = with_comparison(&r.tally, &r.comparison);
            o["path"] = json!(r.footage.name);
            o
        })
        .collect();
    if let Some(t) = refitted {
        top["refit"] = refit_json(t);
    }
    println!("{}", serde_json::to_string_pretty(&top)?);
    Ok(())
}

/// How a refit row names whose figure it asks for, in JSON and in the table.
fn at_word(at: At) -> &'static str {
    match at {
        At::Model => "model",
        At::Compare => "compare",
        At::Backbone => "backbone",
    }
}

fn at_name(at: At) -> &'static str {
    match at {
        At::Model => "bundle (--model)",
        At::Compare => "compared bundle",
        At::Backbone => "full backbone",
    }
}

fn refit_json(table: &Table) -> serde_json::Value {
    json!({
        "measure": table.measure,
        "rows": table.rows.iter().map(|r| json!({
            "at": at_word(r.at),
            "value": r.value,
            "cost": r.cost,
            "compare_cost": r.compare_cost,
        })).collect::<Vec<_>>(),
    })
}

fn print_refit(table: &Table, compared: bool) {
    if table.rows.is_empty() {
        println!("\nrefitted: no frames to fit on");
        return;
    }
    println!(
        "\nrefitted: each structure's exit thresholds fitted on these frames for the cheapest mean cost at the {m} of each row (in-sample: it compares structures at equal {m}, and promises nothing)",
        m = table.measure
    );
    print!("{:<28} {:>9} {:>10}", "at the", table.measure, "cost");
    if compared {
        print!(" {:>12}", "cost compare");
    }
    println!();
    let cost = |c: Option<f64>| c.map_or_else(|| "not met".to_owned(), |c| format!("{c:.3}"));
    for r in &table.rows {
        print!(
            "{:<28} {:>8.2}% {:>10}",
            at_name(r.at),
            100.0 * r.value,
            cost(r.cost)
        );
        if compared {
            print!(" {:>12}", cost(r.compare_cost));
        }
        println!();
    }
}

/// The figures of every footage and their total, as a table; then the compared bundle's.
fn print_table(reports: &[FootageReport], total: &Totals, compare_path: Option<&Path>) {
    let pct = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{:.2}%", v * 100.0));
    let num = |x: Option<f64>, digits: usize| {
        x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  exits per stage",
        "footage", "frames", "accuracy", "acc full", "agreement", "cost", "ms/frame", "ms full"
    );
    let rows = reports
        .iter()
        .map(|r| (r.footage.short_name(), &r.tally, &r.comparison))
        .chain(std::iter::once((
            "total".to_owned(),
            &total.tally,
            &total.comparison,
        )));
    for (name, t, _) in rows.clone() {
        println!(
            "{:<28} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
            name,
            t.frames,
            pct(t.accuracy()),
            pct(t.full_accuracy()),
            pct(t.agreement()),
            num(t.mean_cost(), 3),
            num(t.ms_per_frame(&t.bundle_ns), 3),
            num(t.ms_per_frame(&t.full_ns), 3),
            t.stages_text()
        );
    }
    let Some(path) = compare_path else { return };
    println!(
        "\ncompared with {} on the same frames (untimed); difference = accuracy of --model minus this one's, p from McNemar's exact test",
        path.display()
    );
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}  exits per stage",
        "footage",
        "frames",
        "accuracy",
        "agreement",
        "cost",
        "only model",
        "only this",
        "difference",
        "p"
    );
    for (name, _, c) in rows {
        let Some(c) = c else { continue };
        println!(
            "{:<28} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}  {}",
            name,
            c.tally.frames,
            pct(c.tally.accuracy()),
            pct(c.tally.agreement()),
            num(c.tally.mean_cost(), 3),
            c.paired.only_a,
            c.paired.only_b,
            c.difference()
                .map_or_else(|| "-".to_owned(), |d| format!("{:+.2} pp", 100.0 * d)),
            num(c.p_value(), 3),
            c.tally.stages_text()
        );
    }
}
