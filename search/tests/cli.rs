//! The search's command line end to end, on the test assets: `inspect`, errors that name the
//! file, and search → bundle → `evaluate` and the element deciding the same for every frame.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use earlyexit_testkit::{files_under, footage, model};

fn search(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .args(args)
        .output()
        .expect("earlyexit-search runs")
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_lists_every_cut_point() {
    for (name, cuts) in [
        ("fmnist_resnet20w32.onnx", 22),
        ("efficientnet_lite0_imagenet.onnx", 48),
    ] {
        let out = search(&["inspect", "--backbone", &text(&model(name))]);
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("{cuts} cut points")),
            "{name}: {stdout}"
        );
    }
}

#[test]
fn errors_name_the_file_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_model = dir.path().join("not-a-model.onnx");
    std::fs::write(&not_a_model, "hello").unwrap();
    let three_labels = dir.path().join("three.txt");
    std::fs::write(&three_labels, "a\nb\nc\n").unwrap();
    let fmnist = text(&model("fmnist_resnet20w32.onnx"));
    let clip = text(&footage("fmnist-test-a-5k.mkv"));
    let out_dir = text(&dir.path().join("out"));
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--backbone".into(),
                text(&not_a_model),
                "--footage".into(),
                clip.clone(),
            ],
            text(&not_a_model),
        ),
        (
            vec![
                "--backbone".into(),
                fmnist.clone(),
                "--footage".into(),
                "/no/such/clip.mkv".into(),
            ],
            "/no/such/clip.mkv".into(),
        ),
        (
            vec![
                "--backbone".into(),
                fmnist.clone(),
                "--footage".into(),
                clip.clone(),
                "--labels".into(),
                text(&three_labels),
            ],
            text(&three_labels),
        ),
        (
            vec![
                "--backbone".into(),
                fmnist.clone(),
                "--footage".into(),
                clip.clone(),
                "--ground-truth".into(),
                text(&three_labels),
            ],
            text(&three_labels),
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["search".to_owned()];
        all.extend(args);
        all.extend(["--out".to_owned(), out_dir.clone()]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = search(&refs);
        assert!(!out.status.success(), "{all:?} should fail");
        assert!(
            stderr(&out).contains(&needle),
            "{all:?}: '{}' lacks {needle}",
            stderr(&out)
        );
        assert!(
            !Path::new(&out_dir).exists(),
            "a failed search must not leave a bundle"
        );
    }
}

