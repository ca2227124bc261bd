//! A missing ONNX Runtime library is reported by path and by the variable that names it. The
//! library is loaded once per process, so each case runs in a child process: this test binary
//! itself, re-run with `CHILD_BUNDLE` set, so that only `child_opens_the_bundle` does anything.

use earlyexit_testkit::cut;

use std::path::Path;
use std::process::Command;

const CHILD_BUNDLE: &str = "EARLYEXIT_TEST_CHILD_BUNDLE";
const MARKER: &str = "CHILD-RESULT: ";

/// In a child: opens the bundle named by `CHILD_BUNDLE` and prints the outcome. Otherwise a
/// no-op.
#[test]
fn child_opens_the_bundle() {
    let Some(dir) = std::env::var_os(CHILD_BUNDLE) else {
        return;
    };
    let (b, _) = earlyexit::bundle::read(Path::new(&dir)).expect("the bundle reads");
    match earlyexit::Classifier::open(
        &b,
        earlyexit::Mode::EarlyExit,
        earlyexit::SessionOptions::default(),
    ) {
        Ok(_) => println!("{MARKER}opened"),
        Err(e) => println!("{MARKER}error: {e}"),
    }
}

/// Runs `child_opens_the_bundle` in a child with `env` changes; returns its result line.
fn run_child(bundle: &Path, configure: impl FnOnce(&mut Command)) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_opens_the_bundle",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_BUNDLE, bundle);
    configure(&mut cmd);
    let out = cmd.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        // The harness prints the test's name on the same line, before the marker.
        .find_map(|l| l.split_once(MARKER).map(|(_, result)| result))
        .unwrap_or_else(|| panic!("no result from the child: {stdout}"))
        .to_owned()
}

#[test]
fn a_missing_library_named_by_ort_dylib_path_is_reported() {
    let (_tmp, dir) = cut::valid_dir(cut::THRESHOLDS);
    // The control: the same bundle opens in a child with the usual environment.
    assert_eq!(run_child(&dir, |_| {}), "opened");
    let result = run_child(&dir, |c| {
        c.env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    });
    assert!(result.starts_with("error: "), "{result}");
    assert!(
        result.contains("/nonexistent/libonnxruntime.so"),
        "{result}"
    );
    assert!(result.contains("ORT_DYLIB_PATH"), "{result}");
}

#[test]
fn no_library_anywhere_is_reported_with_the_places_searched() {
    let system = [
        "/usr/local/lib/earlyexit/libonnxruntime.so",
        "/usr/lib/earlyexit/libonnxruntime.so",
        "/usr/local/lib/libonnxruntime.so",
        "/usr/lib/x86_64-linux-gnu/libonnxruntime.so",
        "/usr/lib/libonnxruntime.so",
    ];
    if let Some(found) = system.iter().find(|p| Path::new(p).exists()) {
        println!("skipped: a system-wide ONNX Runtime exists at {found}");
        return;
    }
    let (_tmp, dir) = cut::valid_dir(cut::THRESHOLDS);
    let home = tempfile::tempdir().unwrap();
    let result = run_child(&dir, |c| {
        c.env_remove("ORT_DYLIB_PATH").env("HOME", home.path());
    });
    assert!(result.starts_with("error: "), "{result}");
    let in_home = home.path().join(".local/lib/earlyexit/libonnxruntime.so");
    assert!(result.contains(&in_home.display().to_string()), "{result}");
    for place in system {
        assert!(result.contains(place), "{place} not listed: {result}");
    }
    assert!(result.contains("ORT_DYLIB_PATH"), "{result}");
}
