//! `evaluate`: runs a bundle over footage exactly as the element does, next to the full backbone,
//! and reports accuracy, agreement, exits, cost and time per frame; optionally next to another
//! bundle too, compared frame by frame.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use earlyexit::{Classifier, Decision, Mode, SessionOptions, bundle};
use serde_json::json;

use crate::cli::EvaluateArgs;
use crate::footage::{DecodedFrame, Decoder, Footage, Sampling};
use crate::paired::Paired;
use crate::progress;
use crate::refit;

/// Decoded frames are held in memory in chunks of at most this many bytes, so that decoding
/// never competes with the timed runs for the CPU.
const CHUNK_BYTES: usize = 256 << 20;

/// Counts for one footage or for all of them.
#[derive(Default, Clone)]
struct Tally {
    frames: u64,
    labeled: u64,
    correct: u64,
    agree: u64,
    exits: Vec<u64>,
    cost_sum: f64,
    cost_known: bool,
    /// Per timing run: nanoseconds summed over frames.
    bundle_ns: Vec<u64>,
    full_ns: Vec<u64>,
}

impl Tally {
    fn new(stages: usize, runs: usize, cost_known: bool) -> Tally {
        Tally {
            exits: vec![0; stages],
            cost_known,
            bundle_ns: vec![0; runs],
            full_ns: vec![0; runs],
            ..Tally::default()
        }
    }

    fn add(&mut self, other: &Tally) {
        self.frames += other.frames;
        self.labeled += other.labeled;
        self.correct += other.correct;
        self.agree += other.agree;
        self.cost_sum += other.cost_sum;
        for (a, b) in self.exits.iter_mut().zip(&other.exits) {
            *a += b;
        }
        for (a, b) in self.bundle_ns.iter_mut().zip(&other.bundle_ns) {
            *a += b;
        }
        for (a, b) in self.full_ns.iter_mut().zip(&other.full_ns) {
            *a += b;
        }
    }

    /// Counts one frame the bundle decided as `ours` and the full backbone as `full`; returns
    /// whether `ours` is right, when the frame has a label.
    fn count(&mut self, ours: &Decision, full: &Decision, label: Option<u32>) -> Option<bool> {
        self.frames += 1;
        self.exits[ours.stage] += 1;
        self.cost_sum += ours.cost.unwrap_or(0.0);
        self.agree += u64::from(ours.class_id == full.class_id);
        let right = label.map(|label| ours.class_id as u32 == label);
        if let Some(right) = right {
            self.labeled += 1;
            self.correct += u64::from(right);
        }
        right
    }

    fn ratio(n: u64, d: u64) -> Option<f64> {
        (d > 0).then(|| n as f64 / d as f64)
    }

    /// Median over runs of the mean milliseconds per frame.
    fn ms_per_frame(&self, ns: &[u64]) -> Option<f64> {
        let mut per_run: Vec<f64> = ns
            .iter()
            .filter_map(|&n| Tally::ratio(n, self.frames))
            .map(|n| n / 1e6)
            .collect();
        per_run.sort_by(f64::total_cmp);
        per_run.get(per_run.len() / 2).copied()
    }

    fn accuracy(&self) -> Option<f64> {
        Tally::ratio(self.correct, self.labeled)
    }

    fn agreement(&self) -> Option<f64> {
        Tally::ratio(self.agree, self.frames)
    }

    fn mean_cost(&self) -> Option<f64> {
        self.cost_known
            .then(|| self.cost_sum / self.frames.max(1) as f64)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "frames": self.frames,
            "accuracy": self.accuracy(),
            "agreement": self.agreement(),
            "exits": self.exits,
            "mean_cost": self.mean_cost(),
            "ms_per_frame": self.ms_per_frame(&self.bundle_ns),
            "ms_per_frame_full": self.ms_per_frame(&self.full_ns),
        })
    }
}

