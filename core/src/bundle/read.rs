//! Reading `exits.yaml` with every rule of the format checked. Each error names the file, the
//! key and what is wrong; unknown keys become warnings.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::error::BundleError;
use super::files;
use super::types::{Bundle, EXITS_FILE, Exit, Format, Labels, Measure, Promise, Stage};
use super::words::Word;
use crate::gate::{Gate, GateInput, GateWeights};
use crate::input::{Color, InputSpec, Layout};
use crate::reuse::{Detector, ReuseRule};
use crate::rule::{Metric, Output};

/// Reads a bundle from its `exits.yaml` or from the folder that holds it. Returns the bundle and
/// the warnings (unknown keys) that a caller should log.
pub fn read(path: &Path) -> Result<(Bundle, Vec<String>), BundleError> {
    let file = if path.is_dir() {
        path.join(EXITS_FILE)
    } else {
        path.to_path_buf()
    };
    let text = files::read_text(&file, "model", files::MAX_EXITS_BYTES)?;
    files::check_nesting(&file, &text)?;
    // A byte-order mark is allowed in YAML (editors on Windows write one); serde_yaml takes it
    // for the start of a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let root: Value = serde_yaml::from_str(text).map_err(|e| BundleError {
        file: file.clone(),
        key: "(document)".into(),
        message: format!("not valid YAML: {e}"),
    })?;
    let mut reader = Reader {
        file,
        warnings: Vec::new(),
    };
    let bundle = reader.bundle(&root)?;
    Ok((bundle, reader.warnings))
}

struct Reader {
    file: PathBuf,
    warnings: Vec<String>,
}

/// The keys the format defines at each level; others are warned about and ignored.
const TOP_KEYS: &[&str] = &[
    "format", "name", "input", "labels", "metric", "gate", "promise", "reuse", "stages",
];
const REUSE_KEYS: &[&str] = &["detector", "grid", "threshold", "max-age"];
const INPUT_KEYS: &[&str] = &["layout", "width", "height", "color", "mean", "std"];
const PROMISE_KEYS: &[&str] = &["measure", "target", "confidence", "frames"];
const STAGE_KEYS: &[&str] = &["segment", "macs", "exit", "output"];
const EXIT_KEYS: &[&str] = &["head", "threshold", "macs", "gate"];
const GATE_KEYS: &[&str] = &["inputs"];
const EXIT_GATE_KEYS: &[&str] = &["weights", "bias"];

impl Reader {
    fn fail<T>(&self, key: &str, message: impl Into<String>) -> Result<T, BundleError> {
        Err(BundleError {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        })
    }

