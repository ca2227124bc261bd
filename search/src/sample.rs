//! Which frames `fit` holds, from shards: the footage in a fixed order (the footage searched on,
//! then the footage held out, each by id), each footage's frames in time, runs of frames kept by
//! a hash when all would not fit in the memory allowed ([`shard::keeps`]), and the end of each
//! footage held out when no footage is. Nothing here depends on how the frames were cut into
//! shards, or on the shards' order, so any layout of the same frames gives the same bundle.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{Result, bail};

use crate::problem::{Frames, HOLDOUT_SHARE, RUN, Shares};
use crate::shard::{self, Destination, Shard};

/// One footage's shards, in time, with their frame numbers.
struct Footage<'a> {
    id: &'a str,
    holdout: bool,
    /// The footage's frames, as its container tells, else as its shards hold.
    frames: usize,
    spread: bool,
    shards: Vec<(&'a Shard, Vec<u64>)>,
}

/// Where the held-out part of a footage of `n` frames starts, when none is held out whole: its
/// last [`HOLDOUT_SHARE`], in time.
pub fn split(n: usize) -> usize {
    ((n as f64 * (1.0 - HOLDOUT_SHARE)).round() as usize).clamp(1, n.max(1))
}

/// The training and held-out frames of footage of `frames` frames each (held out whole or not),
/// counted as [`frames`] splits them.
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

/// Reads `shards` into the frames the search holds, within `budget` bytes of features.
pub fn frames(shards: &[Shard], budget: usize) -> Result<Frames> {
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
    let footage = group(shards)?;
    let counts: Vec<(usize, bool)> = footage.iter().map(|f| (f.frames, f.holdout)).collect();
    let (train_frames, held_frames) = roles(&counts);
    let shares = Shares::within(
        train_frames,
        held_frames,
        backbone.bytes_per_frame(),
        budget,
    );
    let extracted = shards
        .iter()
        .map(|s| s.header.part.share)
        .fold(1.0, f64::min);
    let any_held_out = footage.iter().any(|f| f.holdout);
    let (mut train, mut held) = (backbone.empty_table(), backbone.empty_table());
    let (mut train_ranges, mut held_ranges, mut train_footage) =
        (Vec::new(), Vec::new(), Vec::new());
    for f in &footage {
        let stored: Vec<u64> = f
            .shards
            .iter()
            .flat_map(|(_, numbers)| numbers.iter().copied())
            .collect();
        // The first frame held out, if any.
        let boundary = match (f.holdout, any_held_out) {
            (true, _) => Some(0),
            (false, true) => None,
            (false, false) => stored.get(split(stored.len())).copied(),
        };
        let route = |n: u64| {
            let is_held = boundary.is_some_and(|b| n >= b);
            let share = if is_held { shares.held } else { shares.train };
            match (shard::keeps(f.id, n, RUN as u64, share), is_held) {
                (false, _) => Destination::Skip,
                (true, false) => Destination::Train,
                (true, true) => Destination::Held,
            }
        };
        let kept = |to: Destination| -> Vec<u64> {
            stored.iter().copied().filter(|&n| route(n) == to).collect()
        };
        let (to_train, to_held) = (kept(Destination::Train), kept(Destination::Held));
        let (train_start, held_start) = (train.frames(), held.frames());
        for (s, numbers) in &f.shards {
            s.read_into(numbers, route, &mut train, &mut held)?;
        }
        streams(&to_train, train_start, f.spread, &mut train_ranges);
        streams(&to_held, held_start, f.spread, &mut held_ranges);
        if !f.holdout {
            train_footage.push(train_start..train.frames());
        }
    }
    let consecutive = !footage.iter().any(|f| f.spread);
    let kept = Shares {
        train: shares.train.min(extracted),
        held: shares.held.min(extracted),
    };
    Frames::new(
        (train, train_ranges, train_footage),
        (held, held_ranges),
        consecutive,
        (!kept.is_all()).then_some(kept),
    )
}

/// The shards of each footage, checked to be one footage's parts that do not overlap, in the
/// fixed order.
fn group(shards: &[Shard]) -> Result<Vec<Footage<'_>>> {
    let mut by_id: BTreeMap<(bool, &str), Footage> = BTreeMap::new();
    let mut first_of: BTreeMap<&str, &Shard> = BTreeMap::new();
    for s in shards {
        let part = &s.header.part;
        let earlier = *first_of.entry(&part.id).or_insert(s);
        let theirs = &earlier.header.part;
        if (theirs.holdout, theirs.footage_frames, theirs.spread)
            != (part.holdout, part.footage_frames, part.spread)
        {
            bail!(
                "shards {} and {} both hold footage '{}', but extracted differently (held out, length or --max-frames); extract them alike",
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
                spread: part.spread,
                shards: Vec::new(),
            })
            .shards
            .push((s, numbers));
    }
    let mut footage: Vec<Footage> = by_id.into_values().collect();
    for f in &mut footage {
        f.shards.retain(|(_, numbers)| !numbers.is_empty());
        f.shards.sort_by_key(|(_, numbers)| numbers[0]);
        for pair in f.shards.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let last = *a.1.last().unwrap_or(&0);
            if last >= b.1[0] {
                bail!(
                    "shards {} and {} both hold frames of footage '{}' (from frame {}); give each frame once",
                    a.0.path.display(),
                    b.0.path.display(),
                    f.id,
                    b.1[0]
                );
            }
        }
        let rows: usize = f.shards.iter().map(|(_, n)| n.len()).sum();
        f.frames = f
            .shards
            .first()
            .and_then(|(s, _)| s.header.part.footage_frames)
            .unwrap_or(rows);
    }
    Ok(footage)
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
