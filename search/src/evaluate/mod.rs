//! `evaluate`: runs a bundle over footage exactly as the element does, next to the full backbone,
//! and reports accuracy, agreement, exits, cost and time per frame; optionally next to another
//! bundle too, compared frame by frame.

mod render;
mod tally;
mod timeline;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use earlyexit::audit::{AuditEvent, AuditSettings};
use earlyexit::{Classifier, Decision, Mode, SessionOptions, bundle};

use self::tally::{Compared, Comparison, FootageReport, Tally, Totals};
use self::timeline::Timeline;
use crate::cli::EvaluateArgs;
use crate::footage::{DecodedFrame, Decoder, Footage, Sampling};
use crate::progress;
use crate::refit::{Answers, Refit};

/// Decoded frames are held in memory in chunks of at most this many bytes, so that decoding
/// (which runs only a few frames ahead of its reader) hardly competes with the timed runs.
const CHUNK_BYTES: usize = 256 << 20;

/// Frames the bundle and the backbone each run once, untimed, before the first timed one: the
/// first frames of a process pay once for what every later frame finds ready (measured: on
/// EfficientNet-Lite0, the first pass over the first 175 frames took 4 ms per frame more than
/// the second), which would otherwise all fall on whichever goes first.
const WARM_UP_FRAMES: usize = 32;

pub fn run(args: &EvaluateArgs, footage: &[Footage]) -> Result<()> {
    let mut session = Session::open(args, footage)?;
    let mut total = Totals {
        tally: session.tally(),
        comparison: session.comparison(),
    };
    let mut reports = Vec::new();
    for f in footage {
        let report = session.footage(f)?;
        total.tally.add(&report.tally);
        if let (Some(t), Some(c)) = (&mut total.comparison, &report.comparison) {
            t.add(c);
        }
        reports.push(report);
    }
    if let Some(per_frame) = &mut session.per_frame {
        per_frame.flush()?;
    }
    let refitted = session.refit.take().map(|r| r.table());
    let compare_path = session.compared.as_ref().map(|c| c.path);
    render::output(args.json, &reports, &total, compare_path, refitted.as_ref())
}

/// One frame as the bundle and as the full backbone decided it.
struct Decided {
    ours: Decision,
    full: Decision,
}

/// Everything `evaluate` runs frames through, opened once.
struct Session<'a> {
    classifier: Classifier,
    full: Classifier,
    compared: Option<Compared<'a>>,
    refit: Option<Refit>,
    per_frame: Option<PerFrame<'a>>,
    runs: usize,
    turns: Turns,
    cost_known: bool,
    /// `--timeline`: the folder, and the file names given so far.
    timelines: Option<(&'a Path, std::collections::BTreeSet<String>)>,
}

impl<'a> Session<'a> {
    fn open(args: &'a EvaluateArgs, footage: &[Footage]) -> Result<Session<'a>> {
        let (bundle, warnings) = bundle::read(&args.model)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        // Shared, as the element shares them by default: the bundle and the full backbone run
        // each segment file in one session, so where ONNX Runtime happened to place a session's
        // weights cannot decide which is faster (two sessions of one file measured up to 2.6%
        // apart in one process).
        let options = SessionOptions {
            threads: args.threads,
            shared: true,
        };
        let mut classifier = Classifier::open(&bundle, Mode::EarlyExit, options)?;
        classifier.set_audit(AuditSettings {
            rate: args.audit,
            seed: args.audit_seed,
            fallback: !args.audit_no_fallback,
        });
        let full = match &args.backbone {
            Some(path) => Classifier::backbone(path, bundle.input.clone(), bundle.output, options)?,
            None => Classifier::open(&bundle, Mode::Full, options)?,
        };
        if let Some(path) = &args.backbone {
            same_classes(&classifier, &full, "--backbone", path)?;
        } else if bundle.is_backbone_alone() {
            eprintln!(
                "note: {} is its backbone alone (one stage, no exit, no stream rule): its time and \
                 the backbone's measure one computation, and differ only by noise",
                args.model.display()
            );
        }
        for f in footage {
            f.check_classes(classifier.classes())?;
        }
        let compared = match &args.compare {
            Some(path) => {
                let compared = Compared::open(path, options)?;
                same_classes(&classifier, &compared.classifier, "--compare", path)?;
                Some(compared)
            }
            None => None,
        };
        let refit = if args.refit {
            let compare = compared
                .as_ref()
                .map(|c| Answers::new(&c.bundle, "--compare"))
                .transpose()?;
            Some(Refit::new(Answers::new(&bundle, "--model")?, compare))
        } else {
            None
        };
        Ok(Session {
            classifier,
            full,
            compared,
            refit,
            per_frame: args
                .per_frame
                .as_deref()
                .map(|path| PerFrame::create(path, bundle.reuse.is_some()))
                .transpose()?,
            runs: args.runs as usize,
            turns: Turns::default(),
            cost_known: earlyexit::cost::CostTable::from_bundle(&bundle).is_some(),
            timelines: args
                .timeline
                .as_deref()
                .map(|dir| {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("--timeline {}", dir.display()))
                        .map(|()| (dir, Default::default()))
                })
                .transpose()?,
        })
    }

