//! Two classifiers scored on the same labeled frames: only the frames where exactly one of
//! them is right tell them apart, so that is what their comparison counts and tests.

use statrs::distribution::{Binomial, DiscreteCDF};

/// Counts of the labeled frames where exactly one of two classifiers, A and B, is right.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Paired {
    pub only_a: u64,
    pub only_b: u64,
}

impl Paired {
    pub fn add(&mut self, a_right: bool, b_right: bool) {
        match (a_right, b_right) {
            (true, false) => self.only_a += 1,
            (false, true) => self.only_b += 1,
            _ => {}
        }
    }

    pub fn merge(&mut self, other: Paired) {
        self.only_a += other.only_a;
        self.only_b += other.only_b;
    }

    /// A's accuracy minus B's, over `labeled` frames.
    pub fn difference(&self, labeled: u64) -> Option<f64> {
        (labeled > 0).then(|| (self.only_a as f64 - self.only_b as f64) / labeled as f64)
    }

    /// McNemar's exact two-sided test: how likely a split of the discordant frames at least
    /// this uneven is when A and B are equally accurate (each discordant frame a fair coin).
    /// 1 when no frame tells them apart.
    pub fn p_value(&self) -> f64 {
        let n = self.only_a + self.only_b;
        let fewer = self.only_a.min(self.only_b);
        match Binomial::new(0.5, n) {
            Ok(coin) if n > 0 => (2.0 * coin.cdf(fewer)).min(1.0),
            _ => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paired(only_a: u64, only_b: u64) -> Paired {
        Paired { only_a, only_b }
    }

    #[test]
    fn an_even_split_or_none_is_no_evidence() {
        assert_eq!(paired(0, 0).p_value(), 1.0);
        assert_eq!(paired(7, 7).p_value(), 1.0);
        assert_eq!(paired(3, 0).difference(0), None);
    }

    #[test]
    fn a_lopsided_split_is_unlikely_by_chance_either_way() {
        // All 10 discordant frames on one side: 2 × 2^-10.
        let p = paired(10, 0).p_value();
        assert!((p - 2.0 / 1024.0).abs() < 1e-12, "{p}");
        assert_eq!(p, paired(0, 10).p_value());
        // 12 against 19: 2 × P(Binomial(31, ½) ≤ 12) = 0.28104…
        let p = paired(12, 19).p_value();
        assert!((p - 0.28104).abs() < 1e-4, "{p}");
    }

    #[test]
    fn counts_only_the_frames_that_tell_the_two_apart() {
        let mut p = Paired::default();
        for (a, b) in [
            (true, true),
            (true, false),
            (false, true),
            (false, false),
            (true, false),
        ] {
            p.add(a, b);
        }
        assert_eq!(p, paired(2, 1));
        assert_eq!(p.difference(5), Some(0.2));
    }
}
