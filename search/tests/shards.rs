//! `extract` and `fit` end to end: the same bundle as `search` whatever the shards (also of a
//! footage whose frames outnumber its rate), a complete shard kept on a rerun, and shards that
//! cannot be searched together refused by name.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use earlyexit_testkit::{footage, model};

fn run(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_earlyexit-search"))
        .args(args)
        .env("EARLYEXIT_CACHE", cache)
        .output()
        .expect("earlyexit-search runs")
}

fn ok(args: &[&str], cache: &Path) -> String {
    let out = run(args, cache);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
}

fn failure(args: &[&str], cache: &Path) -> String {
    let out = run(args, cache);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Extracts Fashion-MNIST test-a (5,000 frames at 30 fps), or the part of it from `start` to
/// `end` seconds, into `out`.
fn extract(out: &Path, range: &[&str], cache: &Path) -> String {
    let (backbone, clip, truth) = (
        text(&model("fmnist_resnet20w32.onnx")),
        text(&footage("fmnist-test-a-5k.mkv")),
        text(&footage("fmnist-test-a-5k.labels.csv")),
    );
    let out = text(out);
    let mut args = vec![
        "extract",
        "--backbone",
        &backbone,
        "--footage",
        &clip,
        "--ground-truth",
        &truth,
        "--out",
        &out,
    ];
    args.extend(range);
    ok(&args, cache)
}

/// The flags `search` and `fit` share here: a short exit search, certified on the footage's
/// last fifth.
const FIT: [&str; 12] = [
    "--max-accuracy-loss",
    "0.01",
    "--seed",
    "3",
    "--budget",
    "300",
    "--candidates",
    "4",
    "--cost",
    "macs",
    "--format",
    "3",
];

fn assert_same_bundle(a: &Path, b: &Path) {
    assert!(a.join("exits.yaml").is_file());
    earlyexit_testkit::assert_same_files(a, b);
}

/// One command, or three shards cut at other times and given out of order, or one shard: the
/// same bundle, byte for byte. Rerunning an extraction that is complete extracts nothing.
#[test]
fn search_and_extract_then_fit_write_the_same_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let backbone = text(&model("fmnist_resnet20w32.onnx"));
    let labels = text(&model("fmnist_classes.txt"));
    let searched = dir.path().join("searched");
    let (clip, truth) = (
        text(&footage("fmnist-test-a-5k.mkv")),
        text(&footage("fmnist-test-a-5k.labels.csv")),
    );
    let mut args = vec![
        "search",
        "--backbone",
        &backbone,
        "--labels",
        &labels,
        "--footage",
        &clip,
        "--ground-truth",
        &truth,
    ];
    args.extend(FIT);
    let searched_text = text(&searched);
    let mut small_search = args.clone();
    args.extend(["--out", &searched_text]);
    ok(&args, &cache);

    let three = dir.path().join("three");
    std::fs::create_dir(&three).unwrap();
    // After a seek to 5 s, this clip's decoder hands out frame 149 under frame 150's time: a
    // shard that starts there must still hold frame 150.
    for range in [
        &["--start", "100"][..],
        &["--end", "0:05"],
        &["--start", "5", "--end", "100"],
    ] {
        extract(&three, range, &cache);
    }
    let again = extract(&three, &["--start", "5", "--end", "100"], &cache);
    assert!(again.contains("is complete: nothing to extract"), "{again}");
    let one = dir.path().join("one.parquet");
    extract(&one, &[], &cache);

    let fit = |shards: &Path, name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let (shards, out_text) = (text(shards), text(&out));
        let mut args = vec![
            "fit",
            "--backbone",
            &backbone,
            "--labels",
            &labels,
            "--shards",
            &shards,
        ];
        args.extend(FIT);
        args.extend(extra);
        args.extend(["--out", &out_text]);
        ok(&args, &cache);
        out
    };
    assert_same_bundle(&searched, &fit(&three, "fit-three", &[]));
    assert_same_bundle(&searched, &fit(&one, "fit-one", &[]));

    // Features of 5,000 frames take about 550 MB: in 200 MB, runs of frames are kept by hash,
    // the same whatever the shards, and the report says which share.
    let small = ["--feature-memory", "200"];
    let (a, b) = (
        fit(&three, "small-three", &small),
        fit(&one, "small-one", &small),
    );
    assert_same_bundle(&a, &b);
    // `search` stores only the runs it may keep, and writes the same bundle.
    let small_searched = text(&dir.path().join("small-searched"));
    small_search.extend(small);
    small_search.extend(["--out", &small_searched]);
    ok(&small_search, &cache);
    assert_same_bundle(&a, Path::new(&small_searched));
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        report.contains("taken in the order of a hash of footage and run")
            && report.contains("of the held-out ones"),
        "{report}"
    );
}

