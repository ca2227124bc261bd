//! The held-out frames split for their two roles: the first half in time of each footage's
//! held-out frames selects (thresholds, structure), the second half only certifies.

use std::ops::Range;

pub struct Halves {
    /// Indices into the held-out frames of the selecting frames, in time order.
    pub select: Vec<usize>,
    /// Indices into the held-out frames of the certifying frames, in time order.
    pub certify: Vec<usize>,
    /// Each footage's part of the selecting frames, as ranges of them.
    pub select_streams: Vec<Range<usize>>,
    /// Each footage's part of the certifying frames, as ranges of them.
    pub certify_streams: Vec<Range<usize>>,
}

impl Halves {
    /// The halves of held-out frames whose footage spans `ranges`.
    pub fn of(ranges: &[Range<usize>]) -> Halves {
        let (mut select, mut certify) = (Vec::new(), Vec::new());
        let (mut select_streams, mut certify_streams) = (Vec::new(), Vec::new());
        for r in ranges {
            let mid = r.start + (r.end - r.start) / 2;
            select_streams.push(select.len()..select.len() + (mid - r.start));
            certify_streams.push(certify.len()..certify.len() + (r.end - mid));
            select.extend(r.start..mid);
            certify.extend(mid..r.end);
        }
        Halves {
            select,
            certify,
            select_streams,
            certify_streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_footage_selects_on_its_first_half_and_certifies_on_its_second() {
        let h = Halves::of(&[0..5, 5..9, 9..10]);
        assert_eq!(h.select, [0, 1, 5, 6]);
        assert_eq!(h.certify, [2, 3, 4, 7, 8, 9]);
        assert_eq!(h.select_streams, [0..2, 2..4, 4..4]);
        assert_eq!(h.certify_streams, [0..3, 3..5, 5..6]);
    }
}