/// The `--compare` bundle, run on the same frames.
struct Compared<'a> {
    path: &'a Path,
    bundle: bundle::Bundle,
    classifier: Classifier,
    cost_known: bool,
}

impl Compared<'_> {
    fn open(path: &Path, options: SessionOptions) -> Result<Compared<'_>> {
        let (bundle, warnings) = bundle::read(path)?;
        for w in warnings {
            eprintln!("warning: --compare {}: {w}", path.display());
        }
        let classifier = Classifier::open(&bundle, Mode::EarlyExit, options)
            .with_context(|| format!("--compare {}", path.display()))?;
        Ok(Compared {
            path,
            cost_known: earlyexit::cost::CostTable::from_bundle(&bundle).is_some(),
            classifier,
            bundle,
        })
    }

    /// Counts before the first frame.
    fn start(&self) -> Comparison {
        Comparison {
            tally: Tally::new(self.classifier.stages(), 0, self.cost_known),
            paired: Paired::default(),
        }
    }
}

/// The `--compare` bundle's counts, and how it and the evaluated bundle differ on the same
/// labeled frames.
struct Comparison {
    tally: Tally,
    paired: Paired,
}

impl Comparison {
    fn add(&mut self, other: &Comparison) {
        self.tally.add(&other.tally);
        self.paired.merge(other.paired);
    }

    /// The evaluated bundle's accuracy minus this one's, on labeled frames.
    fn difference(&self) -> Option<f64> {
        self.paired.difference(self.tally.labeled)
    }

    /// McNemar's p for that difference, on labeled frames.
    fn p_value(&self) -> Option<f64> {
        (self.tally.labeled > 0).then(|| self.paired.p_value())
    }

    /// Its figures (untimed) and the paired test.
    fn json(&self, model: &Path) -> serde_json::Value {
        let mut o = self.tally.json();
        if let Some(o) = o.as_object_mut() {
            o.remove("ms_per_frame");
            o.remove("ms_per_frame_full");
        }
        o["model"] = json!(model.display().to_string());
        o["only_model_right"] = json!(self.paired.only_a);
        o["only_compare_right"] = json!(self.paired.only_b);
        o["accuracy_difference"] = json!(self.difference());
        o["p_value"] = json!(self.p_value());
        o
    }
}

