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

/// The hidden file in a bundle folder the writer made that lists every file it put there, so
/// that writing again replaces exactly those, and nothing a user added beside them.
pub const MANIFEST: &str = ".earlyexit-files";

/// The start of the name of the hidden folder a bundle is written in before it moves into
/// place; then the writer's process id and a random part.
const STAGING: &str = ".earlyexit-bundle-";

/// Whether a bundle may be written at `dir`: it does not exist yet, or it is a folder that is
/// empty or holds a bundle (an `exits.yaml`), and the process may write there. Any other
/// folder, or one that holds the current directory, is refused, so that a mistyped `--out`
/// touches nothing; call it before long work, so that an unwritable one fails first.
pub fn check_replaceable(dir: &Path) -> std::io::Result<()> {
    let refuse = |why: &str| Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, why));
    if dir.exists() {
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
    }
    // The nearest folder that exists is where the first file or folder will be made.
    let existing = dir
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("."));
    tempfile::tempfile_in(existing).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot write in {}: {e}", existing.display()),
        )
    })?;
    Ok(())
}

/// Writes a bundle folder at `dir`: `exits.yaml`, the labels file when the bundle has labels,
/// and `files`. Everything is written to a hidden sibling folder first. A new or empty `dir` is
/// that folder renamed into place, so an interrupted writer never leaves half a bundle. An
/// existing bundle keeps every file the writer did not make: the files its manifest lists (or,
/// without one, its `exits.yaml` names) are removed, `exits.yaml` first, so that no reader runs
/// a mix of the two, and the new ones moved in, `exits.yaml` last. `dir` must pass
/// [`check_replaceable`]. Staging folders that an interrupted writer left are removed.
pub fn write_atomically(dir: &Path, bundle: &Bundle, files: &[File]) -> std::io::Result<()> {
    check_replaceable(dir)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    remove_abandoned_staging(&parent);
    let staging = tempfile::Builder::new()
        .prefix(&format!("{STAGING}{}-", std::process::id()))
        .tempdir_in(&parent)?;
    let mut names: Vec<String> = Vec::new();
    for file in files.iter().cloned().chain(own_files(bundle)) {
        let path = staging.path().join(&file.name);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(path, &file.bytes)?;
        names.push(file.name);
    }
    // exits.yaml last: it is what makes the folder a bundle.
    names.sort_by_key(|n| n == EXITS_FILE);
    names.dedup();
    let manifest = names.join("\n") + "\n";
    std::fs::write(staging.path().join(MANIFEST), manifest)?;
    let empty = !dir.exists() || std::fs::read_dir(dir)?.next().is_none();
    if empty {
        // Renaming onto an empty folder replaces it.
        let staged = staging.keep();
        return std::fs::rename(&staged, dir);
    }
    for old in previous_files(dir) {
        if !names.contains(&old) {
            remove_file_and_empty_folders(dir, &old);
        }
    }
    match std::fs::remove_file(dir.join(EXITS_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for name in names.iter().map(String::as_str).chain([MANIFEST]) {
        let to = dir.join(name);
        if let Some(folder) = to.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::rename(staging.path().join(name), to)?;
    }
    Ok(())
}

/// The files of the bundle at `dir` that its writer made: its manifest's list, or, for a
/// bundle written without one, `exits.yaml` and the files it names. Only paths inside `dir`.
fn previous_files(dir: &Path) -> Vec<String> {
    let listed = std::fs::read_to_string(dir.join(MANIFEST))
        .map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .or_else(|_| {
            super::read(dir).map(|(b, _)| {
                let mut names = vec![EXITS_FILE.to_owned()];
                names.extend(b.labels.map(|l| l.file));
                for stage in b.stages {
                    names.push(stage.segment);
                    names.extend(stage.exit.map(|e| e.head));
                }
                names
            })
        })
        .unwrap_or_default();
    listed
        .into_iter()
        .filter(|name| super::files::stays_inside(name))
        .collect()
}

/// Removes `dir/name`, then each folder above it inside `dir` that is left empty.
fn remove_file_and_empty_folders(dir: &Path, name: &str) {
    let path = dir.join(name);
    if std::fs::remove_file(&path).is_err() {
        return;
    }
    for folder in path.ancestors().skip(1) {
        if folder == dir || std::fs::remove_dir(folder).is_err() {
            break;
        }
    }
}

/// Removes staging folders in `parent` that a writer left when it was interrupted: those of a
/// process that no longer runs, and, for names without a process id, those an hour old.
fn remove_abandoned_staging(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING)) else {
            continue;
        };
        let abandoned = match rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        {
            Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600),
        };
        if abandoned {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
