//! `--cost latency`: what each piece of the backbone and each exit head takes with ONNX Runtime
//! on this machine, so that the search compares structures by measured time.
//!
//! The backbone is split once at every candidate cut and each piece between consecutive
//! candidates is timed; a segment of any structure then costs the sum of its pieces. The one
//! segment that spans the whole backbone is the uncut backbone, timed on its own: it is also
//! what every cost is measured against.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use earlyexit::runtime::{Model, SessionOptions, Tensor};
use earlyexit_graph::heads::build_head;
use earlyexit_graph::{CutPoint, Graph, encode_model};

use crate::heads::{HeadKind, TrainedHead};

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
    /// The cache file the times are kept in, when there is one.
    cache: Option<PathBuf>,
}

/// What the cache keeps of one calibration.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    pieces: Vec<u64>,
    backbone: u64,
    /// (candidate, head kind's name, nanoseconds).
    heads: Vec<(usize, String, u64)>,
}

/// Where calibrations are kept: `EARLYEXIT_CACHE`, else `$XDG_CACHE_HOME/earlyexit`, else
/// `~/.cache/earlyexit`; None when there is no home.
fn cache_dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("EARLYEXIT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("earlyexit")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("earlyexit")))
}

impl Latency {
    /// The times of a backbone cut at `candidates` on this machine: from the cache when this
    /// backbone, these cuts and these settings were timed before, so that the same seed gives
    /// the same bundle; else measured ([`Latency::measure`]) and cached.
    pub fn calibrated(
        graph: &Graph,
        candidates: &[CutPoint],
        classes: usize,
        options: SessionOptions,
    ) -> Result<Latency> {
        let model = encode_model(graph.model());
        let mut key = std::hash::DefaultHasher::new();
        (&model, classes, options.threads, WARMUP_RUNS, TIMED_RUNS).hash(&mut key);
        for c in candidates {
            c.tensor.hash(&mut key);
        }
        let file = cache_dir().map(|d| {
            d.join("latency")
                .join(format!("{:016x}.json", key.finish()))
        });
        let cached = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| serde_json::from_slice::<Cached>(&bytes).ok())
            .filter(|c| c.pieces.len() == candidates.len() + 1);
        let mut latency = match cached {
            Some(c) => {
                let heads = c
                    .heads
                    .iter()
                    .filter_map(|(candidate, kind, ns)| {
                        let kind = HeadKind::ALL.into_iter().find(|k| k.name() == kind)?;
                        Some(((*candidate, kind), *ns))
                    })
                    .collect();
                Latency {
                    pieces: c.pieces,
                    backbone: c.backbone,
                    candidates: candidates.to_vec(),
                    classes,
                    opset: graph.opset(),
                    options,
                    source: graph.path().to_path_buf(),
                    heads: Mutex::new(heads),
                    cache: None,
                }
            }
            None => Latency::measure(graph, candidates, classes, options)?,
        };
        latency.cache = file;
        latency.save();
        Ok(latency)
    }

    /// Writes the times to the cache, whole or not at all; a cache that cannot be written
    /// only costs timing again next time.
    fn save(&self) {
        let Some(file) = &self.cache else { return };
        let Ok(heads) = self.heads.lock() else { return };
        let mut heads: Vec<(usize, String, u64)> = heads
            .iter()
            .map(|(&(c, kind), &ns)| (c, kind.name().to_owned(), ns))
            .collect();
        heads.sort();
        let cached = Cached {
            pieces: self.pieces.clone(),
            backbone: self.backbone,
            heads,
        };
        let (Some(dir), Ok(bytes)) = (file.parent(), serde_json::to_vec(&cached)) else {
            return;
        };
        let temp = dir.join(format!(".{}.{}", std::process::id(), rand::random::<u64>()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, file));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

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
            cache: None,
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
            SessionOptions::default().head(),
        )?;
        if let Ok(mut heads) = self.heads.lock() {
            heads.insert(key, t);
        }
        self.save();
        Ok(t)
    }

    fn cached(&self, key: (usize, HeadKind)) -> Option<u64> {
        self.heads.lock().ok()?.get(&key).copied()
    }

    /// The time of each piece: `pieces()[j]` computes candidate `j` from candidate `j - 1`; the
    /// first starts at the input, the last ends at the output.
    pub fn pieces(&self) -> &[u64] {
        &self.pieces
    }

    /// The candidate cuts the pieces run between, in execution order.
    pub fn candidates(&self) -> &[CutPoint] {
        &self.candidates
    }

    /// The intra-op threads ONNX Runtime was given (0: its own choice).
    pub fn threads(&self) -> usize {
        self.options.threads
    }

    /// The times of a structure cut at `cuts` (candidates, in order) with `heads` at them: each
    /// segment's, and each head's.
    pub fn structure(&self, cuts: &[&CutPoint], heads: &[&TrainedHead]) -> Result<StructureTimes> {
        Ok(StructureTimes {
            segments: self.segments(cuts)?,
            heads: cuts
                .iter()
                .zip(heads)
                .map(|(cut, head)| self.head(self.index(cut)?, head))
                .collect::<Result<_>>()?,
        })
    }
}

/// The measured times of one structure, in nanoseconds.
pub struct StructureTimes {
    /// Each segment's, the last included.
    pub segments: Vec<u64>,
    /// Each exit head's, in stage order.
    pub heads: Vec<u64>,
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
    fn every_piece_takes_time_and_segments_are_sums_of_pieces() {
        let graph = Graph::load(&earlyexit_testkit::model("fmnist_resnet20w32.onnx")).unwrap();
        let cuts = graph.cut_points();
        let candidates: Vec<CutPoint> = crate::placement::candidates(&cuts, graph.total_macs())
            .into_iter()
            .cloned()
            .collect();
        let options = SessionOptions {
            threads: 1,
            ..SessionOptions::default()
        };
        let latency = Latency::measure(&graph, &candidates, 10, options).unwrap();
        assert_eq!(latency.pieces.len(), candidates.len() + 1);
        assert!(latency.pieces.iter().all(|&t| t > 0));
        assert!(latency.backbone() > 0);
        // How the pieces' sum compares with the uncut backbone is a timing, not asserted here:
        // the report's latency section prints both side by side.
        let sum: u64 = latency.pieces.iter().sum();

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

        // A structure's times are its segments' and its heads'.
        let times = latency.structure(&[a], &[&head]).unwrap();
        assert_eq!(times.segments, latency.segments(&[a]).unwrap());
        assert_eq!(times.heads, vec![t]);
    }
}