    /// Counts before the first frame.
    fn tally(&self) -> Tally {
        Tally::new(self.classifier.stages(), self.runs, self.cost_known)
    }

    /// The compared bundle's counts before the first frame.
    fn comparison(&self) -> Option<Comparison> {
        self.compared.as_ref().map(Compared::start)
    }

    /// Runs every frame of `f`, a stream of its own.
    fn footage<'f>(&mut self, f: &'f Footage) -> Result<FootageReport<'f>> {
        let mut tally = self.tally();
        let mut comparison = self.comparison();
        let expected = crate::footage::estimate_frames(f)?;
        let bar = progress::bar(&f.short_name(), expected.map(|n| n as u64));
        // Each footage is a stream of its own: a format-2 gate must not read the previous
        // footage's last answer.
        self.classifier.reset_stream();
        self.full.reset_stream();
        if let Some(other) = &mut self.compared {
            other.classifier.reset_stream();
        }
        let decoder = Decoder::start(f, Sampling::All)?;
        let mut timeline = Timeline::new(self.classifier.stages());
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
            let decided =
                self.turns
                    .time_chunk(&mut self.classifier, &mut self.full, &chunk, &mut tally)?;
            for (frame, decided) in chunk.iter().zip(decided) {
                self.count(f, frame, &decided, &mut tally, comparison.as_mut())?;
                timeline.push(timeline::Mark {
                    stage: u16::try_from(decided.ours.stage).unwrap_or(u16::MAX),
                    reused: decided.ours.reused.is_some(),
                    disagrees: decided.ours.class_id != decided.full.class_id,
                });
            }
            bar.inc(chunk.len() as u64);
        }
        drop(frames);
        decoder.finish()?;
        bar.finish_and_clear();
        if let Some(warning) = f.shortfall(tally.frames as usize, expected) {
            eprintln!("warning: {warning}");
        }
        if let Some(warning) = f.ground_truth_mismatch(tally.frames as usize) {
            eprintln!("warning: {warning}");
        }
        self.write_timeline(f, &timeline)?;
        Ok(FootageReport {
            footage: f,
            tally,
            comparison,
        })
    }

    /// With `--timeline`, writes `f`'s timeline as `<footage's file stem>.svg` (then `-2`,
    /// `-3`... for footage of the same name).
    fn write_timeline(&mut self, f: &Footage, timeline: &Timeline) -> Result<()> {
        let Some((dir, taken)) = &mut self.timelines else {
            return Ok(());
        };
        let short = f.short_name();
        let stem = Path::new(&short)
            .file_stem()
            .map_or_else(|| short.clone(), |s| s.to_string_lossy().into_owned());
        let name = (1..)
            .map(|n| match n {
                1 => format!("{stem}.svg"),
                n => format!("{stem}-{n}.svg"),
            })
            .find(|name| !taken.contains(name))
            .unwrap_or_default();
        let path = dir.join(&name);
        std::fs::write(&path, timeline.svg(&short))
            .with_context(|| format!("--timeline: writing {}", path.display()))?;
        eprintln!("timeline of {}: {}", f.name, path.display());
        taken.insert(name);
        Ok(())
    }

    /// Counts one frame of `f`, runs it through the compared bundle and the refit, and writes
    /// its per-frame row.
    fn count(
        &mut self,
        f: &Footage,
        frame: &DecodedFrame,
        decided: &Decided,
        tally: &mut Tally,
        comparison: Option<&mut Comparison>,
    ) -> Result<()> {
        let Decided { ours, full } = decided;
        let label = f.label(frame.index);
        let ours_right = tally.count(ours, full, label);
        if let Some(AuditEvent::Broken { .. }) = ours.audit {
            tally.audit_warnings.push(frame.index as u64);
        }
        if let (Some(other), Some(c)) = (&mut self.compared, comparison) {
            if frame.stream_break {
                other.classifier.reset_stream();
            }
            let d = other.classifier.classify(&frame.frame()).with_context(|| {
                format!("--compare {}: frame {}", other.path.display(), frame.index)
            })?;
            if let (Some(a), Some(b)) = (ours_right, c.tally.count(&d, full, label)) {
                c.paired.add(a, b);
            }
        }
        if let Some(refit) = &mut self.refit {
            refit
                .record(
                    &mut self.classifier,
                    self.compared.as_mut().map(|c| &mut c.classifier),
                    &frame.frame(),
                    label,
                    full.class_id,
                )
                .with_context(|| format!("--refit: frame {}", frame.index))?;
        }
        if let Some(per_frame) = &mut self.per_frame {
            per_frame.write(f, frame.index, ours)?;
        }
        Ok(())
    }
}

