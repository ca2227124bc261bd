//! Which frames `fit` holds, from shards: the footage in a fixed order (the footage searched on,
//! then the footage held out, each by id), each footage's frames in time, runs of frames taken in
//! the order of their hash while they fit in the memory allowed ([`shard::keeps`]), and the end of each
//! footage held out when no footage is. Held-out frames are read without features, which the
//! search reads once it knows which columns it needs there; they are sized by the columns it
//! may need. Nothing here depends on how the frames were cut into shards, or on the shards'
//! order, so any layout of the same frames gives the same bundle.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{Result, bail};

use crate::crossfit::Timeline;
use crate::problem::{FrameBytes, Frames, HOLDOUT_SHARE, RUN, Shares};
use crate::shard::{self, Destination, Rows, Shard};
use crate::table::Columns;

/// One footage's shards, in time, with their frame numbers.
struct Footage<'a> {
    id: &'a str,
    holdout: bool,
    /// The footage's frames, as its container tells, else as its shards hold.
    frames: usize,
    /// The first frame held out, if any.
    boundary: Option<u64>,
    /// The numbers of the frames its shards decoded (stored or not), unless they were spread.
    decoded: Option<Range<u64>>,
    spread: bool,
    shards: Vec<(&'a Shard, Vec<u64>)>,
}

impl Footage<'_> {
    /// The timeline of its training frames held at `rows`, numbered `held`. A frame's place
    /// among them is by its number, whatever was stored (`search` extracts only the runs it may
    /// keep) or sampled; among the frames spread over it, which were all stored, by rank.
    fn timeline(&self, held: &[u64], rows: Range<usize>) -> Timeline {
        match &self.decoded {
            // Every number in the range is a frame: a place is an offset, with no walk over
            // a footage that may be days long.
            Some(decoded) => Timeline {
                places: held.iter().map(|&n| (n - decoded.start) as usize).collect(),
                frames: (self.boundary.unwrap_or(decoded.end) - decoded.start) as usize,
                rows,
            },
            None => {
                let stored = self.shards.iter().flat_map(|(_, numbers)| numbers.iter());
                let training = stored
                    .copied()
                    .filter(|&n| self.boundary.is_none_or(|b| n < b));
                timeline(training, held, rows)
            }
        }
    }
}

/// Where the held-out part of a footage of `n` frames starts, when none is held out whole: its
/// last [`HOLDOUT_SHARE`], in time.
pub fn split(n: usize) -> usize {
    ((n as f64 * (1.0 - HOLDOUT_SHARE)).round() as usize).clamp(1, n.max(1))
}

/// The training and held-out frames of footage of `frames` frames each (held out whole or not),
/// when the last [`HOLDOUT_SHARE`] of each is held out unless some footage is held out whole:
/// what [`frames`] sizes its shares by.
pub fn roles(footage: &[(usize, bool)]) -> (usize, usize) {
    let any_held_out = footage.iter().any(|f| f.1);
    footage.iter().fold((0, 0), |(train, held), &(n, holdout)| {
        match (holdout, any_held_out) {
            (true, _) => (train, held + n),
            (false, true) => (train + n, held),
            (false, false) => (train + split(n), held + n - split(n)),
        }
    })
}

