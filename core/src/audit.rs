//! The audit: a bundle's promise watched in deployment. A bundle is certified on the footage
//! it was searched on; a camera that moves, or a new camera, may see frames where its exits
//! are confidently wrong. The audit runs a sample of frames at full depth as well, compares,
//! and keeps bounds on the agreement the exits deliver over the last audited frames.
//!
//! It starts *verifying*: every frame is audited and answered at full depth, until the lower
//! bound reaches the promise (then *trusted*: frames leave early, a share of them audited) or
//! the upper bound falls below it (then *broken*, and a warning). A trusted bundle whose upper
//! bound falls below the promise is broken too. While broken, frames are answered at full
//! depth, unless the fallback is off, and every frame is audited, until the lower bound is
//! back at the promise.
//!
//! The element and `evaluate` both audit through [`Auditor`], which picks frames by a hash of
//! the seed and the frame's number, so that a fixed seed audits the same frames in both.

use std::collections::VecDeque;

/// How the audit runs: the element's `audit`, `audit-seed` and `audit-fallback`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditSettings {
    /// Share of trusted frames audited, in 0..=1; 0 turns the audit off.
    pub rate: f64,
    pub seed: u64,
    /// Whether frames are answered at full depth while the bundle is not trusted.
    pub fallback: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            rate: 0.05,
            seed: 0,
            fallback: true,
        }
    }
}

/// Audited frames the bounds count: the last ones, so that a scene that changes shows within
/// this many audits, and a scene that comes back is trusted again.
pub const WINDOW: usize = 200;

/// One-sided confidence of each bound.
pub const CONFIDENCE: f64 = 0.95;

/// Where the audit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditState {
    /// Not yet shown to keep the promise here: every frame audited.
    Verifying,
    /// Shown to keep it: a share of frames audited.
    Trusted,
    /// Shown not to keep it: every frame audited.
    Broken,
}

/// A change of state worth telling the application.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuditEvent {
    /// The agreement's upper bound fell below the promise.
    Broken {
        agreement: f64,
        upper: f64,
        promise: f64,
    },
    /// The agreement's lower bound reached the promise (again).
    Trusted {
        agreement: f64,
        lower: f64,
        promise: f64,
    },
}

/// The audit of one element or one `evaluate` run.
#[derive(Debug, Clone)]
pub struct Auditor {
    settings: AuditSettings,
    /// The agreement the bundle promises; the audit holds it to this.
    promise: f64,
    state: AuditState,
    /// Whether each of the last audited frames agreed with full depth, oldest first.
    window: VecDeque<bool>,
    agreeing: usize,
    /// Frames numbered since the start, for sampling.
    frame: u64,
    pub audited: u64,
    pub agreed: u64,
    /// Frames answered at full depth because the bundle was not trusted.
    pub fallbacks: u64,
}

impl Auditor {
    /// An audit holding a bundle to `promise` (its promised agreement).
    pub fn new(settings: AuditSettings, promise: f64) -> Auditor {
        Auditor {
            settings,
            promise,
            state: AuditState::Verifying,
            window: VecDeque::with_capacity(WINDOW),
            agreeing: 0,
            frame: 0,
            audited: 0,
            agreed: 0,
            fallbacks: 0,
        }
    }

    pub fn state(&self) -> AuditState {
        self.state
    }

    pub fn promise(&self) -> f64 {
        self.promise
    }

    /// Whether the next frame is audited: every frame unless trusted, else a share of them
    /// picked by a hash of the seed and the frame's number. Call once per frame, in order.
    pub fn next_frame(&mut self) -> bool {
        let n = self.frame;
        self.frame += 1;
        self.state != AuditState::Trusted
            || unit(splitmix(self.settings.seed ^ splitmix(n))) < self.settings.rate
    }

    /// Whether the frame just numbered is answered at full depth.
    pub fn falls_back(&self) -> bool {
        self.settings.fallback && self.state != AuditState::Trusted
    }

    /// Records an audited frame: whether the bundle's answer agreed with full depth.
    pub fn record(&mut self, agreed: bool) -> Option<AuditEvent> {
        self.audited += 1;
        self.agreed += u64::from(agreed);
        if self.window.len() == WINDOW && self.window.pop_front() == Some(true) {
            self.agreeing -= 1;
        }
        self.window.push_back(agreed);
        self.agreeing += usize::from(agreed);
        let (lower, upper) = bounds(self.agreeing, self.window.len());
        let (agreement, promise) = (self.window_agreement(), self.promise);
        match self.state {
            AuditState::Trusted | AuditState::Verifying if upper < promise => {
                self.state = AuditState::Broken;
                Some(AuditEvent::Broken {
                    agreement,
                    upper,
                    promise,
                })
            }
            AuditState::Verifying | AuditState::Broken if lower >= promise => {
                self.state = AuditState::Trusted;
                Some(AuditEvent::Trusted {
                    agreement,
                    lower,
                    promise,
                })
            }
            _ => None,
        }
    }

