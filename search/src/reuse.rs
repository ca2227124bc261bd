//! The stream rule in the search (format 3): the rules tried on the selecting frames, and
//! [`Replay`], which [`tally`](crate::simulate::tally) runs over a stream of cached answers
//! exactly as the element decides, through the core's [`ReuseMemory`].
//!
//! The signatures come from the feature table, one per frame, made from the same
//! preprocessed tensor as the backbone's input.

use std::ops::Range;

use earlyexit::reuse::{Detector, ReuseMemory, ReuseRule};

use crate::features::{FeatureTable, GRID};

/// Frames in a row that may reuse one answer, tried: a cap on how long a missed change can
/// last, from a fraction of a second to a few seconds at 25 fps.
pub const MAX_AGES: [u32; 4] = [8, 15, 30, 60];

/// Distance thresholds tried per detector: these many quantiles of the distances between
/// neighbouring selecting frames.
const QUANTILES: usize = 24;

/// A rule replayed over frames of a feature table, split into streams.
pub struct Replay<'a> {
    pub rule: &'a ReuseRule,
    table: &'a FeatureTable,
    starts: Vec<bool>,
}

impl<'a> Replay<'a> {
    /// `rule` over the frames of `table`, whose streams are `ranges` (each in time order).
    pub fn new(rule: &'a ReuseRule, table: &'a FeatureTable, ranges: &[Range<usize>]) -> Self {
        Replay {
            rule,
            table,
            starts: stream_starts(ranges, table.frames()),
        }
    }

    /// Frame `i` with `memory`: whether it reuses the last answer (then recorded as reused).
    /// The memory forgets at the start of every stream, as the element's does.
    pub fn reuses(&self, i: usize, memory: &mut ReuseMemory) -> bool {
        if self.starts[i] {
            *memory = ReuseMemory::default();
        }
        let reuse = memory.reusable(self.rule, self.table.signature(i));
        if reuse {
            memory.reused();
        }
        reuse
    }

    /// Records that frame `i` ran the cascade.
    pub fn ran(&self, i: usize, memory: &mut ReuseMemory) {
        memory.ran(self.table.signature(i));
    }
}

/// The rules tried on `table`'s frames (streams `ranges`): every detector, at thresholds
/// spread over the distances between neighbouring frames, at every cap of [`MAX_AGES`].
/// Empty when no stream has two frames.
pub fn candidates(table: &FeatureTable, ranges: &[Range<usize>]) -> Vec<ReuseRule> {
    let mut rules = Vec::new();
    for detector in Detector::ALL {
        let mut distances: Vec<f64> = ranges
            .iter()
            .flat_map(|r| r.start + 1..r.end)
            .map(|i| detector.distance(table.signature(i), table.signature(i - 1)))
            .filter(|d| d.is_finite())
            .collect();
        if distances.is_empty() {
            continue;
        }
        distances.sort_by(f64::total_cmp);
        let mut thresholds: Vec<f64> = (1..QUANTILES)
            .map(|q| distances[(distances.len() - 1) * q / QUANTILES])
            .collect();
        thresholds.dedup();
        for &threshold in &thresholds {
            for max_age in MAX_AGES {
                rules.push(ReuseRule {
                    detector,
                    grid: GRID,
                    threshold,
                    max_age,
                });
            }
        }
    }
    rules
}

/// Where each stream starts: the last frame's answer and the stream rule's memory are
/// forgotten there.
pub fn stream_starts(streams: &[Range<usize>], frames: usize) -> Vec<bool> {
    let mut start = vec![false; frames];
    for r in streams {
        if r.start < frames {
            start[r.start] = true;
        }
    }
    if let Some(first) = start.first_mut() {
        *first = true;
    }
    start
}

/// `rule` with its threshold scaled by `scale`: the ladder loosens a rule from reusing nothing
/// (0) up.
pub fn scaled(rule: &ReuseRule, scale: f64) -> ReuseRule {
    ReuseRule {
        threshold: rule.threshold * scale,
        ..rule.clone()
    }
}