/// Reads `shards` into the frames the search holds, within `budget` bytes of features, when
/// held-out frames hold at most the feature columns `held_columns`.
pub fn frames(shards: &[Shard], budget: usize, held_columns: &Columns) -> Result<Frames> {
    let Some(first) = shards.first() else {
        bail!("no shards to fit on");
    };
    let backbone = &first.header.backbone;
    for s in &shards[1..] {
        if let Some(why) = backbone.difference(&s.header.backbone) {
            bail!(
                "shards {} and {} cannot be searched together: {why}",
                first.path.display(),
                s.path.display()
            );
        }
    }
    let mut footage = group(shards)?;
    if footage.iter().any(|f| f.holdout) {
        // Footage held out whole certifies; the rest only trains.
        for f in footage.iter_mut().filter(|f| !f.holdout) {
            f.boundary = None;
        }
    }
    let counts: Vec<(usize, bool)> = footage.iter().map(|f| (f.frames, f.holdout)).collect();
    let (train_frames, held_frames) = roles(&counts);
    let present = footage.iter().flat_map(|f| {
        f.shards
            .iter()
            .flat_map(|(_, numbers)| numbers)
            .map(move |&n| (f.id, n, f.boundary.is_some_and(|b| n >= b)))
    });
    let shares = thresholds(
        present,
        train_frames,
        held_frames,
        bytes(backbone, held_columns),
        budget,
    );
    let extracted = shards
        .iter()
        .map(|s| s.header.part.share)
        .fold(1.0, f64::min);
    let (mut train, mut held) = (backbone.empty_table(), backbone.empty_table());
    let (mut train_ranges, mut held_ranges, mut train_footage) =
        (Vec::new(), Vec::new(), Vec::new());
    // Which frame goes where, decided once before any is read, so that the tables are
    // allocated once, at their size.
    let routes = routes(&footage, shares);
    let count = |to: Destination| {
        routes
            .iter()
            .flatten()
            .flatten()
            .filter(|d| **d == to)
            .count()
    };
    train.reserve(count(Destination::Train), &backbone.all_columns());
    held.reserve(count(Destination::Held), &Columns::none(&backbone.dims()));
    let mut held_rows = Rows::default();
    for (f, routed) in footage.iter().zip(&routes) {
        let kept = |to: Destination| -> Vec<u64> {
            f.shards
                .iter()
                .zip(routed)
                .flat_map(|((_, numbers), dests)| numbers.iter().zip(dests))
                .filter(|(_, d)| **d == to)
                .map(|(n, _)| *n)
                .collect()
        };
        let (to_train, to_held) = (kept(Destination::Train), kept(Destination::Held));
        let (train_start, held_start) = (train.frames(), held.frames());
        for ((s, _), dests) in f.shards.iter().zip(routed) {
            s.read_into(dests, &mut train, &mut held)?;
            held_rows.push(s, dests.iter().map(|d| *d == Destination::Held).collect());
        }
        streams(&to_train, train_start, f.spread, &mut train_ranges);
        streams(&to_held, held_start, f.spread, &mut held_ranges);
        if !f.holdout {
            train_footage.push(f.timeline(&to_train, train_start..train.frames()));
        }
    }
    let consecutive = !footage.iter().any(|f| f.spread);
    // What the report states: the share of each role's frames read (a role's footage may
    // have been extracted whole while another's was not).
    let share_of = |read: usize, of: usize| (read as f64 / of.max(1) as f64).min(1.0);
    let kept = if shares.is_all() && extracted >= 1.0 {
        Shares::ALL
    } else {
        Shares {
            train: share_of(train.frames(), train_frames),
            held: share_of(held.frames(), held_frames),
        }
    };
    Frames::new(
        (train, train_ranges, train_footage),
        (held, held_ranges, held_rows),
        consecutive,
        (!kept.is_all()).then_some(kept),
    )
}

/// The bytes a frame of each role takes, when held-out frames hold the columns `held_columns`.
pub fn bytes(backbone: &shard::Backbone, held_columns: &Columns) -> FrameBytes {
    FrameBytes {
        train: backbone.bytes_per_frame(&backbone.all_columns()),
        held: backbone.bytes_per_frame(held_columns),
    }
}

/// The hash thresholds ([`shard::keeps`]) under which the runs of frames present fit `budget`
/// bytes, a frame of each role taking `bytes`: held-out frames get at least half of it (as
/// [`Shares::within`] shares it), and each role takes its runs lowest hash first while they
/// fit. Runs are hundreds of megabytes for a large backbone, so a share drawn at random would
/// hold the budget only on average; taking them in hash order holds it always, and a smaller
/// budget still keeps a subset of a larger one's frames.
/// `frames` are (footage id, frame number, held out) of every frame present.
pub fn thresholds<'a>(
    frames: impl Iterator<Item = (&'a str, u64, bool)>,
    train_frames: usize,
    held_frames: usize,
    bytes: FrameBytes,
    budget: usize,
) -> Shares {
    if Shares::within(train_frames, held_frames, bytes, budget).is_all() {
        return Shares::ALL;
    }
    // The frames present in each run, per role (a run may straddle the held-out boundary).
    let mut runs: BTreeMap<(bool, &str, u64), (f64, usize)> = BTreeMap::new();
    for (id, n, held) in frames {
        runs.entry((held, id, n / RUN as u64))
            .or_insert_with(|| (shard::run_hash(id, n, RUN as u64), 0))
            .1 += 1;
    }
    let role = |held: bool| -> Vec<(f64, usize)> {
        runs.iter()
            .filter(|((h, _, _), _)| *h == held)
            .map(|(_, run)| *run)
            .collect()
    };
    let train_bytes = train_frames.saturating_mul(bytes.train);
    let held_budget = (budget / 2).max(budget.saturating_sub(train_bytes));
    let (held, held_used) = threshold(role(true), bytes.held, held_budget);
    let (train, _) = threshold(
        role(false),
        bytes.train,
        budget.saturating_sub(held_used.saturating_mul(bytes.held)),
    );
    Shares { train, held }
}

