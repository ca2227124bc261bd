//! The stream rule of format 3: a frame whose picture has not changed since the last frame the
//! cascade ran leaves with that frame's answer, running no stage, at most `max_age` frames in
//! a row. A change detector compares cheap signatures of the two pictures: the means of the
//! input tensor over a grid of blocks, per channel. Block means average sensor noise away and
//! barely move under a one-pixel shake; an object that comes or goes moves them.
//!
//! The element, `evaluate` and the search's replay all decide through [`ReuseMemory`], on
//! signatures made by [`ReuseRule::signature`] from the same preprocessed tensor, so they
//! decide alike frame for frame.

use crate::input::{InputSpec, Layout};

/// How two signatures are compared. Adding a detector is one row here and its tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Mean absolute difference of the block means, in input-tensor units.
    Pixels,
    /// The same after each signature is standardised (mean 0, standard deviation 1): blind to
    /// a change of gain or offset, such as light drifting over the day.
    Shape,
}

impl Detector {
    pub const ALL: [Detector; 2] = [Detector::Pixels, Detector::Shape];

    /// The word `exits.yaml` names it by.
    pub fn word(self) -> &'static str {
        match self {
            Detector::Pixels => "pixels",
            Detector::Shape => "shape",
        }
    }

    /// How far apart two signatures of the same grid are; 0 for identical pictures.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Detector::Pixels => mean_abs_difference(a.iter().copied(), b.iter().copied()),
            Detector::Shape => {
                let (za, zb) = (Standardised::of(a), Standardised::of(b));
                mean_abs_difference(a.iter().map(|&x| za.at(x)), b.iter().map(|&x| zb.at(x)))
            }
        }
    }
}

fn mean_abs_difference(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>) -> f64 {
    let (sum, n) = a.zip(b).fold((0.0f64, 0usize), |(s, n), (x, y)| {
        (s + f64::from((x - y).abs()), n + 1)
    });
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// A signature's mean and spread, to standardise its values with.
struct Standardised {
    mean: f32,
    /// 1 / standard deviation; 0 for a flat picture, whose standardised values are all 0.
    inverse: f32,
}

impl Standardised {
    fn of(values: &[f32]) -> Standardised {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt();
        Standardised {
            mean: mean as f32,
            inverse: if sd > 1e-6 { (1.0 / sd) as f32 } else { 0.0 },
        }
    }

    fn at(&self, x: f32) -> f32 {
        (x - self.mean) * self.inverse
    }
}

/// A bundle's stream rule: `reuse:` in `exits.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReuseRule {
    pub detector: Detector,
    /// Blocks per side of the signature's grid.
    pub grid: u32,
    /// A frame may reuse the last answer when its distance to the last frame run is at most this.
    pub threshold: f64,
    /// Frames in a row that may reuse one answer; the next one runs the cascade.
    pub max_age: u32,
}

impl ReuseRule {
    /// The signature of a preprocessed input tensor of `spec` on the rule's grid.
    pub fn signature(&self, tensor: &[f32], spec: &InputSpec, out: &mut Vec<f32>) {
        signature(tensor, spec, self.grid, out);
    }

    /// Multiply-accumulates of the detector for one frame: every input value summed once, and
    /// the signatures compared.
    pub fn macs(&self, spec: &InputSpec) -> u64 {
        let values = u64::from(spec.width) * u64::from(spec.height);
        let channels = spec.color.channels() as u64;
        channels * (values + 2 * u64::from(self.grid) * u64::from(self.grid))
    }
}

/// The signature of a preprocessed input tensor of `spec`: grid × grid block means per channel,
/// channel-major. Block `b` of a side of `n` pixels holds pixels `p` with `p * grid / n == b`,
/// so every pixel counts once whatever the sizes.
pub fn signature(tensor: &[f32], spec: &InputSpec, grid: u32, out: &mut Vec<f32>) {
    let grid = grid.max(1) as usize;
    let (c, h, w) = (
        spec.color.channels(),
        spec.height as usize,
        spec.width as usize,
    );
    out.clear();
    out.resize(c * grid * grid, 0.0);
    let mut counts = vec![0u32; grid * grid];
    if tensor.len() < c * h * w {
        return;
    }
    for y in 0..h {
        let by = y * grid / h;
        for x in 0..w {
            let block = by * grid + x * grid / w;
            counts[block] += 1;
            for ch in 0..c {
                let i = match spec.layout {
                    Layout::Nchw => (ch * h + y) * w + x,
                    Layout::Nhwc => (y * w + x) * c + ch,
                };
                out[ch * grid * grid + block] += tensor[i];
            }
        }
    }
    for (k, v) in out.iter_mut().enumerate() {
        let n = counts[k % (grid * grid)];
        *v = if n == 0 { 0.0 } else { *v / n as f32 };
    }
}