pub fn run(args: &EvaluateArgs, footage: &[Footage]) -> Result<()> {
    let (bundle, warnings) = bundle::read(&args.model)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let options = SessionOptions {
        threads: args.threads,
    };
    let mut classifier = Classifier::open(&bundle, Mode::EarlyExit, options)?;
    let mut full = match &args.backbone {
        Some(path) => Classifier::backbone(path, bundle.input.clone(), bundle.output, options)?,
        None => Classifier::open(&bundle, Mode::Full, options)?,
    };
    if let Some(path) = &args.backbone {
        same_classes(&classifier, &full, "--backbone", path)?;
    }
    for f in footage {
        f.check_classes(classifier.classes())?;
    }
    let mut compared = match &args.compare {
        Some(path) => {
            let compared = Compared::open(path, options)?;
            same_classes(&classifier, &compared.classifier, "--compare", path)?;
            Some(compared)
        }
        None => None,
    };
    let mut refit = if args.refit {
        let compare = compared
            .as_ref()
            .map(|c| refit::Answers::new(&c.bundle, "--compare"))
            .transpose()?;
        Some(refit::Refit::new(
            refit::Answers::new(&bundle, "--model")?,
            compare,
        ))
    } else {
        None
    };
    let mut per_frame = match &args.per_frame {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("--per-frame {}", path.display()))?,
            );
            writeln!(file, "footage,frame,stage,class_id,score")?;
            Some((path, file))
        }
        None => None,
    };
    let runs = args.runs as usize;
    let cost_known = earlyexit::cost::CostTable::from_bundle(&bundle).is_some();
    let mut total = Tally::new(classifier.stages(), runs, cost_known);
    let mut total_compared = compared.as_ref().map(Compared::start);
    let mut reports = Vec::new();
    for f in footage {
        let mut tally = Tally::new(classifier.stages(), runs, cost_known);
        let mut comparison = compared.as_ref().map(Compared::start);
        let bar = progress::bar(
            &f.short_name(),
            crate::footage::estimate_frames(f)?.map(|n| n as u64),
        );
        // Each footage is a stream of its own: a format-2 gate must not read the previous
        // footage's last answer.
        classifier.reset_stream();
        full.reset_stream();
        if let Some(other) = &mut compared {
            other.classifier.reset_stream();
        }
        let decoder = Decoder::start(f, Sampling::All)?;
        let mut chunk: Vec<DecodedFrame> = Vec::new();
        let mut frames = decoder.frames.iter().peekable();
        while frames.peek().is_some() {
            chunk.clear();
            let mut bytes = 0;
            while bytes < CHUNK_BYTES {
                let Some(frame) = frames.next() else { break };
                bytes += frame.bytes();
                chunk.push(frame);
            }
            let decisions = time_chunk(&mut classifier, &mut full, &chunk, &mut tally)?;
            for (frame, (ours, theirs)) in chunk.iter().zip(decisions) {
                let label = f.label(frame.index);
                let ours_right = tally.count(&ours, &theirs, label);
                if let (Some(other), Some(c)) = (&mut compared, &mut comparison) {
                    let d = other.classifier.classify(&frame.frame()).with_context(|| {
                        format!("--compare {}: frame {}", other.path.display(), frame.index)
                    })?;
                    if let (Some(a), Some(b)) = (ours_right, c.tally.count(&d, &theirs, label)) {
                        c.paired.add(a, b);
                    }
                }
                if let Some(refit) = &mut refit {
                    refit
                        .record(
                            &mut classifier,
                            compared.as_mut().map(|c| &mut c.classifier),
                            &frame.frame(),
                            label,
                            theirs.class_id,
                        )
                        .with_context(|| format!("--refit: frame {}", frame.index))?;
                }
                if let Some((path, file)) = &mut per_frame {
                    writeln!(
                        file,
                        "{},{},{},{},{}",
                        csv_field(&f.name),
                        frame.index,
                        ours.stage,
                        ours.class_id,
                        ours.score
                    )
                    .with_context(|| format!("--per-frame {}", path.display()))?;
                }
            }
            bar.inc(chunk.len() as u64);
        }
        drop(frames);
        decoder.finish()?;
        bar.finish_and_clear();
        if let Some(warning) = f.ground_truth_mismatch(tally.frames as usize) {
            eprintln!("warning: {warning}");
        }
        total.add(&tally);
        if let (Some(t), Some(c)) = (&mut total_compared, &comparison) {
            t.add(c);
        }
        reports.push((f, tally, comparison));
    }
    if let Some((path, mut file)) = per_frame {
        file.flush()
            .with_context(|| format!("--per-frame {}", path.display()))?;
    }
    let compare_path = compared.as_ref().map(|c| c.path);
    let refitted = refit.map(|r| r.table());
    if args.json {
        let with_comparison = |t: &Tally, c: &Option<Comparison>| {
            let mut o = t.json();
            if let (Some(c), Some(path)) = (c, compare_path) {
                o["compare"] = c.json(path);
            }
            o
        };
        let mut top = with_comparison(&total, &total_compared);
        top["footage"] = reports
            .iter()
            .map(|(f, t, c)| {
                let mut o = with_comparison(t, c);
                o["path"] = json!(f.name);
                o
            })
            .collect();
        if let Some(t) = &refitted {
            top["refit"] = t.json();
        }
        println!("{}", serde_json::to_string_pretty(&top)?);
    } else {
        print_table(&reports, &total, &total_compared, compare_path);
        if let Some(t) = &refitted {
            t.print(compare_path.is_some());
        }
    }
    Ok(())
}