    /// Agreement over the audited frames in the window.
    pub fn window_agreement(&self) -> f64 {
        self.agreeing as f64 / self.window.len().max(1) as f64
    }

    /// The window: audited frames that agreed, and audited frames in all.
    pub fn window(&self) -> (usize, usize) {
        (self.agreeing, self.window.len())
    }

    /// The window's [`bounds`] on the agreement: (lower, upper).
    pub fn bounds(&self) -> (f64, f64) {
        bounds(self.agreeing, self.window.len())
    }
}

/// Clopper–Pearson bounds on an agreement rate, `agreeing` of `audits`, each one-sided at
/// [`CONFIDENCE`]: exact, so a handful of audits never claims more than it shows. (0, 1) with
/// no audit.
pub fn bounds(agreeing: usize, audits: usize) -> (f64, f64) {
    let (k, n) = (agreeing as f64, audits as f64);
    let lower = if k == 0.0 {
        0.0
    } else {
        beta_quantile(k, n - k + 1.0, 1.0 - CONFIDENCE).unwrap_or(0.0)
    };
    let upper = if k >= n {
        1.0
    } else {
        beta_quantile(k + 1.0, n - k, CONFIDENCE).unwrap_or(1.0)
    };
    (lower, upper)
}

fn beta_quantile(a: f64, b: f64, p: f64) -> Option<f64> {
    use statrs::distribution::{Beta, ContinuousCDF};
    Beta::new(a, b).ok().map(|d| d.inverse_cdf(p))
}

/// SplitMix64: a well-mixed hash of a 64-bit number, so that sampled frames have no pattern.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash as a number in 0..1.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auditor(rate: f64) -> Auditor {
        Auditor::new(
            AuditSettings {
                rate,
                seed: 7,
                fallback: true,
            },
            0.9,
        )
    }

    #[test]
    fn a_bundle_that_agrees_is_trusted_and_then_sampled() {
        let mut a = auditor(0.05);
        let mut events = Vec::new();
        for _ in 0..100 {
            assert!(a.next_frame(), "verifying audits every frame");
            assert!(a.falls_back());
            if let Some(e) = a.record(true) {
                events.push(e);
                break;
            }
        }
        // The exact bound reaches 0.9 after 29 agreeing frames in a row: 0.05^(1/29) > 0.9.
        assert_eq!(a.audited, 29);
        assert!(matches!(events[..], [AuditEvent::Trusted { .. }]));
        assert!(!a.falls_back());
        let sampled = (0..20_000).filter(|_| a.next_frame()).count();
        assert!((800..1200).contains(&sampled), "{sampled}");
    }

    #[test]
    fn a_bundle_that_disagrees_is_broken_within_a_few_audits_and_can_recover() {
        let mut a = auditor(0.05);
        let broken = (1..=20).find(|_| {
            a.next_frame();
            a.record(false).is_some()
        });
        // One disagreement in one audit is not evidence at 95%; two in two are (0.776 < 0.9).
        assert_eq!(broken, Some(2));
        assert_eq!(a.state(), AuditState::Broken);
        assert!(a.falls_back());
        // Agreeing frames bring the window's lower bound back to the promise.
        let back = (1..=WINDOW).find(|_| {
            a.next_frame();
            a.record(true).is_some()
        });
        assert!(back.is_some_and(|n| n > 20), "{back:?}");
        assert_eq!(a.state(), AuditState::Trusted);
        // Without the fallback the answers stay the bundle's, audited all the same.
        let mut off = Auditor::new(
            AuditSettings {
                fallback: false,
                ..AuditSettings::default()
            },
            0.9,
        );
        assert!(off.next_frame() && !off.falls_back());
    }

    #[test]
    fn the_same_seed_samples_the_same_frames() {
        let trusted = |seed| {
            let mut a = Auditor::new(
                AuditSettings {
                    rate: 0.1,
                    seed,
                    fallback: true,
                },
                0.0,
            );
            a.next_frame();
            a.record(true);
            (0..500).map(|_| a.next_frame()).collect::<Vec<bool>>()
        };
        assert_eq!(trusted(3), trusted(3));
        assert_ne!(trusted(3), trusted(4));
    }

    #[test]
    fn bounds_are_exact_binomial_ones() {
        let mut a = auditor(0.05);
        for i in 0..100 {
            a.record(i % 10 != 0);
        }
        // 90 of 100: the one-sided 95% Clopper–Pearson bounds.
        let (lower, upper) = a.bounds();
        assert!((lower - 0.8363).abs() < 1e-3, "{lower}");
        assert!((upper - 0.9446).abs() < 1e-3, "{upper}");
        let fresh = auditor(0.05);
        assert_eq!(fresh.bounds(), (0.0, 1.0));
    }
}
