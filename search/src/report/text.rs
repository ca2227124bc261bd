//! Small pieces of text every section of the report writes alike.

use earlyexit::gate::GateInput;

/// A share as a percentage with two decimals.
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Gate inputs as the report lists them: `` `max-prob`, `margin` ``.
pub fn inputs_list(inputs: &[GateInput]) -> String {
    inputs
        .iter()
        .map(|i| format!("`{}`", i.word()))
        .collect::<Vec<_>>()
        .join(", ")
}
