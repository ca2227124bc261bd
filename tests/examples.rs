//! The programs in examples/ are run here, not only compiled: an example that stops working is
//! documentation that lies.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use earlyexit_testkit::built::{example, library};
use earlyexit_testkit::{fmnist_one_stage_bundle, footage};

/// Runs the example `name` with `args`, checks that it succeeded, and returns what it printed.
fn run_example<S: AsRef<OsStr>>(name: &str, args: &[S]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn read_meta_prints_every_frame_and_the_stats() {
    let bundle = fmnist_one_stage_bundle().unwrap();
    let stdout = run_example(
        "read_meta",
        &[bundle.exits_yaml(), footage("bikes-tail.mkv")],
    );
    // 75 frames, each with its meta read back by name through the GStreamer API.
    // Rows are "frame stage class label confidence cost reused", frame and stage numbers.
    let rows = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 6 && w[0].parse::<u32>().is_ok() && w[1].parse::<u32>().is_ok())
        .count();
    assert_eq!(rows, 75, "{stdout}");
    assert!(!stdout.contains("no EarlyExitMeta"), "{stdout}");
    assert!(
        stdout.contains("75 frames; left at each stage: [75]"),
        "{stdout}"
    );
}

/// The Python twin of read_meta, run by Debian's Python with PyGObject, reads the same meta
/// frame for frame and `stats.exits` through `get_value`, with deprecation warnings as errors.
#[test]
fn read_meta_py_reads_what_read_meta_reads() {
    let bundle = fmnist_one_stage_bundle().unwrap();
    let args = [bundle.exits_yaml(), footage("bikes-tail.mkv")];
    let rust = run_example("read_meta", &args);
    let plugins = library("libgstearlyexit.so");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/read_meta.py");
    // Debian's interpreter, which python3-gi and python3-gst-1.0 belong to.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("python3");
    let out = Command::new(python)
        .args(["-W", "error::DeprecationWarning"])
        .arg(&script)
        .args(&args)
        .env("GST_PLUGIN_PATH", plugins.parent().unwrap())
        .output()
        .unwrap();
    let python_out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{python_out}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Frame rows and the stats line, without the timing line, which differs run to run.
    let comparable = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("mean inference"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(comparable(&python_out), comparable(&rust));
    assert!(
        python_out.contains("75 frames; left at each stage: [75]"),
        "{python_out}"
    );
}

#[test]
fn read_meta_reports_a_bad_bundle_with_its_path() {
    let out = Command::new(example("read_meta"))
        .arg("/no/such/bundle")
        .arg(footage("bikes-tail.mkv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/bundle"), "{stderr}");
}

/// The live overload benchmark, cut to one second of a small live source: every frame made
/// comes out, and the report gives each minute's delays.
#[test]
fn live_overload_reports_every_frame_it_made() {
    let bundle = fmnist_one_stage_bundle().unwrap();
    let bundle = bundle.dir.path().as_os_str();
    let stdout = run_example(
        "live_overload",
        &[
            bundle,
            "1".as_ref(),
            "30".as_ref(),
            "64x48".as_ref(),
            "reuse".as_ref(),
        ],
    );
    assert!(
        stdout.contains("overload=reuse: 30 frames made, 30 out (100.0%)"),
        "{stdout}"
    );
    assert!(stdout.contains("minute 1: 30 frames, delay"), "{stdout}");
}
