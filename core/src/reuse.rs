//! The stream rule of format 3: a frame whose picture has not changed since the last frame the
//! cascade ran leaves with that frame's answer, running no stage, at most `max_age` frames in
//! a row. A change detector compares cheap signatures of the two pictures: the means of the
//! input tensor over a grid of blocks, per channel. Block means average sensor noise away; an
//! object that comes or goes moves them.
//!
//! The element, `evaluate` and the search's replay all decide through [`ReuseMemory`], on
//! signatures made by a [`Signer`] from the same preprocessed tensor, so they
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
    /// The least mean absolute difference over alignments that move one signature by up to
    /// [`SHIFT`] blocks along each side, on a grid fine enough to see a pixel's shake: blind to a
    /// camera that shakes, which moves every edge of a still scene and so every block mean of
    /// a coarse grid.
    Shifted,
}

/// Blocks either way along each side that [`Detector::Shifted`] aligns two signatures by: a
/// shake of one pixel either way moves two frames apart by up to two.
pub const SHIFT: usize = 2;

/// Every alignment (dy, dx) within [`SHIFT`] blocks either way, nearest first: the order
/// [`Detector::Shifted`] tries them in, so that a still scene's is found early and the rest
/// are abandoned soon.
const ALIGNMENTS: [(isize, isize); 25] = [
    (0, 0),
    (-1, 0),
    (0, -1),
    (0, 1),
    (1, 0),
    (-2, 0),
    (-1, -1),
    (-1, 1),
    (0, -2),
    (0, 2),
    (1, -1),
    (1, 1),
    (2, 0),
    (-2, -1),
    (-2, 1),
    (-1, -2),
    (-1, 2),
    (1, -2),
    (1, 2),
    (2, -1),
    (2, 1),
    (-2, -2),
    (-2, 2),
    (2, -2),
    (2, 2),
];

impl Detector {
    pub const ALL: [Detector; 3] = [Detector::Pixels, Detector::Shape, Detector::Shifted];

    /// The word `exits.yaml` names it by.
    pub fn word(self) -> &'static str {
        match self {
            Detector::Pixels => "pixels",
            Detector::Shape => "shape",
            Detector::Shifted => "shifted",
        }
    }

    /// Blocks per side of the signatures the search compares pictures of `spec` on: 8 × 8
    /// blocks smooth sensor noise and shake, and still see an object come or go; the aligning
    /// detector reads up to 32 × 32, down to the pixel on small pictures, and aligns away the
    /// shake instead.
    pub fn grid(self, spec: &InputSpec) -> u32 {
        let side = spec.width.min(spec.height).max(1);
        match self {
            Detector::Pixels | Detector::Shape => 8,
            Detector::Shifted => side.min(32),
        }
    }

    /// How far apart two signatures on a `grid` × `grid` grid are; 0 for identical pictures.
    pub fn distance(self, grid: u32, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Detector::Pixels => mean_abs_difference(a.iter().copied(), b.iter().copied()),
            Detector::Shape => {
                let (za, zb) = (Standardised::of(a), Standardised::of(b));
                mean_abs_difference(a.iter().map(|&x| za.at(x)), b.iter().map(|&x| zb.at(x)))
            }
            Detector::Shifted => aligned_difference(grid as usize, a, b, f64::INFINITY),
        }
    }

    /// Whether two signatures are at most `threshold` apart: [`Detector::distance`], stopping
    /// as soon as the answer is known.
    pub fn within(self, grid: u32, a: &[f32], b: &[f32], threshold: f64) -> bool {
        match self {
            Detector::Shifted => aligned_difference(grid as usize, a, b, threshold) <= threshold,
            _ => self.distance(grid, a, b) <= threshold,
        }
    }

    /// Comparisons per signature value when two signatures are compared.
    fn comparisons(self, grid: u32) -> u64 {
        match self {
            Detector::Pixels | Detector::Shape => 2,
            Detector::Shifted => {
                let reach = SHIFT.min(grid.max(1) as usize - 1) as u64;
                (2 * reach + 1).pow(2)
            }
        }
    }
}