/// `--per-frame`: one CSV row per frame.
struct PerFrame<'a> {
    path: &'a Path,
    file: BufWriter<File>,
    /// A bundle with a stream rule adds a column: the age of a reused answer, else 0. Other
    /// bundles keep the five columns of `docs/spec/search-v1.md`.
    reused: bool,
}

impl<'a> PerFrame<'a> {
    fn create(path: &'a Path, reused: bool) -> Result<PerFrame<'a>> {
        let context = || format!("--per-frame {}", path.display());
        let mut file = BufWriter::new(File::create(path).with_context(context)?);
        let extra = if reused { ",reused" } else { "" };
        writeln!(file, "footage,frame,stage,class_id,score{extra}").with_context(context)?;
        Ok(PerFrame { path, file, reused })
    }

    fn write(&mut self, f: &Footage, index: usize, ours: &Decision) -> Result<()> {
        let name = csv_field(&f.name);
        let (stage, class, score) = (ours.stage, ours.class_id, ours.score);
        let row = if self.reused {
            let age = ours.reused.unwrap_or(0);
            format!("{name},{index},{stage},{class},{score},{age}")
        } else {
            format!("{name},{index},{stage},{class},{score}")
        };
        writeln!(self.file, "{row}").with_context(|| format!("--per-frame {}", self.path.display()))
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("--per-frame {}", self.path.display()))
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
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

/// How the bundle and the full backbone take turns at the clock, over the whole session.
#[derive(Default)]
struct Turns {
    /// Chunks timed so far: which of the two runs first alternates with it, across footage
    /// too, so that neither always meets a footage's first frames. Before the first, both run
    /// [`WARM_UP_FRAMES`] untimed.
    chunks: usize,
}

impl Turns {
    /// Runs the chunk through the bundle and the full backbone `runs` times, alternating,
    /// adding the time of each run to the tally. Returns the decisions of the first run. Every
    /// run continues the stream from where the previous chunk left it, so that repeats decide
    /// the same frames alike and the next chunk follows on from the first run. Which of the two
    /// goes first alternates from run to run and chunk to chunk: the second finds the frames in
    /// cache.
    fn time_chunk(
        &mut self,
        classifier: &mut Classifier,
        full: &mut Classifier,
        chunk: &[DecodedFrame],
        tally: &mut Tally,
    ) -> Result<Vec<Decided>> {
        if self.chunks == 0 {
            let frames = &chunk[..chunk.len().min(WARM_UP_FRAMES)];
            for c in [&mut *classifier, &mut *full] {
                let start = c.resume_point();
                classify_all(c, frames, &mut 0)?;
                c.resume(start);
            }
        }
        let mut decided = Vec::with_capacity(chunk.len());
        let start = (classifier.resume_point(), full.resume_point());
        let mut end = start.clone();
        for run in 0..tally.bundle_ns.len() {
            classifier.resume(start.0.clone());
            full.resume(start.1.clone());
            let (ours, theirs) = if (run + self.chunks).is_multiple_of(2) {
                let ours = classify_all(classifier, chunk, &mut tally.bundle_ns[run])?;
                (ours, classify_all(full, chunk, &mut tally.full_ns[run])?)
            } else {
                let theirs = classify_all(full, chunk, &mut tally.full_ns[run])?;
                (
                    classify_all(classifier, chunk, &mut tally.bundle_ns[run])?,
                    theirs,
                )
            };
            if run == 0 {
                decided = ours
                    .into_iter()
                    .zip(theirs)
                    .map(|(ours, full)| Decided { ours, full })
                    .collect();
                end = (classifier.resume_point(), full.resume_point());
            }
        }
        classifier.resume(end.0);
        full.resume(end.1);
        self.chunks += 1;
        Ok(decided)
    }
}

fn classify_all(
    classifier: &mut Classifier,
    chunk: &[DecodedFrame],
    ns: &mut u64,
) -> Result<Vec<Decision>> {
    chunk
        .iter()
        .map(|frame| {
            // A break in the stream, where the element forgets the last answer too.
            if frame.stream_break {
                classifier.reset_stream();
            }
            let d = classifier
                .classify(&frame.frame())
                .with_context(|| format!("frame {}", frame.index))?;
            *ns += d.inference_ns;
            Ok(d)
        })
        .collect()
}