/// Class ids mean the same only between models with the same classes.
fn same_classes(ours: &Classifier, theirs: &Classifier, flag: &str, path: &Path) -> Result<()> {
    if ours.classes() != theirs.classes() {
        bail!(
            "{flag} {}: it predicts {} classes, the bundle {}",
            path.display(),
            theirs.classes(),
            ours.classes()
        );
    }
    Ok(())
}

/// Runs the chunk through the bundle and the full backbone `runs` times, alternating, adding the
/// time of each run to the tally. Returns the decisions of the first run. Every run continues
/// the stream from where the previous chunk left it, so that repeats decide the same frames
/// alike and the next chunk follows on from the first run.
fn time_chunk(
    classifier: &mut Classifier,
    full: &mut Classifier,
    chunk: &[DecodedFrame],
    tally: &mut Tally,
) -> Result<Vec<(Decision, Decision)>> {
    let mut decisions = Vec::with_capacity(chunk.len());
    let start = (classifier.stream(), full.stream());
    let mut end = start;
    for run in 0..tally.bundle_ns.len() {
        classifier.set_stream(start.0);
        full.set_stream(start.1);
        let ours = classify_all(classifier, chunk, &mut tally.bundle_ns[run])?;
        let theirs = classify_all(full, chunk, &mut tally.full_ns[run])?;
        if run == 0 {
            decisions = ours.into_iter().zip(theirs).collect();
            end = (classifier.stream(), full.stream());
        }
    }
    classifier.set_stream(end.0);
    full.set_stream(end.1);
    Ok(decisions)
}

fn classify_all(
    classifier: &mut Classifier,
    chunk: &[DecodedFrame],
    ns: &mut u64,
) -> Result<Vec<Decision>> {
    chunk
        .iter()
        .map(|frame| {
            let d = classifier
                .classify(&frame.frame())
                .with_context(|| format!("frame {}", frame.index))?;
            *ns += d.inference_ns;
            Ok(d)
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn print_table(
    reports: &[(&Footage, Tally, Option<Comparison>)],
    total: &Tally,
    total_compared: &Option<Comparison>,
    compare_path: Option<&Path>,
) {
    let pct = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{:.2}%", v * 100.0));
    let num = |x: Option<f64>, digits: usize| {
        x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  exits per stage",
        "footage", "frames", "accuracy", "agreement", "cost", "ms/frame", "ms full"
    );
    let rows = reports
        .iter()
        .map(|(f, t, c)| (f.short_name(), t, c))
        .chain(std::iter::once(("total".to_owned(), total, total_compared)));
    for (name, t, _) in rows.clone() {
        println!(
            "{:<28} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  {:?}",
            name,
            t.frames,
            pct(t.accuracy()),
            pct(t.agreement()),
            num(t.mean_cost(), 3),
            num(t.ms_per_frame(&t.bundle_ns), 3),
            num(t.ms_per_frame(&t.full_ns), 3),
            t.exits
        );
    }
    let Some(path) = compare_path else { return };
    println!(
        "\ncompared with {} on the same frames (untimed); difference = accuracy of --model minus this one's, p from McNemar's exact test",
        path.display()
    );
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}  exits per stage",
        "footage",
        "frames",
        "accuracy",
        "agreement",
        "cost",
        "only model",
        "only this",
        "difference",
        "p"
    );
    for (name, _, c) in rows {
        let Some(c) = c else { continue };
        println!(
            "{:<28} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}  {:?}",
            name,
            c.tally.frames,
            pct(c.tally.accuracy()),
            pct(c.tally.agreement()),
            num(c.tally.mean_cost(), 3),
            c.paired.only_a,
            c.paired.only_b,
            c.difference()
                .map_or_else(|| "-".to_owned(), |d| format!("{:+.2} pp", 100.0 * d)),
            num(c.p_value(), 3),
            c.tally.exits
        );
    }
}