/// The least, over alignments (dy, dx) within [`SHIFT`] blocks, of the mean absolute
/// difference of `a` moved by (dy, dx) and `b`, over the blocks both cover, all channels
/// (signatures channel-major on a `grid` × `grid` grid). Alignments nearest first; one whose
/// running sum already exceeds `stop` (or the best so far) is abandoned, as it cannot be the
/// least below it. Unequal lengths compare as infinitely far; NaN values never compare close.
fn aligned_difference(grid: usize, a: &[f32], b: &[f32], stop: f64) -> f64 {
    let cells = grid * grid;
    if grid == 0 || a.len() != b.len() || a.is_empty() || !a.len().is_multiple_of(cells) {
        return f64::INFINITY;
    }
    let channels = a.len() / cells;
    let reach = SHIFT.min(grid - 1) as isize;
    let g = grid as isize;
    let mut best = f64::INFINITY;
    let within_reach = |&&(dy, dx): &&(isize, isize)| dy.abs() <= reach && dx.abs() <= reach;
    for &(dy, dx) in ALIGNMENTS.iter().filter(within_reach) {
        let (rows, cols) = ((g - dy.abs()) as usize, (g - dx.abs()) as usize);
        let n = (channels * rows * cols) as f64;
        let limit = best.min(stop) * n;
        let mut sum = 0.0f64;
        'rows: for c in 0..channels {
            for y in 0..rows {
                let (ya, yb) = (y as isize + dy.max(0), y as isize - dy.min(0));
                let ra = c * cells + ya as usize * grid;
                let rb = c * cells + yb as usize * grid;
                let (xa, xb) = (dx.max(0) as usize, (-dx.min(0)) as usize);
                let row: f32 = a[ra + xa..ra + xa + cols]
                    .iter()
                    .zip(&b[rb + xb..rb + xb + cols])
                    .map(|(x, y)| (x - y).abs())
                    .sum();
                sum += f64::from(row);
                // NaN fails every comparison; carry it through rather than abandon on it.
                if sum > limit {
                    break 'rows;
                }
            }
        }
        let mean = sum / n;
        if mean.is_nan() {
            return f64::NAN;
        }
        if mean < best {
            best = mean;
        }
    }
    best
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
    /// What makes this rule's signatures of pictures of `spec`.
    pub fn signer(&self, spec: &InputSpec) -> Signer {
        Signer::new(spec, self.grid)
    }

    /// Multiply-accumulates of the detector for one frame: every input value summed once, and
    /// the signatures compared.
    pub fn macs(&self, spec: &InputSpec) -> u64 {
        let values = u64::from(spec.width) * u64::from(spec.height);
        let channels = spec.color.channels() as u64;
        let cells = u64::from(self.grid) * u64::from(self.grid);
        channels * (values + self.detector.comparisons(self.grid) * cells)
    }
}

/// Makes signatures of preprocessed input tensors of one input on one grid: grid × grid block
/// means per channel, channel-major. Block `b` of a side of `n` pixels holds pixels `p` with
/// `p * grid / n == b`, so every pixel counts once whatever the sizes; a block with no pixel
/// has mean 0. Which block each row and column falls in, and how many pixels each block holds,
/// are worked out once, not on every frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Signer {
    grid: u32,
    layout: Layout,
    channels: usize,
    /// The block row of each pixel row, and the block column of each pixel column.
    row_block: Vec<usize>,
    column_block: Vec<usize>,
    /// Pixels per block, row-major.
    counts: Vec<u32>,
}

impl Signer {
    pub fn new(spec: &InputSpec, grid: u32) -> Signer {
        let g = grid.max(1) as usize;
        let (h, w) = (spec.height as usize, spec.width as usize);
        let row_block: Vec<usize> = (0..h).map(|y| y * g / h).collect();
        let column_block: Vec<usize> = (0..w).map(|x| x * g / w).collect();
        let mut counts = vec![0u32; g * g];
        for by in &row_block {
            for bx in &column_block {
                counts[by * g + bx] += 1;
            }
        }
        Signer {
            grid,
            layout: spec.layout,
            channels: spec.color.channels(),
            row_block,
            column_block,
            counts,
        }
    }

    pub fn grid(&self) -> u32 {
        self.grid
    }

    /// Values in a signature: a mean per channel and block.
    pub fn values(&self) -> usize {
        self.channels * self.counts.len()
    }

