//! `--cost latency`: what each piece of the backbone and each exit head takes with ONNX Runtime
//! on this machine, so that the search compares structures by measured time.
//!
//! The backbone is split once at every candidate cut and each piece between consecutive
//! candidates is timed; a segment of any structure then costs the sum of its pieces. The one
//! segment that spans the whole backbone is the uncut backbone, timed on its own: it is also
//! what every cost is measured against.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use earlyexit::graph::heads::build_head;
use earlyexit::graph::{CutPoint, Graph, encode_model};
use earlyexit::runtime::{Model, SessionOptions, Tensor};

use crate::heads::{HeadKind, TrainedHead};
use crate::search::ChosenExit;

/// Runs before timing: the first runs pay for allocation and ONNX Runtime's lazy set-up.
pub const WARMUP_RUNS: usize = 5;
/// Timed runs; the median is kept, so runs disturbed by other work do not count.
pub const TIMED_RUNS: usize = 51;

/// Measured times, in nanoseconds.
pub struct Latency {
    /// `pieces[j]` computes candidate `j` from candidate `j - 1`; the first starts at the
    /// input, the last ends at the output.
    pieces: Vec<u64>,
    backbone: u64,
    candidates: Vec<CutPoint>,
    classes: usize,
    opset: i64,
    options: SessionOptions,
    source: PathBuf,
    /// Heads are timed when first costed: a head's time depends on its place and kind, not
    /// on its weights.
    heads: Mutex<HashMap<(usize, HeadKind), u64>>,
}

