//! The report's section on measured latency (`--cost latency`).

use std::fmt::Write;

use crate::latency::{Latency, StructureTimes, TIMED_RUNS, WARMUP_RUNS};
use crate::problem::Choice;

/// Every piece's time, the chosen structure's segments and heads, and its expected mean time
/// per held-out frame against the uncut backbone.
pub fn section(r: &mut String, latency: &Latency, chosen: &StructureTimes, choice: &Choice) {
    let ms = |ns: u64| ns as f64 / 1e6;
    let backbone = latency.backbone();
    let _ = writeln!(r, "\n## Measured latency\n");
    let threads = match latency.threads() {
        0 => "threads chosen by ONNX Runtime".to_owned(),
        n => format!("{n} intra-op thread{}", if n == 1 { "" } else { "s" }),
    };
    let _ = writeln!(
        r,
        "ONNX Runtime on this machine ({threads}; heads on one thread), one frame of zeros, the median of {TIMED_RUNS} runs after {WARMUP_RUNS} warm-up runs, the backbone and its pieces taking turns. A segment's time is the sum of its pieces'.\n"
    );
    let _ = writeln!(r, "| piece | ms |");
    let _ = writeln!(r, "|---|---|");
    let name = |j: usize| {
        latency
            .candidates()
            .get(j)
            .map_or("output".to_owned(), |c| format!("`{}`", c.tensor))
    };
    for (j, t) in latency.pieces().iter().enumerate() {
        let from = j.checked_sub(1).map_or("input".to_owned(), name);
        let _ = writeln!(r, "| {from} → {} | {:.3} |", name(j), ms(*t));
    }
    let _ = writeln!(
        r,
        "| all pieces | {:.3} |",
        ms(latency.pieces().iter().sum::<u64>())
    );
    let _ = writeln!(r, "| uncut backbone | {:.3} |", ms(backbone));

    let _ = writeln!(r, "\nThe chosen structure:\n");
    let _ = writeln!(r, "| stage | segment ms | exit head | head ms |");
    let _ = writeln!(r, "|---|---|---|---|");
    for (k, t) in chosen.segments.iter().enumerate() {
        let (head, head_ms) = match (choice.exits.get(k), chosen.heads.get(k)) {
            (Some(e), Some(&h)) => (e.head.kind.name(), format!("{:.3}", ms(h))),
            _ => ("-", "-".to_owned()),
        };
        let _ = writeln!(r, "| {k} | {:.3} | {head} | {head_ms} |", ms(*t));
    }
    let expected = choice.held.mean_cost * backbone as f64;
    let _ = writeln!(
        r,
        "\nExpected mean time per held-out frame: **{:.3} ms**, against **{:.3} ms** for the uncut backbone ({:.2}× as fast). Preprocessing and decoding are not included.",
        expected / 1e6,
        ms(backbone),
        backbone as f64 / expected.max(1.0)
    );
}