/// A destination that cannot be written fails at once, before any footage is read, and a
/// truncated footage is named in a warning.
#[test]
fn an_unwritable_out_fails_first_and_a_truncated_footage_is_named() {
    let fmnist = text(&model("fmnist_resnet20w32.onnx"));
    let clip = text(&footage("fmnist-test-a-5k.mkv"));
    let start = std::time::Instant::now();
    let out = search(&[
        "search",
        "--backbone",
        &fmnist,
        "--footage",
        &clip,
        "--out",
        "/proc/earlyexit/bundle",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--out /proc/earlyexit/bundle"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("cannot write in /proc"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("features"),
        "footage was read: {}",
        stderr(&out)
    );
    assert!(start.elapsed().as_secs() < 10);

    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(footage("fmnist-belt-test-a.mkv")).unwrap();
    let half = dir.path().join("half.mkv");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    let out = search(&[
        "search",
        "--backbone",
        &fmnist,
        "--footage",
        &text(&half),
        "--max-frames",
        "400",
        "--strategy",
        "even",
        "--out",
        &text(&dir.path().join("b")),
    ]);
    assert!(
        stderr(&out).contains("the file may be truncated or damaged"),
        "{}",
        stderr(&out)
    );
}

/// What `fmnist_end_to_end` measured on test-b.
struct TestB {
    accuracy: f64,
    /// The share of frames leaving early.
    early: f64,
    mean_cost: f64,
    /// The accuracy the bundle promised, if it promised any.
    promise: Option<f64>,
    /// Where the bundle's baselines were written.
    baselines: PathBuf,
    /// What `evaluate --json` printed.
    json: serde_json::Value,
    /// Keeps the bundle and its baselines until the checks are done.
    _dir: tempfile::TempDir,
}

/// The main job end to end: search on the training stream with ground truth and calibrate on
/// test-a, then `evaluate --per-frame` and the element over test-b must decide the same for
/// every frame. With `compare_sdn`, the same `evaluate` run also compares the bundle with its
/// Shallow-Deep Networks baseline and refits both (`--compare`, `--refit`), which change
/// nothing of the bundle's own figures.
fn fmnist_end_to_end(extra: &[&str], compare_sdn: bool) -> TestB {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let report = run_fmnist_search(&bundle, extra);
    assert!(report.contains("Exit bundle report"));
    let sdn = text(&bundle.join("baselines").join("sdn"));
    let timelines = dir.path().join("timelines");
    let timeline_dir = text(&timelines);
    let comparing = ["--compare", sdn.as_str(), "--refit"];
    let mut evaluate_extra: Vec<&str> = if compare_sdn {
        comparing.to_vec()
    } else {
        vec![]
    };
    evaluate_extra.extend(["--timeline", timeline_dir.as_str()]);
    let (per_frame, json) = evaluate(&bundle, "fmnist-test-b-5k", &evaluate_extra);
    the_pictures_show_the_target_and_the_disagreements(&bundle, &timelines, &json);
    let element =
        earlyexit_testkit::gst::element_decisions(&footage("fmnist-test-b-5k.mkv"), &bundle);
    assert_eq!(element.len(), 5000);
    assert_eq!(per_frame.len(), 5000);
    for (i, (ours, theirs)) in per_frame.iter().zip(&element).enumerate() {
        assert_eq!(ours, theirs, "frame {i}: evaluate and the element disagree");
    }
    println!("{json}");
    let exits = earlyexit_testkit::evaluate_exits(&json);
    let (written, _) = earlyexit::bundle::read(&bundle).unwrap();
    TestB {
        accuracy: json["accuracy"].as_f64().unwrap(),
        early: exits[..exits.len() - 1].iter().sum::<u64>() as f64 / 5000.0,
        mean_cost: json["mean_cost"].as_f64().unwrap(),
        promise: written.promise.map(|p| p.target),
        baselines: bundle.join("baselines"),
        json,
        _dir: dir,
    }
}

/// `pareto.svg`, when there is one, names the target; the footage's timeline counts the frames
/// that disagree with the backbone as `evaluate` does.
fn the_pictures_show_the_target_and_the_disagreements(
    bundle: &Path,
    timelines: &Path,
    json: &serde_json::Value,
) {
    // Only the exit search (`--strategy nas`, the default) draws a front.
    if let Ok(pareto) = std::fs::read_to_string(bundle.join("pareto.svg")) {
        assert!(
            pareto.contains("target: accuracy 94.50%"),
            "no target legend"
        );
    }
    let timeline = std::fs::read_to_string(timelines.join("fmnist-test-b-5k.svg"))
        .expect("a timeline for the footage");
    let disagree = (5000.0 * (1.0 - json["agreement"].as_f64().unwrap())).round();
    let title = format!("stage where each frame left (5000 frames, {disagree} disagree");
    assert!(timeline.contains(&title), "no '{title}' in the timeline");
}

/// A reduced-size run of the main job (the exit search), for CI. The full-size figures are
/// benchmarks in the closing notes.
#[test]
fn search_evaluate_and_element_agree_on_every_frame() {
    // MACs, the same on every machine: on 600 certifying frames, measured time (the default)
    // may leave this small backbone no certified step below its cost, and this test is about
    // the tools agreeing on a bundle with exits.
    let b = fmnist_end_to_end(&["--max-frames", "3000", "--cost", "macs"], true);
    // With 750 frames to select on, the target itself is not certain to hold on test-b; the
    // promise, certified on frames nothing was fitted on, must.
    let promise = b.promise.expect("the exit search writes a promise");
    assert!(
        b.accuracy >= promise,
        "accuracy {} < promise {promise}",
        b.accuracy
    );
    assert!(b.early >= 0.3, "only {} left early", b.early);
    assert!(b.mean_cost <= 0.85, "mean cost {}", b.mean_cost);
    compare_reports_the_other_bundle_as_evaluate_does(&b);
}

/// `evaluate --compare` runs the other bundle on the same frames as `evaluate` runs it alone,
/// and its paired counts add up to the difference in accuracy. With `--refit`, both structures'
/// exit rules, simulated from every exit's answers, reproduce what `evaluate` counted.
fn compare_reports_the_other_bundle_as_evaluate_does(b: &TestB) {
    let sdn = b.baselines.join("sdn");
    let (_, alone) = evaluate(&sdn, "fmnist-test-b-5k", &[]);
    let ours = &b.json;
    let compared = &ours["compare"];
    for key in ["accuracy", "agreement", "exits", "mean_cost", "frames"] {
        assert_eq!(compared[key], alone[key], "{key}");
    }
    let only_model = compared["only_model_right"].as_f64().unwrap();
    let only_compare = compared["only_compare_right"].as_f64().unwrap();
    let difference = compared["accuracy_difference"].as_f64().unwrap();
    let accuracy = |j: &serde_json::Value| j["accuracy"].as_f64().unwrap();
    assert!((difference - (accuracy(ours) - accuracy(&alone))).abs() < 1e-9);
    assert!((difference - (only_model - only_compare) / 5000.0).abs() < 1e-9);
    let p = compared["p_value"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0, "p {p}");
    // Both bundles cut the same backbone, so its accuracy is the same beside either (but for a
    // near tie that two cuts round apart).
    let full = |j: &serde_json::Value| j["accuracy_full"].as_f64().unwrap();
    assert!((full(ours) - full(&alone)).abs() <= 2.0 / 5000.0);
    assert!(full(ours) > 0.85 && full(ours) <= 1.0, "{}", full(ours));

    let refit = &ours["refit"];
    assert_eq!(refit["measure"], "accuracy");
    let row = |at: &str| {
        refit["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["at"] == at)
            .unwrap_or_else(|| panic!("no {at} row in {refit}"))
            .clone()
    };
    let cost = |v: &serde_json::Value| v.as_f64().unwrap();
    assert_eq!(row("model")["value"], ours["accuracy"]);
    assert_eq!(row("compare")["value"], compared["accuracy"]);
    // Thresholds fitted on these frames never cost more than the bundle's own at its accuracy.
    assert!(cost(&row("model")["cost"]) <= cost(&ours["mean_cost"]) + 1e-9);
    assert!(cost(&row("compare")["compare_cost"]) <= cost(&compared["mean_cost"]) + 1e-9);
}

/// A reduced run of `full_size_fmnist`, for CI: the evenly spaced strategy end to end on 6,000
/// frames (3,000 to train heads on, 3,000 to calibrate thresholds on), then test-b through
/// `evaluate` and the element, which must decide alike on every frame.
#[test]
fn the_even_strategy_end_to_end() {
    let b = fmnist_end_to_end(&["--strategy", "even", "--max-frames", "6000"], false);
    // Calibrated in-sample to 0.945 on 3,000 frames, the bundle may land below the target on
    // 5,000 new ones by the noise of both samples: two standard errors of the difference are
    // about a point.
    assert!(b.accuracy >= 0.935, "accuracy {}", b.accuracy);
    assert_eq!(
        b.promise, None,
        "the evenly spaced strategy certifies nothing"
    );
    assert!(b.early >= 0.3, "only {} left early", b.early);
    assert!(b.mean_cost <= 0.85, "mean cost {}", b.mean_cost);
}

/// The full-size acceptance run of issue 2, with its evenly spaced exits (a benchmark: about
/// 2 minutes; `scripts/test.sh -- --ignored full_size` runs it).
#[test]
#[ignore = "a benchmark: the full-size run; the_even_strategy_end_to_end is its CI run"]
fn full_size_fmnist() {
    let b = fmnist_end_to_end(&["--strategy", "even"], false);
    assert!(b.accuracy >= 0.945, "accuracy {}", b.accuracy);
    assert!(b.early >= 0.4, "only {} left early", b.early);
    assert!(b.mean_cost <= 0.75, "mean cost {}", b.mean_cost);
}

/// Searches exits for the Fashion-MNIST backbone: heads on the training stream, thresholds on
/// test-a, both with ground truth; target accuracy 0.945 and seed 1 unless `extra` says otherwise.
fn run_fmnist_search(bundle: &Path, extra: &[&str]) -> String {
    let mut args = fmnist_search_args(bundle);
    args.extend(
        [
            "--holdout",
            &text(&footage("fmnist-test-a-5k.mkv")),
            "--ground-truth",
            &text(&footage("fmnist-test-a-5k.labels.csv")),
        ]
        .map(str::to_owned),
    );
    for (flag, default) in [("--target-accuracy", "0.945"), ("--seed", "1")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_owned(), default.to_owned()]);
        }
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    // Measured times are cached per machine; searches beside each other (as the same-seed
    // test's two) share a cache of their own, which no test running alongside rewrites.
    let cache = bundle
        .parent()
        .expect("a bundle folder has a parent")
        .join("cache");
    let out = Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .args(&args)
        .env("EARLYEXIT_CACHE", cache)
        .output()
        .expect("earlyexit-search runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(bundle.join("exits.yaml").is_file());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `search` for the Fashion-MNIST backbone into `bundle`, its heads trained on the training
/// stream with ground truth; the held-out footage is the caller's.
fn fmnist_search_args(bundle: &Path) -> Vec<String> {
    [
        "search",
        "--backbone",
        &text(&model("fmnist_resnet20w32.onnx")),
        "--labels",
        &text(&model("fmnist_classes.txt")),
        "--footage",
        &text(&footage("fmnist-train-10k.mkv")),
        "--ground-truth",
        &text(&footage("fmnist-train-10k.labels.csv")),
        "--out",
        &text(bundle),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `evaluate --per-frame --json` over a labeled stream: per-frame (stage, class id), and totals.
fn evaluate(bundle: &Path, stream: &str, extra: &[&str]) -> (Vec<(u32, i32)>, serde_json::Value) {
    let csv = bundle
        .parent()
        .unwrap()
        .join(format!("{stream}.per-frame.csv"));
    let (model, video, labels, csv_path) = (
        text(bundle),
        text(&footage(&format!("{stream}.mkv"))),
        text(&footage(&format!("{stream}.labels.csv"))),
        text(&csv),
    );
    let mut args = vec![
        "evaluate",
        "--model",
        &model,
        "--footage",
        &video,
        "--ground-truth",
        &labels,
        "--per-frame",
        &csv_path,
        "--json",
    ];
    args.extend(extra);
    let out = search(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let rows = std::fs::read_to_string(&csv).unwrap();
    let mut lines = rows.lines();
    assert_eq!(lines.next(), Some("footage,frame,stage,class_id,score"));
    let per_frame = lines
        .map(|l| {
            let f: Vec<&str> = l.rsplitn(4, ',').collect();
            (f[2].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    (per_frame, json)
}

/// The same inputs and seed give a byte-identical bundle, the Pareto plot included (here with
/// the full exit search, on 1,500 frames).
#[test]
fn the_same_seed_writes_the_same_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        run_fmnist_search(
            out,
            &[
                "--strategy",
                "nas",
                "--budget",
                "600",
                "--target-accuracy",
                "0.94",
                "--max-frames",
                "1500",
                "--seed",
                "5",
            ],
        )
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&a);
    run(&b);
    let names = files_under(&a);
    assert!(names.iter().any(|n| n == Path::new("exits.yaml")));
    assert!(
        names.iter().any(|n| n.starts_with("baselines")),
        "{names:?}"
    );
    let svg = std::fs::read_to_string(a.join("pareto.svg")).expect("pareto.svg beside the report");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(report.contains("![Pareto front](pareto.svg)"));
    for name in &names {
        let (x, y) = (
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
        );
        assert!(
            x == y,
            "{} differs between two runs with the same seed",
            name.display()
        );
    }
}

/// `--cost latency` on a reduced run: the report says what the search was costed by and gives
/// the measured times, while the bundle's `macs` stay MACs.
#[test]
fn latency_cost_is_reported_and_the_bundle_keeps_macs() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let stdout = run_fmnist_search(
        &bundle,
        &[
            "--strategy",
            "nas",
            "--cost",
            "latency",
            "--threads",
            "2",
            "--budget",
            "300",
            "--target-accuracy",
            "0.9",
            "--max-frames",
            "600",
        ],
    );
    let report = std::fs::read_to_string(bundle.join("report.md")).unwrap();
    assert!(stdout.contains("## Measured latency"), "{stdout}");
    assert!(report.contains("measured latency"), "{report}");
    assert!(report.contains("## Measured latency"), "{report}");
    assert!(report.contains("| uncut backbone |"), "{report}");
    assert!(
        report.contains("Expected mean time per held-out frame"),
        "{report}"
    );
    let (b, _) = earlyexit::bundle::read(&bundle.join("exits.yaml")).unwrap();
    let macs: u64 = b.segment_macs().unwrap().iter().sum();
    assert_eq!(macs, earlyexit_testkit::FMNIST_MACS);
}

/// A target the held-out frames cannot certify: an absolute accuracy about the backbone's own
/// on 1,000 held-out frames. The bundle keeps no exits, rather than some the held-out frames did
/// not certify; the warning says so with its numbers (the frames, what the backbone scores, and
/// how many frames the target would need, if any number would), and the bundle promises what the
/// backbone alone keeps: agreement 1.
#[test]
fn a_target_the_frames_cannot_certify_is_said_with_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let mut args = fmnist_search_args(&bundle);
    args.extend(
        [
            "--holdout",
            &text(&footage("fmnist-test-a-5k.mkv")),
            "--ground-truth",
            &text(&footage("fmnist-test-a-5k.labels.csv")),
            "--max-frames",
            "2000",
            "--target-accuracy",
            "0.95",
            "--seed",
            "1",
        ]
        .map(str::to_owned),
    );
    let out = search(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(warning.contains("has no exits"), "{warning}");
    let frames: usize = number_after(&warning, "cannot be certified below full cost on ");
    assert_eq!(frames, 1000, "{warning}");
    let backbone: f64 = number_after(&warning, "The backbone alone scores ");
    if backbone < 95.0 {
        assert!(warning.contains("below the target itself"), "{warning}");
        assert!(warning.contains("would not change that"), "{warning}");
    } else {
        let needed: f64 = number_after(&warning, "; about ");
        assert!(needed > 1000.0, "{warning}");
    }
    let (written, _) = earlyexit::bundle::read(&bundle).unwrap();
    assert_eq!(written.stages.len(), 1, "the backbone alone");
    let promise = written.promise.expect("a promise");
    assert_eq!(
        (promise.measure, promise.target, promise.confidence),
        (earlyexit::bundle::Measure::Agreement, 1.0, 1.0)
    );
    let report = std::fs::read_to_string(bundle.join("report.md")).unwrap();
    assert!(report.contains("(fails: the climb stops)"), "{report}");
    assert!(
        report.contains(&warning[warning.find("cannot be certified").unwrap()..]),
        "{report}"
    );
    // It keeps that promise, and `evaluate` says its two times measure one computation.
    let out = search(&[
        "evaluate",
        "--model",
        &text(&bundle),
        "--footage",
        &text(&footage("fmnist-test-a-5k.mkv")),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is its backbone alone"),
        "{}",
        stderr(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["agreement"], 1.0, "{json}");
}

/// The number that follows `before` in `text`.
fn number_after<T: std::str::FromStr>(text: &str, before: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let start = text
        .find(before)
        .unwrap_or_else(|| panic!("no {before:?} in {text}"))
        + before.len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.trim_end_matches('.').parse().unwrap()
}
