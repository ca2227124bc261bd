//! The processing time the element reports in the LATENCY query, so that a sink with
//! `sync=true` allows for it instead of finding every frame late.

/// Frames over which the slowest is taken before the reported latency is reconsidered.
pub const WINDOW: u32 = 64;

/// What the element reports, the slowest frame of the current window, and the time a frame
/// usually takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    reported_ns: u64,
    window_max_ns: u64,
    seen: u32,
    typical_ns: Option<u64>,
}

impl Latency {
    /// Starts from a measured worst case: a frame through every segment and head.
    pub fn new(initial_ns: u64) -> Latency {
        Latency {
            reported_ns: initial_ns,
            window_max_ns: 0,
            seen: 0,
            typical_ns: None,
        }
    }

    pub fn reported_ns(&self) -> u64 {
        self.reported_ns
    }

    /// A moving average of the frames' processing times (each new frame weighs 1/8): what the
    /// next frame will likely take, where the report is what it may take at worst. It starts at
    /// the first measured frame (the report until then): frames judged late are answered in a
    /// hurry and not recorded, so from the worst case it would come down only slowly.
    pub fn typical_ns(&self) -> u64 {
        self.typical_ns.unwrap_or(self.reported_ns)
    }

    /// Records one frame's processing time, and says when the reported latency changed, for
    /// the element to post a LATENCY message. A frame slower than the report by more than a
    /// quarter raises it at once: frames later than the pipeline allows are degraded or late
    /// at the sink. At the end of each window the report comes down to the window's slowest
    /// frame when that is faster by more than a quarter.
    pub fn record(&mut self, ns: u64) -> bool {
        self.typical_ns = Some(self.typical_ns.map_or(ns, |t| t - t / 8 + ns / 8));
        if ns > self.reported_ns.saturating_mul(5) / 4 {
            self.reported_ns = ns;
            self.window_max_ns = 0;
            self.seen = 0;
            return true;
        }
        self.window_max_ns = self.window_max_ns.max(ns);
        self.seen += 1;
        if self.seen < WINDOW {
            return false;
        }
        let slowest = std::mem::take(&mut self.window_max_ns);
        self.seen = 0;
        let (lo, hi) = (
            self.reported_ns.saturating_mul(3) / 4,
            self.reported_ns.saturating_mul(5) / 4,
        );
        let changed = slowest < lo || slowest > hi;
        if changed {
            self.reported_ns = slowest;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_rises_at_once_and_falls_to_a_windows_slowest_frame() {
        let mut l = Latency::new(1000);
        // Within a quarter: unchanged.
        assert!(!(0..WINDOW).any(|_| l.record(1200)));
        assert_eq!(l.reported_ns(), 1000);
        // A slower frame: at once.
        assert!(!l.record(900));
        assert!(l.record(3000));
        assert_eq!(l.reported_ns(), 3000);
        // Lighter: down to the new slowest.
        assert!((0..WINDOW).map(|_| l.record(1000)).last().unwrap());
        assert_eq!(l.reported_ns(), 1000);
    }

    #[test]
    fn the_typical_time_follows_the_frames_not_the_slowest() {
        let mut l = Latency::new(16_000);
        assert_eq!(
            l.typical_ns(),
            16_000,
            "the worst case until a frame is measured"
        );
        l.record(8_000);
        assert_eq!(l.typical_ns(), 8_000, "then the frames");
        for _ in 0..50 {
            l.record(6_000);
        }
        assert!(l.typical_ns().abs_diff(6_000) < 100, "{}", l.typical_ns());
        l.record(40_000);
        assert_eq!(l.reported_ns(), 40_000);
        assert!(l.typical_ns() < 11_000, "one slow frame moves it by 1/8");
    }
}
