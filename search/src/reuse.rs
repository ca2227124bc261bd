//! The stream rule in the search (format 3): the rules tried on the selecting frames, and
//! [`Replay`], which [`tally`](crate::simulate::tally) runs over a stream of cached answers
//! exactly as the element decides, through the core's [`ReuseMemory`].
//!
//! The signatures come from the feature table, one per frame, made from the same
//! preprocessed tensor as the backbone's input.

use std::ops::Range;

use earlyexit::input::InputSpec;
use earlyexit::reuse::{Detector, ReuseMemory, ReuseRule};

use crate::table::FeatureTable;

/// Frames in a row that may reuse one answer, tried: a cap on how long a missed change can
/// last, from a fraction of a second to a few seconds at 25 fps.
pub const MAX_AGES: [u32; 4] = [8, 15, 30, 60];

/// Distance thresholds tried per detector: these many quantiles of the distances between
/// neighbouring selecting frames.
const QUANTILES: usize = 24;

/// A rule replayed over frames of a feature table, split into streams: which frames reuse
/// the last answer. The rule alone decides that, whatever answers the frames it ran were
/// given, so it is worked out once and any cascade runs after it.
pub struct Replay {
    reuses: Vec<bool>,
}

impl Replay {
    /// `rule` over the frames of `table`, whose streams are `ranges` (each in time order). The
    /// memory forgets at the start of every stream, as the element's does.
    pub fn new(rule: &ReuseRule, table: &FeatureTable, ranges: &[Range<usize>]) -> Self {
        let starts = stream_starts(ranges, table.frames());
        let mut memory = ReuseMemory::default();
        let reuses = starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                if start {
                    memory = ReuseMemory::default();
                }
                let signature = table.signature(rule.grid, i);
                let reuse = memory.reusable(rule, signature);
                if reuse {
                    memory.reused();
                } else {
                    memory.ran(signature);
                }
                reuse
            })
            .collect();
        Replay { reuses }
    }

    /// Whether frame `i` reuses the last answer.
    pub fn reuses(&self, i: usize) -> bool {
        self.reuses[i]
    }
}

/// The rules tried on `table`'s frames (streams `ranges`) of `input`: every detector on its
/// grid, at [`QUANTILES`] of [`thresholds`], at every cap of [`MAX_AGES`]. Empty when no
/// stream has two frames.
pub fn candidates(
    table: &FeatureTable,
    ranges: &[Range<usize>],
    input: &InputSpec,
) -> Vec<ReuseRule> {
    let mut rules = Vec::new();
    for detector in Detector::ALL {
        let grid = detector.grid(input);
        for threshold in thresholds(detector, grid, table, ranges, QUANTILES) {
            for max_age in MAX_AGES {
                rules.push(ReuseRule {
                    detector,
                    grid,
                    threshold,
                    max_age,
                });
            }
        }
    }
    rules
}

/// Neighbouring thresholds are at most this ratio apart (see [`thresholds`]).
const GAP: f64 = 1.25;

/// Thresholds spread over the distances `detector` finds on `grid` between neighbouring frames
/// of `table` (streams `ranges`): their quantiles 1/`count` … (`count` − 1)/`count`, ascending
/// and distinct, with thresholds [`GAP`] times apart filling any wider gap between two. A
/// scene that holds gives neighbours only noise apart, and one that changes far more; the
/// last frame run drifts away from the frames that reuse its answer (light, a slow pan), so
/// the thresholds worth trying lie in that gap, where no quantile falls. Empty when no stream
/// has two frames.
pub fn thresholds(
    detector: Detector,
    grid: u32,
    table: &FeatureTable,
    ranges: &[Range<usize>],
    count: usize,
) -> Vec<f64> {
    let mut distances: Vec<f64> = ranges
        .iter()
        .flat_map(|r| r.start + 1..r.end)
        .map(|i| detector.distance(grid, table.signature(grid, i), table.signature(grid, i - 1)))
        .filter(|d| d.is_finite())
        .collect();
    if distances.is_empty() {
        return Vec::new();
    }
    distances.sort_by(f64::total_cmp);
    let mut thresholds: Vec<f64> = Vec::new();
    for q in 1..count {
        let t = distances[(distances.len() - 1) * q / count];
        if let Some(&last) = thresholds.last().filter(|&&last| last > 0.0) {
            let mut between = last * GAP;
            while between < t {
                thresholds.push(between);
                between *= GAP;
            }
        }
        if thresholds.last() != Some(&t) {
            thresholds.push(t);
        }
    }
    thresholds
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Signatures;

    /// One stream whose one-value signatures are `values`.
    fn table(values: Vec<f32>) -> FeatureTable {
        FeatureTable {
            teacher: vec![0; values.len()],
            signatures: vec![Signatures {
                grid: 1,
                len: 1,
                values,
            }],
            ..FeatureTable::default()
        }
    }

    #[test]
    fn thresholds_run_on_through_the_gap_between_noise_and_change() {
        // A scene held for 9 frames with noise of 0.01 to 0.02 between neighbours, then a
        // change of 1.0: the quantiles fall on the noise or on the change, the rest between.
        let values: Vec<f32> = (0..40)
            .map(|i| (i / 10) as f32 + 0.01 * (i % 2) as f32 + 0.005 * (i % 3) as f32)
            .collect();
        let t = table(values);
        let found = thresholds(Detector::Pixels, 1, &t, std::slice::from_ref(&(0..40)), 20);
        assert!(found.windows(2).all(|w| w[0] < w[1]), "{found:?}");
        assert!(
            found
                .windows(2)
                .all(|w| w[0] == 0.0 || w[1] / w[0] <= GAP + 1e-6),
            "{found:?}"
        );
        assert!(found[0] < 0.02 && *found.last().unwrap() > 0.9, "{found:?}");
        assert!(
            thresholds(Detector::Pixels, 1, &t, std::slice::from_ref(&(0..1)), 10).is_empty(),
            "no neighbours, no thresholds"
        );
    }
}