    fn mapping<'v>(&self, value: &'v Value, key: &str) -> Result<&'v Mapping, BundleError> {
        match value {
            Value::Mapping(m) => Ok(m),
            other => self.fail(key, format!("expected a mapping, found {}", kind(other))),
        }
    }

    fn warn_unknown(&mut self, map: &Mapping, prefix: &str, known: &[&str]) {
        for k in map.keys() {
            let name = k
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{k:?}"));
            if !known.contains(&name.as_str()) {
                self.warnings.push(format!(
                    "{}: {}: unknown key, ignored",
                    self.file.display(),
                    join(prefix, &name)
                ));
            }
        }
    }

    fn string(
        &self,
        map: &Mapping,
        prefix: &str,
        key: &str,
    ) -> Result<Option<String>, BundleError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => self.fail(
                &join(prefix, key),
                format!("expected a string, found {}", kind(other)),
            ),
        }
    }

    fn required_string(
        &self,
        map: &Mapping,
        prefix: &str,
        key: &str,
    ) -> Result<String, BundleError> {
        self.string(map, prefix, key)?
            .map_or_else(|| self.fail(&join(prefix, key), "missing"), Ok)
    }

    fn number(&self, map: &Mapping, prefix: &str, key: &str) -> Result<Option<f64>, BundleError> {
        let path = join(prefix, key);
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_f64(v) {
                Some(x) if x.is_finite() => Ok(Some(x)),
                Some(x) => self.fail(&path, format!("must be a finite number, found {x}")),
                // The YAML reader keeps a number too large for a float as text.
                None if beyond_f64(v) => self.fail(
                    &path,
                    format!("{} is beyond the range of 64-bit floats", show(v)),
                ),
                None => self.fail(&path, format!("expected a number, found {}", kind(v))),
            },
        }
    }

    fn count(&self, map: &Mapping, prefix: &str, key: &str) -> Result<Option<u64>, BundleError> {
        let path = join(prefix, key);
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            // Readers accept `4.3577856e7` for 43577856: a whole number written as a float,
            // up to 2^53, where every whole number still has its own float.
            Some(Value::Number(n))
                if n.as_f64().is_some_and(|x| {
                    (0.0..=9_007_199_254_740_992.0).contains(&x) && x.fract() == 0.0
                }) =>
            {
                Ok(n.as_f64().map(|x| x as u64))
            }
            Some(other) => self.fail(
                &path,
                format!("expected a whole number ≥ 0, found {}", show(other)),
            ),
        }
    }

    fn choice<T: Word>(
        &self,
        map: &Mapping,
        prefix: &str,
        key: &str,
    ) -> Result<Option<T>, BundleError> {
        let Some(word) = self.string(map, prefix, key)? else {
            return Ok(None);
        };
        match T::ALL.iter().find(|v| v.word() == word) {
            Some(value) => Ok(Some(*value)),
            None => self.fail(&join(prefix, key), not_one_of::<T>(&word)),
        }
    }

    fn bundle(&mut self, root: &Value) -> Result<Bundle, BundleError> {
        let map = self.mapping(root, "(document)")?;
        self.warn_unknown(map, "", TOP_KEYS);
        let format_word = self.required_string(map, "", "format")?;
        let Some(format) = Format::ALL
            .iter()
            .copied()
            .find(|f| f.word() == format_word)
        else {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.word()).collect();
            return self.fail(
                "format",
                format!(
                    "unknown format '{format_word}'; this reader knows {}",
                    known.join(", ")
                ),
            );
        };
        // Free text: an unquoted `2024` or `yes` is still a name.
        let name = match map.get("name") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => self.string(map, "", "name")?,
        };
        let input = match map.get("input") {
            Some(v) => self.input(v)?,
            None => return self.fail("input", "missing"),
        };
        let labels = match self.string(map, "", "labels")? {
            Some(rel) => Some(self.labels(rel)?),
            None => None,
        };
        let metric = self
            .choice::<Metric>(map, "", "metric")?
            .unwrap_or_default();
        let gate = match map.get("gate") {
            None | Some(Value::Null) => None,
            Some(_) if self.unknown_before(format, Format::V2, "gate", "gates") => None,
            Some(v) => Some(self.gate(v)?),
        };
        let promise = match map.get("promise") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.promise(v)?),
        };
        let reuse = match map.get("reuse") {
            None | Some(Value::Null) => None,
            Some(_) if self.unknown_before(format, Format::V3, "reuse", "the stream rule") => None,
            Some(v) => Some(self.reuse(v)?),
        };
        let (stages, output) = self.stages(map.get("stages"), format)?;
        let bundle = Bundle {
            file: self.file.clone(),
            format,
            name,
            input,
            labels,
            metric,
            gate,
            promise,
            reuse,
            stages,
            output,
        };
        bundle.check()?;
        Ok(bundle)
    }

    /// Whether `key`, which format `since` added for `what`, is unknown to this bundle's
    /// format: an earlier format warns about it and ignores it, as it does every key it does
    /// not know.
    fn unknown_before(&mut self, format: Format, since: Format, key: &str, what: &str) -> bool {
        if format >= since {
            return false;
        }
        self.warnings.push(format!(
            "{}: {key}: unknown key in format {} ({what} need {}), ignored",
            self.file.display(),
            format.word(),
            since.word()
        ));
        true
    }

    fn reuse(&mut self, value: &Value) -> Result<ReuseRule, BundleError> {
        let map = self.mapping(value, "reuse")?;
        self.warn_unknown(map, "reuse", REUSE_KEYS);
        let detector = self
            .choice::<Detector>(map, "reuse", "detector")?
            .map_or_else(|| self.fail("reuse.detector", "missing"), Ok)?;
        let grid = self
            .count(map, "reuse", "grid")?
            .map_or_else(|| self.fail("reuse.grid", "missing"), Ok)?;
        let threshold = self
            .number(map, "reuse", "threshold")?
            .map_or_else(|| self.fail("reuse.threshold", "missing"), Ok)?;
        let max_age = self
            .count(map, "reuse", "max-age")?
            .map_or_else(|| self.fail("reuse.max-age", "missing"), Ok)?;
        let whole = |key: &str, n: u64, max: u64| {
            if (1..=max).contains(&n) {
                Ok(n as u32)
            } else {
                self.fail(
                    &join("reuse", key),
                    format!("must lie in 1..={max}, found {n}"),
                )
            }
        };
        Ok(ReuseRule {
            detector,
            grid: whole("grid", grid, 64)?,
            threshold,
            max_age: whole("max-age", max_age, 100_000)?,
        })
    }

    fn gate(&mut self, value: &Value) -> Result<Gate, BundleError> {
        let map = self.mapping(value, "gate")?;
        self.warn_unknown(map, "gate", GATE_KEYS);
        let items = match map.get("inputs") {
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                return self.fail(
                    "gate.inputs",
                    format!("expected a list, found {}", kind(other)),
                );
            }
            None => return self.fail("gate.inputs", "missing"),
        };
        let inputs = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let key = format!("gate.inputs[{i}]");
                let Value::String(word) = v else {
                    return self.fail(&key, format!("expected a string, found {}", kind(v)));
                };
                GateInput::ALL
                    .iter()
                    .copied()
                    .find(|input| input.word() == word)
                    .map_or_else(|| self.fail(&key, not_one_of::<GateInput>(word)), Ok)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gate { inputs })
    }

    fn exit_gate(&mut self, value: &Value, prefix: &str) -> Result<GateWeights, BundleError> {
        let map = self.mapping(value, prefix)?;
        self.warn_unknown(map, prefix, EXIT_GATE_KEYS);
        let key = join(prefix, "weights");
        let Some(Value::Sequence(items)) = map.get("weights") else {
            return self.fail(&key, "expected a list of numbers, one per gate input");
        };
        let weights = self.finite_numbers(items, &key)?;
        let bias = self
            .number(map, prefix, "bias")?
            .map_or_else(|| self.fail(&join(prefix, "bias"), "missing"), Ok)?;
        Ok(GateWeights { weights, bias })
    }

    fn input(&mut self, value: &Value) -> Result<InputSpec, BundleError> {
        let map = self.mapping(value, "input")?;
        self.warn_unknown(map, "input", INPUT_KEYS);
        const MISSING: &str = "missing (input needs all six keys)";
        if let Some(key) = INPUT_KEYS
            .iter()
            .find(|k| matches!(map.get(**k), None | Some(Value::Null)))
        {
            return self.fail(&join("input", key), MISSING);
        }
        let layout = self
            .choice::<Layout>(map, "input", "layout")?
            .map_or_else(|| self.fail("input.layout", MISSING), Ok)?;
        let color = self
            .choice::<Color>(map, "input", "color")?
            .map_or_else(|| self.fail("input.color", MISSING), Ok)?;
        let size = |key: &str| -> Result<u32, BundleError> {
            match self.count(map, "input", key)? {
                Some(n) if n > 0 && n <= 65_536 => Ok(n as u32),
                _ => self.fail(
                    &join("input", key),
                    "must be a whole number from 1 to 65536",
                ),
            }
        };
        let width = size("width")?;
        let height = size("height")?;
        let mean = self.per_channel(map, "mean", color)?;
        let std = self.per_channel(map, "std", color)?;
        if let Some(i) = std.iter().position(|s| *s == 0.0) {
            return self.fail(&format!("input.std[{i}]"), "must not be 0");
        }
        // Pixels are 0..=255; each must stay a finite 32-bit float after (pixel - mean) / std.
        let finite = |c: usize| {
            [0.0f32, 255.0]
                .iter()
                .all(|p| ((p - mean[c]) / std[c]).is_finite())
        };
        if let Some(c) = (0..std.len()).find(|&c| !finite(c)) {
            return self.fail(
                &format!("input.std[{c}]"),
                format!(
                    "{} makes the input infinite: (pixel - mean) / std overflows 32-bit floats for pixels 0..255",
                    std[c]
                ),
            );
        }
        Ok(InputSpec {
            layout,
            width,
            height,
            color,
            mean,
            std,
        })
    }

    fn per_channel(&self, map: &Mapping, key: &str, color: Color) -> Result<Vec<f32>, BundleError> {
        let path = join("input", key);
        let Some(Value::Sequence(items)) = map.get(key) else {
            return self.fail(&path, "expected a list of numbers, one per channel");
        };
        if items.len() != color.channels() {
            return self.fail(
                &path,
                format!(
                    "has {} values; color {} needs {}",
                    items.len(),
                    color.word(),
                    color.channels()
                ),
            );
        }
        let values = self.finite_numbers(items, &path)?;
        // Frames are preprocessed in 32-bit floats.
        values
            .iter()
            .enumerate()
            .map(|(i, &x)| match x as f32 {
                y if y.is_finite() => Ok(y),
                _ => self.fail(
                    &format!("{path}[{i}]"),
                    format!("{x} is beyond the range of 32-bit floats"),
                ),
            })
            .collect()
    }

    /// A YAML list of finite numbers at `path`.
    fn finite_numbers(&self, items: &[Value], path: &str) -> Result<Vec<f64>, BundleError> {
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match as_f64(v) {
                Some(x) if x.is_finite() => Ok(x),
                _ if beyond_f64(v) => self.fail(
                    &format!("{path}[{i}]"),
                    format!("{} is beyond the range of 64-bit floats", show(v)),
                ),
                _ => self.fail(
                    &format!("{path}[{i}]"),
                    format!("expected a finite number, found {}", show(v)),
                ),
            })
            .collect()
    }

    fn labels(&self, relative: String) -> Result<Labels, BundleError> {
        let path = files::inside(&self.file, &relative, "labels")?;
        let text = files::read_text(&path, "labels", files::MAX_LABELS_BYTES)?;
        let names = parse_labels(&text);
        Ok(Labels {
            file: relative,
            names,
        })
    }

    fn promise(&mut self, value: &Value) -> Result<Promise, BundleError> {
        let map = self.mapping(value, "promise")?;
        self.warn_unknown(map, "promise", PROMISE_KEYS);
        let measure = self
            .choice::<Measure>(map, "promise", "measure")?
            .map_or_else(|| self.fail("promise.measure", "missing"), Ok)?;
        let unit = |key: &str| -> Result<f64, BundleError> {
            match self.number(map, "promise", key)? {
                Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
                Some(x) => self.fail(
                    &join("promise", key),
                    format!("must lie in 0..1, found {x}"),
                ),
                None => self.fail(&join("promise", key), "missing"),
            }
        };
        let target = unit("target")?;
        let confidence = unit("confidence")?;
        let frames = self
            .count(map, "promise", "frames")?
            .map_or_else(|| self.fail("promise.frames", "missing"), Ok)?;
        Ok(Promise {
            measure,
            target,
            confidence,
            frames,
        })
    }

    fn stages(
        &mut self,
        value: Option<&Value>,
        format: Format,
    ) -> Result<(Vec<Stage>, Output), BundleError> {
        let items = match value {
            Some(Value::Sequence(items)) if !items.is_empty() => items,
            Some(Value::Sequence(_)) => return self.fail("stages", "needs at least one stage"),
            Some(other) => {
                return self.fail("stages", format!("expected a list, found {}", kind(other)));
            }
            None => return self.fail("stages", "missing"),
        };
        let last = items.len() - 1;
        let mut stages = Vec::with_capacity(items.len());
        let mut output = Output::default();
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("stages[{i}]");
            let map = self.mapping(item, &prefix)?;
            self.warn_unknown(map, &prefix, STAGE_KEYS);
            let segment = self.required_string(map, &prefix, "segment")?;
            self.check_file(&segment, &join(&prefix, "segment"))?;
            let macs = self.count(map, &prefix, "macs")?;
            let exit = match map.get("exit") {
                None | Some(Value::Null) => None,
                Some(_) if i == last => {
                    return self.fail(
                        &join(&prefix, "exit"),
                        "the last stage must not have an exit: it always answers",
                    );
                }
                Some(v) => Some(self.exit(v, &join(&prefix, "exit"), format)?),
            };
            if map.contains_key("output") {
                if i != last {
                    return self.fail(&join(&prefix, "output"), "allowed on the last stage only");
                }
                output = self
                    .choice::<Output>(map, &prefix, "output")?
                    .unwrap_or_default();
            }
            stages.push(Stage {
                segment,
                macs,
                exit,
            });
        }
        Ok((stages, output))
    }

    fn exit(&mut self, value: &Value, prefix: &str, format: Format) -> Result<Exit, BundleError> {
        let map = self.mapping(value, prefix)?;
        self.warn_unknown(map, prefix, EXIT_KEYS);
        let head = self.required_string(map, prefix, "head")?;
        self.check_file(&head, &join(prefix, "head"))?;
        let threshold = self
            .number(map, prefix, "threshold")?
            .map_or_else(|| self.fail(&join(prefix, "threshold"), "missing"), Ok)?;
        let macs = self.count(map, prefix, "macs")?;
        let key = join(prefix, "gate");
        let gate = match map.get("gate") {
            None | Some(Value::Null) => None,
            Some(_) if self.unknown_before(format, Format::V2, &key, "gates") => None,
            Some(v) => Some(self.exit_gate(v, &key)?),
        };
        Ok(Exit {
            head,
            threshold,
            macs,
            gate,
        })
    }

    /// Checks that `relative`, named for `key`, is a regular file inside the bundle's folder.
    fn check_file(&self, relative: &str, key: &str) -> Result<(), BundleError> {
        files::regular(&files::inside(&self.file, relative, key)?, key).map(|_| ())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// YAML numbers only (both `0.00001` and `1e-5`); a quoted number is a string, and refused.
fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Whether `v` is text that reads as a number beyond a 64-bit float's range, such as `1e309`.
fn beyond_f64(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.trim().parse::<f64>().is_ok_and(|x| x.is_infinite())
        && !s.trim().to_ascii_lowercase().contains("inf"))
}

fn not_one_of<T: Word>(word: &str) -> String {
    let words: Vec<&str> = T::ALL.iter().map(|v| v.word()).collect();
    format!("'{word}' is not one of {}", words.join(", "))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        other => kind(other).to_owned(),
    }
}

/// One class name per line; a final newline does not make an extra class.
fn parse_labels(text: &str) -> Vec<String> {
    text.trim_start_matches('\u{feff}')
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect()
}

/// Reads a labels file (one class name per line), as bundles and the search's `--labels` use.
pub fn read_labels(path: &Path) -> std::io::Result<Vec<String>> {
    std::fs::read_to_string(path).map(|t| parse_labels(&t))
}