impl Latency {
    /// Times the uncut backbone and every piece between consecutive `candidates` (cut points
    /// in execution order).
    pub fn measure(
        graph: &Graph,
        candidates: &[CutPoint],
        classes: usize,
        options: SessionOptions,
    ) -> Result<Latency> {
        let source = graph.path().to_path_buf();
        let names: Vec<&str> = candidates.iter().map(|c| c.tensor.as_str()).collect();
        let pieces = graph
            .split(&names)
            .with_context(|| format!("{}: cannot split at the candidates", source.display()))?;
        let mut models = vec![Timed::new(
            &encode_model(graph.model()),
            &source,
            &graph.input().shape,
            options,
        )?];
        for (j, piece) in pieces.iter().enumerate() {
            let name = source.with_file_name(format!("piece-{j}.onnx"));
            models.push(Timed::new(
                &encode_model(&piece.model),
                &name,
                &piece.input.shape,
                options,
            )?);
        }
        let bar = crate::progress::bar("timing pieces", Some((WARMUP_RUNS + TIMED_RUNS) as u64));
        // Round robin: a slow spell on the machine then touches every piece alike, instead
        // of all the runs of one.
        for round in 0..WARMUP_RUNS + TIMED_RUNS {
            for m in &mut models {
                m.run(round >= WARMUP_RUNS)?;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mut times = models.into_iter().map(Timed::median);
        let backbone = times.next().unwrap_or(1);
        let times: Vec<u64> = times.collect();
        Ok(Latency {
            pieces: times,
            backbone,
            candidates: candidates.to_vec(),
            classes,
            opset: graph.opset(),
            options,
            source,
            heads: Mutex::new(HashMap::new()),
        })
    }

    /// The uncut backbone's time.
    pub fn backbone(&self) -> u64 {
        self.backbone
    }

    fn index(&self, cut: &CutPoint) -> Result<usize> {
        self.candidates
            .iter()
            .position(|c| c.tensor == cut.tensor)
            .with_context(|| format!("cut '{}' is not a timed candidate", cut.tensor))
    }

    /// The time of each segment when the backbone is cut at `cuts` (candidates, in order).
    pub fn segments(&self, cuts: &[&CutPoint]) -> Result<Vec<u64>> {
        if cuts.is_empty() {
            return Ok(vec![self.backbone]);
        }
        let mut bounds = cuts
            .iter()
            .map(|c| self.index(c).map(|i| i + 1))
            .collect::<Result<Vec<usize>>>()?;
        bounds.push(self.pieces.len());
        let mut start = 0;
        bounds
            .into_iter()
            .map(|end| {
                if end <= start {
                    bail!("cuts must be distinct and in execution order");
                }
                let t = self.pieces[start..end].iter().sum();
                start = end;
                Ok(t)
            })
            .collect()
    }

    /// The time from the input to candidate `candidate`.
    pub fn before(&self, candidate: usize) -> u64 {
        self.pieces[..=candidate.min(self.pieces.len() - 1)]
            .iter()
            .sum()
    }

    /// The time of `head` at candidate `candidate`, timed once per candidate and head kind.
    pub fn head(&self, candidate: usize, head: &TrainedHead) -> Result<u64> {
        let key = (candidate, head.kind);
        if let Some(t) = self.cached(key) {
            return Ok(t);
        }
        let cut = self
            .candidates
            .get(candidate)
            .with_context(|| format!("candidate {candidate} is not timed"))?;
        let built = build_head(&head.spec(), &cut.shape, self.classes, self.opset)
            .with_context(|| format!("head {} at '{}'", head.kind.name(), cut.tensor))?;
        let mut shape = cut.shape.clone();
        shape[0] = 1;
        let name = self
            .source
            .with_file_name(format!("head-{}-{candidate}.onnx", head.kind.name()));
        // Timed as the runtime runs heads.
        let t = time_model(
            &encode_model(&built.model),
            &name,
            &shape,
            SessionOptions::HEAD,
        )?;
        if let Ok(mut heads) = self.heads.lock() {
            heads.insert(key, t);
        }
        Ok(t)
    }

    fn cached(&self, key: (usize, HeadKind)) -> Option<u64> {
        self.heads.lock().ok()?.get(&key).copied()
    }

    /// The report's section: every piece's time, the chosen structure's segments and heads,
    /// and its expected mean time per frame (at `mean_cost`) against the uncut backbone.
    pub fn section(&self, exits: &[ChosenExit], mean_cost: f64) -> Result<String> {
        let ms = |ns: u64| ns as f64 / 1e6;
        let mut s = String::new();
        let _ = writeln!(s, "\n## Measured latency\n");
        let threads = match self.options.threads {
            0 => "threads chosen by ONNX Runtime".to_owned(),
            n => format!("{n} intra-op thread{}", if n == 1 { "" } else { "s" }),
        };
        let _ = writeln!(
            s,
            "ONNX Runtime on this machine ({threads}; heads on one thread), one frame of zeros, the median of {TIMED_RUNS} runs after {WARMUP_RUNS} warm-up runs, the backbone and its pieces taking turns. A segment's time is the sum of its pieces'.\n"
        );
        let _ = writeln!(s, "| piece | ms |");
        let _ = writeln!(s, "|---|---|");
        let name = |j: usize| {
            self.candidates
                .get(j)
                .map_or("output".to_owned(), |c| format!("`{}`", c.tensor))
        };
        for (j, t) in self.pieces.iter().enumerate() {
            let from = j.checked_sub(1).map_or("input".to_owned(), name);
            let _ = writeln!(s, "| {from} → {} | {:.3} |", name(j), ms(*t));
        }
        let _ = writeln!(
            s,
            "| all pieces | {:.3} |",
            ms(self.pieces.iter().sum::<u64>())
        );
        let _ = writeln!(s, "| uncut backbone | {:.3} |", ms(self.backbone));

        let cuts: Vec<&CutPoint> = exits.iter().map(|e| &e.cut).collect();
        let segments = self.segments(&cuts)?;
        let _ = writeln!(s, "\nThe chosen structure:\n");
        let _ = writeln!(s, "| stage | segment ms | exit head | head ms |");
        let _ = writeln!(s, "|---|---|---|---|");
        for (k, t) in segments.iter().enumerate() {
            let (head, head_ms) = match exits.get(k) {
                Some(e) => (
                    e.head.kind.name(),
                    format!("{:.3}", ms(self.head(self.index(&e.cut)?, &e.head)?)),
                ),
                None => ("-", "-".to_owned()),
            };
            let _ = writeln!(s, "| {k} | {:.3} | {head} | {head_ms} |", ms(*t));
        }
        let expected = mean_cost * self.backbone as f64;
        let _ = writeln!(
            s,
            "\nExpected mean time per held-out frame: **{:.3} ms**, against **{:.3} ms** for the uncut backbone ({:.2}× as fast). Preprocessing and decoding are not included.",
            expected / 1e6,
            ms(self.backbone),
            self.backbone as f64 / expected.max(1.0)
        );
        Ok(s)
    }
}

/// A model being timed on a frame of zeros.
struct Timed {
    session: Model,
    shape: Vec<i64>,
    data: Vec<f32>,
    out: Tensor,
    times: Vec<u64>,
}

impl Timed {
    fn new(model: &[u8], name: &Path, shape: &[i64], options: SessionOptions) -> Result<Timed> {
        let values: i64 = shape.iter().product();
        Ok(Timed {
            session: Model::from_bytes(model, name, options)?,
            shape: shape.to_vec(),
            data: vec![0f32; usize::try_from(values).unwrap_or(0)],
            out: Tensor::default(),
            times: Vec::with_capacity(TIMED_RUNS),
        })
    }

    /// One run, kept when `timed` (warm-up runs are not).
    fn run(&mut self, timed: bool) -> Result<()> {
        let start = Instant::now();
        self.session
            .run_into(&self.shape, &self.data, &mut self.out)?;
        if timed {
            self.times.push(start.elapsed().as_nanos() as u64);
        }
        Ok(())
    }

    /// The median timed run; at least 1 ns, so that nothing is free.
    fn median(mut self) -> u64 {
        self.times.sort_unstable();
        self.times
            .get(self.times.len() / 2)
            .copied()
            .unwrap_or(1)
            .max(1)
    }
}

/// The median time of one run of `model` on a frame of zeros of `shape`, after warming up.
fn time_model(model: &[u8], name: &Path, shape: &[i64], options: SessionOptions) -> Result<u64> {
    let mut timed = Timed::new(model, name, shape, options)?;
    for round in 0..WARMUP_RUNS + TIMED_RUNS {
        timed.run(round >= WARMUP_RUNS)?;
    }
    Ok(timed.median())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::{Targets, Training, train};

    #[test]
    fn every_piece_takes_time_and_the_pieces_add_up_to_about_the_backbone() {
        let graph = Graph::load(&earlyexit_e2e::model("fmnist_resnet20w32.onnx")).unwrap();
        let cuts = graph.cut_points();
        let candidates: Vec<CutPoint> = crate::placement::candidates(&cuts, graph.total_macs())
            .into_iter()
            .cloned()
            .collect();
        let options = SessionOptions { threads: 1 };
        let latency = Latency::measure(&graph, &candidates, 10, options).unwrap();
        assert_eq!(latency.pieces.len(), candidates.len() + 1);
        assert!(latency.pieces.iter().all(|&t| t > 0));
        assert!(latency.backbone() > 0);
        // Not a timing assertion: pieces carry their own run overhead and timing noise, but
        // they compute the same as the whole.
        let sum: u64 = latency.pieces.iter().sum();
        let ratio = sum as f64 / latency.backbone() as f64;
        assert!((0.3..=3.0).contains(&ratio), "pieces / backbone = {ratio}");

        // Segments are sums of pieces; no cut at all is the uncut backbone.
        let (a, b) = (&candidates[2], &candidates[7]);
        let segments = latency.segments(&[a, b]).unwrap();
        assert_eq!(segments.iter().sum::<u64>(), sum);
        assert_eq!(segments[0], latency.before(2));
        assert_eq!(latency.segments(&[]).unwrap(), vec![latency.backbone()]);
        assert!(latency.segments(&[b, a]).is_err());

        // A head is timed once per place and kind.
        let d = candidates[2].shape[1] as usize;
        let x: Vec<f32> = (0..8 * d).map(|i| (i % 7) as f32).collect();
        let y: Vec<u32> = (0..8).map(|i| i % 10).collect();
        let training = Training {
            epochs: 1,
            ..Training::default()
        };
        let head = train(HeadKind::LinearGap, &x, d, Targets::Hard(&y), 10, &training).unwrap();
        let t = latency.head(2, &head).unwrap();
        assert!(t > 0);
        assert_eq!(latency.head(2, &head).unwrap(), t);
    }
}