/// Takes `runs` (hash, frames) lowest hash first while their frames fit `budget` bytes: the
/// hash of the first run left out (1 when all fit, which keeps every run), and the frames taken.
fn threshold(mut runs: Vec<(f64, usize)>, bytes_per_frame: usize, budget: usize) -> (f64, usize) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut taken = 0usize;
    for (hash, frames) in runs {
        if (taken + frames).saturating_mul(bytes_per_frame) > budget {
            return (hash, taken);
        }
        taken += frames;
    }
    (1.0, taken)
}

/// Where each frame of `footage` goes under `shares`: per footage, per shard, per row.
fn routes(footage: &[Footage], shares: Shares) -> Vec<Vec<Vec<Destination>>> {
    footage
        .iter()
        .map(|f| {
            f.shards
                .iter()
                .map(|(_, numbers)| {
                    // A shard's frames come in time, so a run's hash is worked out once.
                    let mut last: Option<(u64, f64)> = None;
                    numbers
                        .iter()
                        .map(|&n| {
                            let run = n / RUN as u64;
                            let hash = match last {
                                Some((r, hash)) if r == run => hash,
                                _ => shard::run_hash(f.id, n, RUN as u64),
                            };
                            last = Some((run, hash));
                            route(f, shares, n, hash)
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Where frame `n` of footage `f` goes; `hash` is its run's ([`shard::run_hash`]).
fn route(f: &Footage, shares: Shares, n: u64, hash: f64) -> Destination {
    let is_held = f.boundary.is_some_and(|b| n >= b);
    let share = if is_held { shares.held } else { shares.train };
    match (shard::kept(hash, share), is_held) {
        (false, _) => Destination::Skip,
        (true, false) => Destination::Train,
        (true, true) => Destination::Held,
    }
}

/// The shards of each footage, checked to be parts of one footage, extracted alike, that
/// neither overlap nor leave a gap in time, in the fixed order.
fn group(shards: &[Shard]) -> Result<Vec<Footage<'_>>> {
    let mut by_id: BTreeMap<(bool, &str), Footage> = BTreeMap::new();
    let mut first_of: BTreeMap<&str, &Shard> = BTreeMap::new();
    for s in shards {
        let part = &s.header.part;
        let earlier = *first_of.entry(&part.id).or_insert(s);
        let theirs = &earlier.header.part;
        fn alike(p: &shard::Part) -> (&str, Option<&str>, bool, Option<usize>, bool, u64) {
            let labels = p.labels.as_deref();
            (
                &p.footage,
                labels,
                p.holdout,
                p.footage_frames,
                p.spread,
                p.share.to_bits(),
            )
        }
        if alike(theirs) != alike(part) {
            bail!(
                "shards {} and {} both hold footage '{}', but of other files, labels, roles, lengths or shares; give other footage another --id, and extract a footage's parts alike",
                earlier.path.display(),
                s.path.display(),
                part.id
            );
        }
        let numbers = s.frame_numbers()?;
        if let Some(w) = numbers.windows(2).find(|w| w[0] >= w[1]) {
            bail!(
                "shard {}: frame {} follows frame {}; rows must be in time",
                s.path.display(),
                w[1],
                w[0]
            );
        }
        by_id
            .entry((part.holdout, &part.id))
            .or_insert_with(|| Footage {
                id: &part.id,
                holdout: part.holdout,
                frames: 0,
                boundary: None,
                decoded: None,
                spread: part.spread,
                shards: Vec::new(),
            })
            .shards
            .push((s, numbers));
    }
    let mut footage: Vec<Footage> = by_id.into_values().collect();
    for f in &mut footage {
        f.shards
            .sort_by_key(|(s, _)| s.header.part.start_ns.unwrap_or(0));
        check_parts(f)?;
        let numbered = renumber(f)?;
        let decoded: usize = f.shards.iter().map(|(s, _)| s.header.part.decoded).sum();
        f.shards.retain(|(_, numbers)| !numbers.is_empty());
        let rows: usize = f.shards.iter().map(|(_, n)| n.len()).sum();
        f.frames = f
            .shards
            .first()
            .and_then(|(s, _)| s.header.part.footage_frames)
            .unwrap_or(rows);
        // Held out whole, or its last fifth of the frames decoded, whatever share was stored;
        // frames spread over a footage were all stored.
        f.boundary = if f.holdout {
            Some(0)
        } else if f.spread {
            let stored: Vec<u64> = f
                .shards
                .iter()
                .flat_map(|(_, n)| n.iter().copied())
                .collect();
            stored.get(split(stored.len())).copied()
        } else {
            numbered.as_ref().map(|n| n.start + split(decoded) as u64)
        };
        if !f.spread {
            f.decoded = numbered;
        }
    }
    Ok(footage)
}

/// Refuses parts of a footage (in time order) that overlap or leave a gap.
fn check_parts(f: &Footage) -> Result<()> {
    for pair in f.shards.windows(2) {
        let ((a, _), (b, _)) = (&pair[0], &pair[1]);
        let (end, start) = (a.header.part.end_ns, b.header.part.start_ns);
        if end.is_none() || start.is_none() || end > start {
            bail!(
                "shards {} and {} hold overlapping parts of footage '{}'; give each frame once",
                a.path.display(),
                b.path.display(),
                f.id
            );
        }
        if end < start {
            bail!(
                "footage '{}': no shard holds its frames from {:.3} s to {:.3} s, between {} and {}",
                f.id,
                end.unwrap_or(0) as f64 / 1e9,
                start.unwrap_or(0) as f64 / 1e9,
                a.path.display(),
                b.path.display()
            );
        }
    }
    Ok(())
}

/// Numbers a footage's frames (its parts in time, which meet) on from its first part's first
/// frame, one by one: a part numbers its frames on from its first one's time × rate, which
/// for a footage whose frames outnumber its rate is not where the part before it ended. The
/// numbers are then those of the footage decoded whole, however it was cut. Returns the numbers
/// its parts decoded, stored or not (to past the last stored, which a shard of an earlier build,
/// numbered by time, may skip to).
fn renumber(f: &mut Footage) -> Result<Option<Range<u64>>> {
    let (mut from, mut next, mut last) = (None, None, 0);
    for (s, numbers) in &mut f.shards {
        let part = &s.header.part;
        let Some(first) = part.first else { continue };
        if numbers.first().is_some_and(|&n| n < first) {
            bail!(
                "shard {}: it holds frames before its first, {first}",
                s.path.display()
            );
        }
        let start = next.unwrap_or(first);
        from.get_or_insert(start);
        for n in numbers.iter_mut() {
            *n = *n - first + start;
            last = last.max(*n + 1);
        }
        next = Some(start + part.decoded as u64);
    }
    Ok(from.zip(next).map(|(from, next)| from..next.max(last)))
}

/// The timeline of a footage's training frames held at `rows`, numbered `held`, among the
/// numbers of all its `training` frames (both in time, `held` within `training`).
fn timeline(training: impl Iterator<Item = u64>, held: &[u64], rows: Range<usize>) -> Timeline {
    let mut places = Vec::with_capacity(held.len());
    let mut frames = 0;
    let mut next = held.iter().peekable();
    for n in training {
        if next.next_if_eq(&&n).is_some() {
            places.push(frames);
        }
        frames += 1;
    }
    Timeline {
        rows,
        places,
        frames,
    }
}

/// Appends the streams of `numbers`, placed in their table from `start`: a stream ends where
/// the frames skip some, unless they were `spread` over the footage on purpose.
fn streams(numbers: &[u64], start: usize, spread: bool, ranges: &mut Vec<Range<usize>>) {
    let mut from = 0;
    for i in 1..=numbers.len() {
        let ends = i == numbers.len() || (!spread && numbers[i] != numbers[i - 1] + 1);
        if ends {
            ranges.push(start + from..start + i);
            from = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_break_where_frames_skip_unless_spread() {
        let mut ranges = Vec::new();
        streams(&[3, 4, 5, 9, 10], 7, false, &mut ranges);
        assert_eq!(ranges, vec![7..10, 10..12]);
        ranges.clear();
        streams(&[3, 4, 5, 9, 10], 0, true, &mut ranges);
        assert_eq!(ranges, vec![0..5]);
        ranges.clear();
        streams(&[], 0, false, &mut ranges);
        assert!(ranges.is_empty());
    }

    #[test]
    fn a_timeline_places_the_held_frames_among_the_stored_ones() {
        let training = [10u64, 11, 12, 13, 20, 21];
        let sampled = timeline(training.into_iter(), &[11, 12, 21], 4..7);
        assert_eq!(sampled.places, vec![1, 2, 5]);
        assert_eq!((sampled.frames, sampled.rows), (6, 4..7));
        assert_eq!(
            timeline(training.into_iter(), &training, 0..6),
            Timeline::whole(0..6)
        );
        // Frames 3 and 4 of a footage's first ten decoded, the only run stored.
        assert_eq!(timeline(0..10, &[3, 4], 0..2).places, vec![3, 4]);
    }

    /// Runs of 250 frames of 1.6 MB (EfficientNet-Lite0's size): a budget of three runs'
    /// worth. Taken in hash order, the frames kept never pass the budget, whatever the footage,
    /// and a smaller budget keeps a subset of a larger one's runs.
    #[test]
    fn runs_taken_in_hash_order_never_pass_the_budget() {
        let bytes_per_frame = 1_600_000;
        let ids: Vec<String> = (0..52).map(|i| format!("clip-{i:02}")).collect();
        let frames = |id: &str| 100 + (id.len() as u64 * 37 + id.as_bytes()[5] as u64 * 13) % 700;
        let all: Vec<(&str, u64, bool)> = ids
            .iter()
            .flat_map(|id| (0..frames(id)).map(move |n| (id.as_str(), n, false)))
            .collect();
        let total = all.len();
        let mut previous: Option<Vec<(&str, u64)>> = None;
        for budget in [4_800_000_000usize, 2_400_000_000, 1_200_000_000] {
            let bytes = FrameBytes {
                train: bytes_per_frame,
                held: bytes_per_frame,
            };
            let shares = thresholds(all.iter().copied(), total, 0, bytes, budget);
            let kept: Vec<(&str, u64)> = all
                .iter()
                .filter(|(id, n, _)| shard::keeps(id, *n, RUN as u64, shares.train))
                .map(|(id, n, _)| (*id, *n))
                .collect();
            assert!(
                kept.len() * bytes_per_frame <= budget,
                "{} frames",
                kept.len()
            );
            // Within one run of the budget: the next run in hash order did not fit.
            assert!(
                (kept.len() + RUN) * bytes_per_frame > budget,
                "{} frames",
                kept.len()
            );
            if let Some(larger) = &previous {
                assert!(kept.iter().all(|k| larger.contains(k)));
            }
            previous = Some(kept);
        }
    }

    #[test]
    fn a_smaller_share_keeps_a_subset_of_a_larger_ones_runs() {
        let kept = |share| -> Vec<u64> {
            (0..50_000u64)
                .filter(|&n| shard::keeps("cam-1", n, 250, share))
                .collect()
        };
        let (half, tenth) = (kept(0.5), kept(0.1));
        assert!(tenth.iter().all(|n| half.binary_search(n).is_ok()));
        // Whole runs: a kept frame's run is kept whole.
        assert!(
            half.iter()
                .all(|n| shard::keeps("cam-1", n - n % 250, 250, 0.5))
        );
        // About the share asked, over 200 runs.
        let share = half.len() as f64 / 50_000.0;
        assert!((0.35..0.65).contains(&share), "{share}");
        assert_eq!(kept(1.0).len(), 50_000);
    }
}
