//! The bundle reader fuzzed: mutated `exits.yaml` files, and bundles whose ONNX files are
//! mutated, each read (and, for ONNX, loaded and run once) with no panic, within a second, and
//! with the process's memory under 512 MB.
//!
//! CI runs a short pass; `EARLYEXIT_FUZZ=full` runs the benchmark's 100,000 YAML files and
//! 10,000 ONNX files. Cases are drawn from a fixed seed, so a failure comes back on every run.

use std::path::Path;
use std::time::{Duration, Instant};

use earlyexit::bundle::{self, EXITS_FILE};
use earlyexit::{Classifier, Mode, SessionOptions};
use earlyexit_testkit::cut;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const LIMIT: Duration = Duration::from_secs(1);
const MEMORY_LIMIT_KB: u64 = 512 * 1024;

/// How many cases: the benchmark's counts with `EARLYEXIT_FUZZ=full`, a CI pass without.
fn cases(full: u32, ci: u32) -> u32 {
    match std::env::var("EARLYEXIT_FUZZ").as_deref() {
        Ok("full") => full,
        _ => ci,
    }
}

/// A runner with a fixed seed, that does not shrink (a case is reproduced by its seed).
fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// The process's peak resident memory, from the kernel.
fn peak_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Sets the byte at this share of the length.
    Set(f64, u8),
    /// Inserts a token (from [`TOKENS`]) or raw bytes at this share of the length.
    Insert(f64, Vec<u8>),
    /// Deletes this many bytes from this share of the length.
    Delete(f64, usize),
    /// Repeats a slice (share, length) this many times in place: deep or long input.
    Repeat(f64, usize, usize),
    /// Cuts the file at this share of its length.
    Truncate(f64),
}

/// Pieces of YAML and of bundles that make mutations reach deep into the reader.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "  ",
    "\t",
    "#",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "~",
    "null",
    "true",
    "-0",
    "0",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "-.inf",
    "1e-45",
    "18446744073709551615",
    "9223372036854775808",
    "-1",
    "4294967296",
    "65537",
    "0x10",
    "../",
    "../../etc/passwd",
    "/dev/zero",
    "/",
    "stage-1.onnx",
    "exit-0.onnx",
    "labels.txt",
    "format: earlyexit/2\n",
    "format: earlyexit/3\n",
    "reuse:\n  detector: shifted\n",
    "gate:\n  inputs: [max-prob]\n",
    "macs: ",
    "threshold: ",
    "segment: ",
    "head: ",
    "exit:\n",
    "stages:\n",
    "input:\n",
    "promise:\n",
    "metric: entropy\n",
    "\u{feff}",
    "é",
    "\0",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        (at.clone(), any::<u8>()).prop_map(|(a, b)| Mutation::Set(a, b)),
        (at.clone(), prop::sample::select(TOKENS))
            .prop_map(|(a, t)| Mutation::Insert(a, t.as_bytes().to_vec())),
        (at.clone(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
        (at.clone(), 1..64usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (at.clone(), 1..32usize, 1..2000usize).prop_map(|(a, n, k)| Mutation::Repeat(a, n, k)),
        at.prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |share: f64, len: usize| ((share * len as f64) as usize).min(len);
        match m {
            Mutation::Set(a, b) if !bytes.is_empty() => {
                let i = at(*a, bytes.len() - 1);
                bytes[i] = *b;
            }
            Mutation::Set(..) => {}
            Mutation::Insert(a, b) => {
                let i = at(*a, bytes.len());
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(a, n) => {
                let i = at(*a, bytes.len());
                bytes.drain(i..(i + n).min(bytes.len()));
            }
            Mutation::Repeat(a, n, k) => {
                let i = at(*a, bytes.len());
                let piece = bytes[i..(i + n).min(bytes.len())].to_vec();
                let repeated: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * k)
                    .collect();
                bytes.splice(i..i, repeated);
            }
            Mutation::Truncate(a) => bytes.truncate(at(*a, bytes.len())),
        }
    }
    bytes
}

/// Reads (and with `load`, opens, which runs a frame of zeros through every model) the bundle
/// at `dir`: an error is fine, a panic or a slow answer is not.
fn try_bundle(dir: &Path, load: bool) -> Duration {
    let start = Instant::now();
    if let Ok((b, _)) = bundle::read(dir)
        && load
    {
        let _ = Classifier::open(
            &b,
            Mode::EarlyExit,
            SessionOptions {
                threads: 1,
                shared: false,
            },
        );
    }
    start.elapsed()
}

#[test]
fn mutated_exits_yaml_is_refused_or_read_quickly() {
    let (_tmp, dir) = cut::valid_dir([0.5, 0.75]);
    let yaml = dir.join(EXITS_FILE);
    let valid = std::fs::read(&yaml).unwrap();
    let slowest = std::cell::Cell::new(Duration::ZERO);
    runner(cases(100_000, 10_000), 1)
        .run(&prop::collection::vec(mutation(), 1..6), |mutations| {
            std::fs::write(&yaml, mutate(valid.clone(), &mutations)).unwrap();
            let took = try_bundle(&dir, false);
            slowest.set(slowest.get().max(took));
            prop_assert!(took < LIMIT, "{mutations:?} took {took:?}");
            Ok(())
        })
        .unwrap();
    println!(
        "slowest read: {:?}, peak memory {} kB",
        slowest.get(),
        peak_kb()
    );
    assert!(peak_kb() < MEMORY_LIMIT_KB, "peak memory {} kB", peak_kb());
}

#[test]
fn mutated_onnx_files_are_refused_or_run() {
    let (_tmp, dir) = cut::valid_dir([0.5, 0.75]);
    let files = ["stage-0.onnx", "stage-1.onnx", "exit-0.onnx"];
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let slowest = std::cell::Cell::new(Duration::ZERO);
    let strategy = (0..files.len(), prop::collection::vec(mutation(), 1..4));
    runner(cases(10_000, 1_000), 2)
        .run(&strategy, |(which, mutations)| {
            let path = dir.join(files[which]);
            std::fs::write(&path, mutate(originals[which].clone(), &mutations)).unwrap();
            let took = try_bundle(&dir, true);
            std::fs::write(&path, &originals[which]).unwrap();
            slowest.set(slowest.get().max(took));
            prop_assert!(took < LIMIT, "{} {mutations:?} took {took:?}", files[which]);
            Ok(())
        })
        .unwrap();
    println!(
        "slowest load: {:?}, peak memory {} kB",
        slowest.get(),
        peak_kb()
    );
    assert!(peak_kb() < MEMORY_LIMIT_KB, "peak memory {} kB", peak_kb());
}
