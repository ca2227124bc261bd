//! Cost accounting: MACs a frame used (or, in the search, measured time), as a share of the
//! whole backbone's.

use crate::bundle::Bundle;

/// The MACs of each segment and each exit head of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct CostTable {
    segments: Vec<u64>,
    /// 0 where a stage has no exit.
    heads: Vec<u64>,
    backbone: u64,
    /// What every frame pays before any stage: the stream rule's change detector (0 without).
    detector: u64,
}

impl CostTable {
    /// The table, when the bundle gives every segment's and every head's MACs.
    pub fn from_bundle(bundle: &Bundle) -> Option<CostTable> {
        let segments = bundle.segment_macs()?;
        let heads = bundle
            .stages
            .iter()
            .map(|s| s.exit.as_ref().map_or(Some(0), |e| e.macs))
            .collect::<Option<Vec<u64>>>()?;
        let detector = bundle.reuse.as_ref().map_or(0, |r| r.macs(&bundle.input));
        Some(CostTable::new(segments, heads)?.with_detector(detector))
    }

    /// From per-stage MACs; `None` when the backbone counts no MACs at all, or more than a
    /// `u64` holds.
    pub fn new(segments: Vec<u64>, heads: Vec<u64>) -> Option<CostTable> {
        let backbone = segments
            .iter()
            .chain(&heads)
            .try_fold(0u64, |sum, m| sum.checked_add(*m))
            .map(|_| segments.iter().sum())?;
        CostTable::with_backbone(segments, heads, backbone)
    }

    /// From per-stage costs measured against a `backbone` timed on its own: measured pieces
    /// need not add up to the whole. `None` when `backbone` is 0 or the lengths differ.
    pub fn with_backbone(segments: Vec<u64>, heads: Vec<u64>, backbone: u64) -> Option<CostTable> {
        (backbone > 0 && heads.len() == segments.len()).then_some(CostTable {
            segments,
            heads,
            backbone,
            detector: 0,
        })
    }

    /// The same, with a change detector that every frame runs first.
    pub fn with_detector(self, detector: u64) -> CostTable {
        CostTable { detector, ..self }
    }

    pub fn backbone_macs(&self) -> u64 {
        self.backbone
    }

    /// MACs used by a frame that left at `stage`, having run the heads when `heads_ran`.
    pub fn macs(&self, stage: usize, heads_ran: bool) -> u64 {
        let segments: u64 = self.segments[..=stage].iter().sum();
        let heads: u64 = if heads_ran {
            self.heads[..=stage].iter().sum()
        } else {
            0
        };
        self.detector + segments + heads
    }

    /// The cost of a frame also run at full depth for the audit: every segment, the detector,
    /// and the heads up to `stage`, where the bundle's own answer left (none when `reused`).
    pub fn audited_cost(&self, stage: usize, reused: bool) -> f64 {
        let segments: u64 = self.segments.iter().sum();
        let heads: u64 = if reused {
            0
        } else {
            self.heads[..=stage.min(self.heads.len() - 1)].iter().sum()
        };
        (self.detector + segments + heads) as f64 / self.backbone as f64
    }

    /// The cost of a frame that reused the last answer: the detector alone.
    pub fn reused_cost(&self) -> f64 {
        self.detector as f64 / self.backbone as f64
    }

    /// [`macs`](Self::macs) divided by the backbone's MACs.
    pub fn cost(&self, stage: usize, heads_ran: bool) -> f64 {
        self.macs(stage, heads_ran) as f64 / self.backbone as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_segments_and_heads_run() {
        let t = CostTable::new(vec![40, 30, 30], vec![2, 1, 0]).unwrap();
        assert_eq!(t.backbone_macs(), 100);
        assert_eq!(t.cost(0, true), 0.42);
        assert_eq!(t.cost(1, true), 0.73);
        // Reaching the last stage ran every head: a little more than the backbone.
        assert_eq!(t.cost(2, true), 1.03);
        assert_eq!(t.cost(2, false), 1.0);
    }

    #[test]
    fn a_measured_backbone_is_the_denominator() {
        let t = CostTable::with_backbone(vec![60, 60], vec![10, 0], 100).unwrap();
        assert_eq!(t.cost(0, true), 0.7);
        assert_eq!(t.cost(1, false), 1.2);
        assert!(CostTable::with_backbone(vec![1], vec![0], 0).is_none());
    }

    #[test]
    fn a_detector_costs_every_frame_and_is_all_a_reused_one_costs() {
        let t = CostTable::new(vec![60, 40], vec![10, 0])
            .unwrap()
            .with_detector(5);
        assert_eq!(t.cost(0, true), 0.75);
        assert_eq!(t.cost(1, false), 1.05);
        assert_eq!(t.reused_cost(), 0.05);
        // Audited after leaving at stage 0: every segment, head 0 and the detector.
        assert_eq!(t.audited_cost(0, false), 1.15);
        assert_eq!(t.audited_cost(0, true), 1.05);
    }

    #[test]
    fn no_macs_no_cost() {
        assert!(CostTable::new(vec![0, 0], vec![0, 0]).is_none());
    }
}