/// What the stream rule remembers: the signature of the last frame the cascade ran, and how
/// many frames in a row have reused its answer since. Reset it where the stream state resets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReuseMemory {
    reference: Option<Vec<f32>>,
    age: u32,
}

impl ReuseMemory {
    /// Whether a frame of `signature` may leave with the last answer under `rule`.
    pub fn reusable(&self, rule: &ReuseRule, signature: &[f32]) -> bool {
        self.reference.as_ref().is_some_and(|r| {
            self.age < rule.max_age && rule.detector.distance(signature, r) <= rule.threshold
        })
    }

    /// Records a frame that reused the last answer; returns its age, in frames since the
    /// answer was computed.
    pub fn reused(&mut self) -> u32 {
        self.age += 1;
        self.age
    }

    /// Records a frame the cascade ran: the next frames compare against it.
    pub fn ran(&mut self, signature: &[f32]) {
        match &mut self.reference {
            Some(r) => {
                r.clear();
                r.extend_from_slice(signature);
            }
            None => self.reference = Some(signature.to_vec()),
        }
        self.age = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Color;

    fn spec(layout: Layout, color: Color, w: u32, h: u32) -> InputSpec {
        let c = color.channels();
        InputSpec {
            layout,
            width: w,
            height: h,
            color,
            mean: vec![0.0; c],
            std: vec![1.0; c],
        }
    }

    fn rule(detector: Detector, threshold: f64, max_age: u32) -> ReuseRule {
        ReuseRule {
            detector,
            grid: 2,
            threshold,
            max_age,
        }
    }

    #[test]
    fn signatures_are_block_means_in_either_layout() {
        // RGB, 4×2 pixels: channel c of column x is c * 100 + x.
        let s = spec(Layout::Nchw, Color::Rgb, 4, 2);
        let nchw: Vec<f32> = (0..3)
            .flat_map(|c| (0..2).flat_map(move |_| (0..4).map(move |x| (c * 100 + x) as f32)))
            .collect();
        let mut a = Vec::new();
        rule(Detector::Pixels, 0.0, 1).signature(&nchw, &s, &mut a);
        // Blocks: rows {0}, {1}; columns {0,1}, {2,3}.
        assert_eq!(&a[..4], &[0.5, 2.5, 0.5, 2.5]);
        assert_eq!(&a[8..], &[200.5, 202.5, 200.5, 202.5]);
        let s = spec(Layout::Nhwc, Color::Rgb, 4, 2);
        let nhwc: Vec<f32> = (0..2)
            .flat_map(|_| (0..4).flat_map(|x| (0..3).map(move |c| (c * 100 + x) as f32)))
            .collect();
        let mut b = Vec::new();
        rule(Detector::Pixels, 0.0, 1).signature(&nhwc, &s, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_grid_finer_than_the_picture_leaves_blocks_empty_not_undefined() {
        let s = spec(Layout::Nchw, Color::Gray, 1, 1);
        let mut sig = Vec::new();
        rule(Detector::Pixels, 0.0, 1).signature(&[7.0], &s, &mut sig);
        assert_eq!(sig, vec![7.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn shape_ignores_gain_and_offset_and_pixels_do_not() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let brighter: Vec<f32> = a.iter().map(|x| 1.1 * x + 5.0).collect();
        assert!(Detector::Shape.distance(&a, &brighter) < 1e-6);
        assert!(Detector::Pixels.distance(&a, &brighter) > 5.0);
        let other = [4.0, 3.0, 2.0, 1.0];
        assert!(Detector::Shape.distance(&a, &other) > 1.0);
        // A flat picture standardises to zeros rather than dividing by zero.
        assert!(Detector::Shape.distance(&[2.0; 4], &[3.0; 4]).abs() < 1e-9);
    }

    #[test]
    fn the_bundle_format_documents_every_detector() {
        let guide = include_str!("../../docs/bundle-format.md");
        for detector in Detector::ALL {
            let row = format!("| `{}` |", detector.word());
            assert!(
                guide.contains(&row),
                "docs/bundle-format.md has no row {row}"
            );
        }
    }

    #[test]
    fn memory_reuses_at_most_max_age_frames_in_a_row() {
        let r = rule(Detector::Pixels, 0.5, 2);
        let mut m = ReuseMemory::default();
        let same = [1.0f32, 1.0];
        assert!(!m.reusable(&r, &same), "nothing ran yet");
        m.ran(&same);
        assert!(m.reusable(&r, &same));
        assert_eq!(m.reused(), 1);
        assert!(m.reusable(&r, &[1.4, 1.4]));
        assert_eq!(m.reused(), 2);
        assert!(!m.reusable(&r, &same), "max_age reached");
        m.ran(&same);
        assert!(!m.reusable(&r, &[2.0, 2.0]), "the picture changed");
        assert!(!m.reusable(&r, &[f32::NAN, 1.0]), "NaN never reuses");
    }
}
