//! Writing bundles: `exits.yaml` text, and a whole bundle folder that appears only once complete.

use std::path::Path;

use super::types::{Bundle, EXITS_FILE};
use super::words::Word;

/// Appends one formatted line.
macro_rules! put {
    ($y:ident, $($arg:tt)*) => {{
        $y.push_str(&format!($($arg)*));
        $y.push('\n');
    }};
}

/// The `exits.yaml` text for `bundle`. Numbers are plain decimals, as the format asks.
pub fn to_yaml(bundle: &Bundle) -> String {
    let mut y = String::new();
    put!(y, "format: {}", bundle.format.word());
    if let Some(name) = &bundle.name {
        put!(y, "name: {}", quoted(name));
    }
    let input = &bundle.input;
    put!(y, "input:");
    put!(y, "  layout: {}", input.layout.word());
    put!(y, "  width: {}", input.width);
    put!(y, "  height: {}", input.height);
    put!(y, "  color: {}", input.color.word());
    put!(y, "  mean: {}", list(&input.mean));
    put!(y, "  std: {}", list(&input.std));
    if let Some(labels) = &bundle.labels {
        put!(y, "labels: {}", quoted(&labels.file));
    }
    put!(y, "metric: {}", bundle.metric.word());
    if let Some(gate) = &bundle.gate {
        let inputs: Vec<&str> = gate.inputs.iter().map(|i| i.word()).collect();
        put!(y, "gate:");
        put!(y, "  inputs: [{}]", inputs.join(", "));
    }
    if let Some(p) = &bundle.promise {
        put!(y, "promise:");
        put!(y, "  measure: {}", p.measure.word());
        put!(y, "  target: {}", p.target);
        put!(y, "  confidence: {}", p.confidence);
        put!(y, "  frames: {}", p.frames);
    }
    if let Some(r) = &bundle.reuse {
        put!(y, "reuse:");
        put!(y, "  detector: {}", r.detector.word());
        put!(y, "  grid: {}", r.grid);
        put!(y, "  threshold: {}", r.threshold);
        put!(y, "  max-age: {}", r.max_age);
    }
    put!(y, "stages:");
    let last = bundle.stages.len().saturating_sub(1);
    for (i, stage) in bundle.stages.iter().enumerate() {
        put!(y, "  - segment: {}", quoted(&stage.segment));
        if let Some(macs) = stage.macs {
            put!(y, "    macs: {macs}");
        }
        if let Some(exit) = &stage.exit {
            put!(y, "    exit:");
            put!(y, "      head: {}", quoted(&exit.head));
            put!(y, "      threshold: {}", exit.threshold);
            if let Some(macs) = exit.macs {
                put!(y, "      macs: {macs}");
            }
            if let Some(gate) = &exit.gate {
                put!(y, "      gate:");
                put!(y, "        weights: {}", list(&gate.weights));
                put!(y, "        bias: {}", gate.bias);
            }
        }
        if i == last {
            put!(y, "    output: {}", bundle.output.word());
        }
    }
    y
}

/// Rust's `Display` for floats never uses exponents, which is what the format asks for.
fn list<T: std::fmt::Display>(values: &[T]) -> String {
    let items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A YAML string scalar, quoted when plain style would change its meaning.
fn quoted(s: &str) -> String {
    serde_yaml::to_string(s)
        .map(|t| t.trim_end().to_owned())
        .unwrap_or_else(|_| format!("{s:?}"))
}

/// A file of a bundle folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the bundle folder; it may hold folders (a bundle may carry others, such as
    /// baselines).
    pub name: String,
    pub bytes: Vec<u8>,
}

impl File {
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> File {
        File {
            name: name.into(),
            bytes,
        }
    }
}

/// The files a bundle's description makes: `exits.yaml`, and the labels file when it has
/// labels. The models it names are the writer's to add.
pub fn own_files(bundle: &Bundle) -> Vec<File> {
    let mut files = vec![File::new(EXITS_FILE, to_yaml(bundle).into_bytes())];
    if let Some(labels) = &bundle.labels {
        let mut text = labels.names.join("\n");
        text.push('\n');
        files.push(File::new(labels.file.clone(), text.into_bytes()));
    }
    files
}

/// Whether a bundle may be written at `dir`: it does not exist yet, or it is a folder that is
/// empty or holds a bundle (an `exits.yaml`), which is then replaced. Any other folder, or one
/// that holds the current directory, is refused, so that a mistyped `--out` deletes nothing.
pub fn check_replaceable(dir: &Path) -> std::io::Result<()> {
    let refuse = |why: &str| Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, why));
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return refuse("a file is in the way; a bundle is a folder");
    }
    let cwd = std::env::current_dir()?;
    if cwd.starts_with(dir.canonicalize()?) {
        return refuse("it holds the current directory, so it is not replaced");
    }
    let empty = std::fs::read_dir(dir)?.next().is_none();
    if !empty && !dir.join(EXITS_FILE).is_file() {
        return refuse("the folder holds files but no exits.yaml; only a bundle is replaced");
    }
    Ok(())
}

/// Writes a bundle folder at `dir`: `exits.yaml`, the labels file when the bundle has labels, and
/// `files`. Everything goes to a temporary sibling folder first, which is
/// renamed into place, so an interrupted writer never leaves half a bundle behind. `dir` must
/// pass [`check_replaceable`].
pub fn write_atomically(dir: &Path, bundle: &Bundle, files: &[File]) -> std::io::Result<()> {
    check_replaceable(dir)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".earlyexit-bundle-")
        .tempdir_in(&parent)?;
    for file in files {
        let path = staging.path().join(&file.name);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(path, &file.bytes)?;
    }
    for file in own_files(bundle) {
        std::fs::write(staging.path().join(&file.name), &file.bytes)?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir)
}
