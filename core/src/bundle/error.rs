//! The error of a bundle that breaks a rule of the format: the file, the key and what is wrong.

use std::path::PathBuf;

/// A bundle that breaks a rule of the format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {key}: {message}", file.display())]
pub struct BundleError {
    /// The file at fault: `exits.yaml`, or a file it names.
    pub file: PathBuf,
    /// The key at fault, as a path such as `stages[1].exit.threshold`.
    pub key: String,
    pub message: String,
}
