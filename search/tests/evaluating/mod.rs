//! `evaluate` run from the tests, as a user runs it.

use std::path::Path;
use std::process::Command;

/// Runs `evaluate --model MODEL --footage F… --per-frame CSV --json EXTRA…` and returns the
/// per-frame file's text and the JSON. Panics with evaluate's standard error when it fails.
pub fn evaluate(
    model: &Path,
    footage: &[&Path],
    extra: &[&str],
    csv: &Path,
) -> (String, serde_json::Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_earlyexit-search"));
    command.args(["evaluate", "--model"]).arg(model);
    for f in footage {
        command.arg("--footage").arg(f);
    }
    let out = command
        .arg("--per-frame")
        .arg(csv)
        .arg("--json")
        .args(extra)
        .output()
        .expect("earlyexit-search runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(csv).unwrap(),
        serde_json::from_slice(&out.stdout).expect("--json prints JSON"),
    )
}