    /// The signature of `tensor` into `out`; all zeros for a tensor shorter than the input.
    pub fn sign(&self, tensor: &[f32], out: &mut Vec<f32>) {
        let cells = self.counts.len();
        let g = self.grid.max(1) as usize;
        let (c, h, w) = (self.channels, self.row_block.len(), self.column_block.len());
        out.clear();
        out.resize(c * cells, 0.0);
        if tensor.len() < c * h * w {
            return;
        }
        for (y, by) in self.row_block.iter().enumerate() {
            for (x, bx) in self.column_block.iter().enumerate() {
                let block = by * g + bx;
                for ch in 0..c {
                    let i = match self.layout {
                        Layout::Nchw => (ch * h + y) * w + x,
                        Layout::Nhwc => (y * w + x) * c + ch,
                    };
                    out[ch * cells + block] += tensor[i];
                }
            }
        }
        for (k, v) in out.iter_mut().enumerate() {
            let n = self.counts[k % cells];
            *v = if n == 0 { 0.0 } else { *v / n as f32 };
        }
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
            self.age < rule.max_age
                && rule
                    .detector
                    .within(rule.grid, signature, r, rule.threshold)
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
        rule(Detector::Pixels, 0.0, 1)
            .signer(&s)
            .sign(&nchw, &mut a);
        // Blocks: rows {0}, {1}; columns {0,1}, {2,3}.
        assert_eq!(&a[..4], &[0.5, 2.5, 0.5, 2.5]);
        assert_eq!(&a[8..], &[200.5, 202.5, 200.5, 202.5]);
        let s = spec(Layout::Nhwc, Color::Rgb, 4, 2);
        let nhwc: Vec<f32> = (0..2)
            .flat_map(|_| (0..4).flat_map(|x| (0..3).map(move |c| (c * 100 + x) as f32)))
            .collect();
        let mut b = Vec::new();
        rule(Detector::Pixels, 0.0, 1)
            .signer(&s)
            .sign(&nhwc, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_grid_finer_than_the_picture_leaves_blocks_empty_not_undefined() {
        let s = spec(Layout::Nchw, Color::Gray, 1, 1);
        let mut sig = Vec::new();
        rule(Detector::Pixels, 0.0, 1)
            .signer(&s)
            .sign(&[7.0], &mut sig);
        assert_eq!(sig, vec![7.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn shape_ignores_gain_and_offset_and_pixels_do_not() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let brighter: Vec<f32> = a.iter().map(|x| 1.1 * x + 5.0).collect();
        assert!(Detector::Shape.distance(2, &a, &brighter) < 1e-6);
        assert!(Detector::Pixels.distance(2, &a, &brighter) > 5.0);
        let other = [4.0, 3.0, 2.0, 1.0];
        assert!(Detector::Shape.distance(2, &a, &other) > 1.0);
        // A flat picture standardises to zeros rather than dividing by zero.
        assert!(Detector::Shape.distance(2, &[2.0; 4], &[3.0; 4]).abs() < 1e-9);
    }

    /// A 12 × 12 picture with a bright square whose corner is at (`y`, `x`).
    fn square_at(y: usize, x: usize) -> Vec<f32> {
        let mut p = vec![0.0f32; 144];
        for row in y..y + 4 {
            for col in x..x + 4 {
                p[row * 12 + col] = 1.0;
            }
        }
        p
    }

    #[test]
    fn shifted_aligns_a_shake_away_and_still_sees_a_change() {
        let (still, shaken) = (square_at(4, 4), square_at(6, 3));
        assert_eq!(Detector::Shifted.distance(12, &still, &shaken), 0.0);
        assert!(Detector::Pixels.distance(12, &still, &shaken) > 0.1);
        // Farther than SHIFT blocks is no longer a shake.
        assert!(Detector::Shifted.distance(12, &still, &square_at(4, 7)) > 0.0);
        let gone = vec![0.0f32; 144];
        let d = Detector::Shifted.distance(12, &still, &gone);
        assert!(d > 0.05, "{d}");
        // Two channels: both must align.
        let two = |p: &[f32], q: &[f32]| [p, q].concat();
        assert_eq!(
            Detector::Shifted.distance(12, &two(&still, &gone), &two(&shaken, &gone)),
            0.0
        );
        assert!(Detector::Shifted.distance(12, &two(&still, &gone), &two(&still, &still)) > 0.0);
        // A grid of one block has nothing to align; mismatched lengths never compare close.
        assert_eq!(Detector::Shifted.distance(1, &[1.0], &[3.0]), 2.0);
        assert!(
            Detector::Shifted
                .distance(12, &still, &[0.0; 4])
                .is_infinite()
        );
        assert!(
            Detector::Shifted
                .distance(2, &[f32::NAN, 0.0, 0.0, 0.0], &[0.0; 4])
                .is_nan()
        );
    }

    #[test]
    fn alignments_are_every_one_within_shift_once_nearest_first() {
        let reach = SHIFT as isize;
        let mut every: Vec<(isize, isize)> = (-reach..=reach)
            .flat_map(|dy| (-reach..=reach).map(move |dx| (dy, dx)))
            .collect();
        let mut table = ALIGNMENTS.to_vec();
        assert!(
            table
                .windows(2)
                .all(|p| p[0].0.abs() + p[0].1.abs() <= p[1].0.abs() + p[1].1.abs())
        );
        every.sort_unstable();
        table.sort_unstable();
        assert_eq!(table, every);
    }

    #[test]
    fn within_decides_as_the_distance_does() {
        let pictures = [
            square_at(4, 4),
            square_at(6, 3),
            square_at(0, 8),
            vec![0.5; 144],
        ];
        for detector in Detector::ALL {
            for a in &pictures {
                for b in &pictures {
                    let d = detector.distance(12, a, b);
                    for t in [0.0, d * 0.999, d, d * 1.001, 0.3] {
                        assert_eq!(detector.within(12, a, b, t), d <= t, "{detector:?} {d} {t}");
                    }
                }
            }
        }
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