/// A footage whose frames outnumber its rate (90 frames in 3 s, its container saying 25 fps)
/// loses none when cut in time, and its parts fit to the bundle `search` writes. Its ground
/// truth, read by frame number, cannot be placed in a time range, and that is refused.
#[test]
fn a_footage_whose_frames_outnumber_its_rate_gives_the_same_bundle_cut_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let clip = dir.path().join("fast.mkv");
    // Blocks timed at 30 fps in a container whose default duration says 25.
    earlyexit_testkit::gst::run_to_eos(
        &format!(
            "videotestsrc pattern=ball num-buffers=90 ! video/x-raw,framerate=30/1,width=64,height=64 ! jpegenc ! capssetter caps=\"image/jpeg,framerate=25/1\" ! matroskamux ! filesink location={}",
            clip.display()
        ),
        60,
    );
    let (backbone, clip) = (text(&model("fmnist_resnet20w32.onnx")), text(&clip));
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    let parts_text = text(&parts);
    // `extract` of the clip, with `more` flags.
    fn extract<'a>(backbone: &'a str, clip: &'a str, more: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["extract", "--backbone", backbone, "--footage", clip];
        args.extend(more);
        args
    }
    for (range, frames) in [(["--end", "1.5"], 45), (["--start", "1.5"], 45)] {
        let mut more = vec!["--out", &parts_text];
        more.extend(range);
        let said = ok(&extract(&backbone, &clip, &more), &cache);
        assert!(
            said.contains(&format!("written: {frames} frames")),
            "{said}"
        );
    }
    let flags = [
        "--target-agreement",
        "0.9",
        "--seed",
        "3",
        "--budget",
        "100",
        "--cost",
        "macs",
    ];
    let (searched, fitted) = (
        text(&dir.path().join("searched")),
        text(&dir.path().join("fitted")),
    );
    let mut search = vec!["search", "--backbone", &backbone, "--footage", &clip];
    search.extend(flags);
    search.extend(["--out", &searched]);
    ok(&search, &cache);
    let mut fit = vec!["fit", "--backbone", &backbone, "--shards", &parts_text];
    fit.extend(flags);
    fit.extend(["--out", &fitted]);
    ok(&fit, &cache);
    assert_same_bundle(Path::new(&searched), Path::new(&fitted));

    let truth = dir.path().join("truth.csv");
    let rows: String = (0..90).map(|f| format!("{f},{}\n", f % 10)).collect();
    std::fs::write(&truth, format!("frame,label\n{rows}")).unwrap();
    let out = text(&dir.path().join("labelled.parquet"));
    let truth = text(&truth);
    let more = ["--ground-truth", &truth, "--start", "1.5", "--out", &out];
    let e = failure(&extract(&backbone, &clip, &more), &cache);
    assert!(e.contains("do not follow its rate"), "{e}");
}

/// A truncated shard, a Parquet file that is not a shard, shards that overlap or leave a gap,
/// and shards of another backbone are each refused, naming the files.
#[test]
fn shards_that_cannot_be_fitted_together_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let fmnist = text(&model("fmnist_resnet20w32.onnx"));
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    extract(&a, &["--end", "10"], &cache);
    extract(&b, &["--start", "5", "--end", "15"], &cache);
    let fit = |shards: &[&Path]| {
        let out = text(&dir.path().join("bundle"));
        let mut args = vec!["fit".to_owned(), "--backbone".into(), fmnist.clone()];
        for s in shards {
            args.extend(["--shards".into(), text(s)]);
        }
        args.extend([
            "--target-agreement".into(),
            "0.9".into(),
            "--out".into(),
            out,
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        failure(&args, &cache)
    };

    let e = fit(&[&a, &b]);
    assert!(
        e.contains(&text(&a)) && e.contains(&text(&b)) && e.contains("overlapping parts"),
        "{e}"
    );
    let c = dir.path().join("c.parquet");
    extract(&c, &["--start", "12", "--end", "20"], &cache);
    let e = fit(&[&c, &a]);
    assert!(
        e.contains("no shard holds its frames from 10.000 s to 12.000 s") && e.contains(&text(&c)),
        "{e}"
    );

    let truncated = dir.path().join("truncated.parquet");
    let bytes = std::fs::read(&a).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = fit(&[&truncated]);
    assert!(
        e.contains(&text(&truncated)) && e.contains("not a whole Parquet file"),
        "{e}"
    );

    let foreign = dir.path().join("foreign.parquet");
    write_plain_parquet(&foreign);
    let e = fit(&[&foreign]);
    assert!(
        e.contains(&text(&foreign)) && e.contains("not an earlyexit shard"),
        "{e}"
    );

    let other = dir.path().join("other.parquet");
    let (eff, clip) = (
        text(&model("efficientnet_lite0_imagenet.onnx")),
        text(&footage("bikes-head.mkv")),
    );
    let other_text = text(&other);
    ok(
        &[
            "extract",
            "--backbone",
            &eff,
            "--footage",
            &clip,
            "--mean",
            "127",
            "--std",
            "128",
            "--end",
            "0.5",
            "--out",
            &other_text,
        ],
        &cache,
    );
    let e = fit(&[&a, &other]);
    assert!(
        e.contains(&text(&a)) && e.contains(&other_text) && e.contains("backbones differ"),
        "{e}"
    );

    // The shard is fine; the backbone is not the one it was extracted with.
    let out = text(&dir.path().join("bundle"));
    let e = failure(
        &[
            "fit",
            "--backbone",
            &eff,
            "--shards",
            &text(&a),
            "--out",
            &out,
        ],
        &cache,
    );
    assert!(e.contains("not the backbone shard"), "{e}");
}

/// A Parquet file with one column and no shard header.
fn write_plain_parquet(path: &Path) {
    use arrow_array::{Int32Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int32Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}
