//! The rules of the format that tie keys together, checked on read and again on loading, for
//! bundles built in code.

use super::error::BundleError;
use super::types::{Bundle, Format};
use super::words::Word;

impl Bundle {
    /// Checks the rules that tie keys together: the metric is one the format names, and the
    /// gate rules ([`Bundle::check_gates`]). The reader calls it, and so does loading, for
    /// bundles built in code.
    pub fn check(&self) -> Result<(), BundleError> {
        if !self.format.metrics().contains(&self.metric) {
            return Err(BundleError {
                file: self.file.clone(),
                key: "metric".into(),
                message: format!(
                    "'{}' needs format: {}",
                    self.metric.word(),
                    Format::V2.word()
                ),
            });
        }
        if self.reuse.is_some() && self.format < Format::V3 {
            return Err(BundleError {
                file: self.file.clone(),
                key: "reuse".into(),
                message: format!("needs format: {}", Format::V3.word()),
            });
        }
        self.check_macs()?;
        self.check_gates()
    }

    /// Checks that the MACs of every segment and head add up to a number that fits: a frame's
    /// cost is a sum of them. Names the first key where the total overflows.
    pub fn check_macs(&self) -> Result<(), BundleError> {
        let mut total = self.reuse.as_ref().map_or(0, |r| r.macs(&self.input));
        for (i, stage) in self.stages.iter().enumerate() {
            let counts = [
                (format!("stages[{i}].macs"), stage.macs),
                (
                    format!("stages[{i}].exit.macs"),
                    stage.exit.as_ref().and_then(|e| e.macs),
                ),
            ];
            for (key, macs) in counts {
                total = total.checked_add(macs.unwrap_or(0)).ok_or_else(|| BundleError {
                    file: self.file.clone(),
                    key,
                    message: format!(
                        "the bundle's MACs add up to more than {} here; no backbone is that large",
                        u64::MAX
                    ),
                })?;
            }
        }
        Ok(())
    }

    /// Checks the gate rules that tie keys together: gates need format 2, every exit has a
    /// gate exactly when the bundle has one, one finite weight per input, no input twice.
    pub fn check_gates(&self) -> Result<(), BundleError> {
        let fail = |key: String, message: String| {
            Err(BundleError {
                file: self.file.clone(),
                key,
                message,
            })
        };
        let needs_v2 = || format!("needs format: {}", Format::V2.word());
        if let Some(gate) = &self.gate {
            if self.format == Format::V1 {
                return fail("gate".into(), needs_v2());
            }
            if gate.inputs.is_empty() {
                return fail("gate.inputs".into(), "needs at least one input".into());
            }
            for (i, input) in gate.inputs.iter().enumerate() {
                if gate.inputs[..i].contains(input) {
                    return fail(
                        format!("gate.inputs[{i}]"),
                        format!("'{}' is listed twice", input.word()),
                    );
                }
            }
        }
        for (i, stage) in self.stages.iter().enumerate() {
            let Some(exit) = &stage.exit else { continue };
            let key = format!("stages[{i}].exit.gate");
            match (&self.gate, &exit.gate) {
                (_, Some(_)) if self.format == Format::V1 => return fail(key, needs_v2()),
                (None, Some(_)) => {
                    return fail(
                        key,
                        "the bundle has no top-level gate to give its inputs".into(),
                    );
                }
                (Some(_), None) => {
                    return fail(
                        key,
                        "missing: the bundle has a gate, so every exit needs one".into(),
                    );
                }
                (Some(gate), Some(weights)) => {
                    if weights.weights.len() != gate.inputs.len() {
                        return fail(
                            format!("{key}.weights"),
                            format!(
                                "has {} values; gate.inputs has {}",
                                weights.weights.len(),
                                gate.inputs.len()
                            ),
                        );
                    }
                    if let Some(j) = weights.weights.iter().position(|w| !w.is_finite()) {
                        return fail(format!("{key}.weights[{j}]"), "must be finite".into());
                    }
                    if !weights.bias.is_finite() {
                        return fail(format!("{key}.bias"), "must be finite".into());
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }
}
