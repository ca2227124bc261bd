//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`, so nothing is linked at build time. The first caller of
//! [`environment`] picks the library; every later caller in the process shares it, because ONNX
//! Runtime allows a single environment per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The variable that names the library explicitly, overriding every default location.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// The file name the setup script installs, under [`default_locations`].
const LIBRARY_NAME: &str = "libonnxruntime.so";

/// Why the ONNX Runtime library could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "ONNX Runtime library not found: looked in {searched}. Run scripts/setup.sh, or set {ORT_DYLIB_PATH} to the path of libonnxruntime.so"
    )]
    NotFound { searched: String },
    #[error("ONNX Runtime library {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

/// Where the library is looked for when `ORT_DYLIB_PATH` is not set, in order.
///
/// `scripts/setup.sh` installs it into the first one, the Debian package into
/// `/usr/lib/earlyexit`; the others are where a system-wide install usually puts it.
pub fn default_locations() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/lib/earlyexit"));
    }
    dirs.push(PathBuf::from("/usr/local/lib/earlyexit"));
    // Where the Debian package (scripts/build-deb.sh) installs it.
    dirs.push(PathBuf::from("/usr/lib/earlyexit"));
    dirs.push(PathBuf::from("/usr/local/lib"));
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs.push(PathBuf::from("/usr/lib"));
    dirs.into_iter().map(|d| d.join(LIBRARY_NAME)).collect()
}

/// The library this process would load: `ORT_DYLIB_PATH` when set, else the first default
/// location that exists.
pub fn locate() -> Result<PathBuf, LibraryError> {
    if let Some(explicit) = std::env::var_os(ORT_DYLIB_PATH) {
        let path = PathBuf::from(explicit);
        // A relative name would be resolved against the host program's search path, which is
        // not what the user meant; make it absolute against the working directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        if !path.is_file() {
            return Err(LibraryError::Load {
                path,
                reason: format!("no such file (from {ORT_DYLIB_PATH})"),
            });
        }
        return Ok(path);
    }
    let candidates = default_locations();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| LibraryError::NotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The loaded environment and the library file it came from.
struct Loaded {
    environment: ort::environment::Environment,
    path: PathBuf,
}

static LOADED: OnceLock<Result<Loaded, LibraryError>> = OnceLock::new();

fn loaded() -> Result<&'static Loaded, LibraryError> {
    LOADED.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
///
/// A failure is remembered: the library cannot be swapped once a process has tried one.
pub fn environment() -> Result<&'static ort::environment::Environment, LibraryError> {
    loaded().map(|l| &l.environment)
}

/// The library file that [`environment`] loaded.
pub fn loaded_path() -> Result<&'static Path, LibraryError> {
    loaded().map(|l| l.path.as_path())
}

fn load() -> Result<Loaded, LibraryError> {
    let path = locate()?;
    let fail = |reason: String| LibraryError::Load {
        path: path.clone(),
        reason,
    };
    let environment = ort::init_from(&path)
        .map_err(|e| fail(e.to_string()))?
        .with_name("earlyexit")
        .build()
        .map_err(|e| fail(e.to_string()))?;
    Ok(Loaded { environment, path })
}
