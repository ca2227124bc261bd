//! Frames as the search holds them in memory: per candidate cut and pooling a frames ×
//! features matrix, and per frame the backbone's answer, the ground truth and the stream rule's
//! signatures. `extract` fills one a few frames at a time; `fit` reads shards into one.

/// Frames, as the search keeps them: per candidate cut and pooling a row-major
/// frames × features matrix, and per frame the backbone's answer and the ground truth.
#[derive(Default)]
pub struct FeatureTable {
    /// `[cut][pool]`: frames × `dims[cut][pool]` values.
    pub columns: Vec<Vec<Vec<f32>>>,
    pub dims: Vec<Vec<usize>>,
    /// The full backbone's class per frame.
    pub teacher: Vec<u32>,
    /// The full backbone's probabilities, frames × classes (soft targets for distillation).
    pub soft: Vec<f32>,
    pub labels: Vec<Option<u32>>,
    pub classes: usize,
    /// Per frame, the stream rule's signatures of its input tensor, on each grid a detector
    /// reads ([`Detector::grid`]).
    pub signatures: Vec<Signatures>,
}

/// Signatures of every frame on one grid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signatures {
    pub grid: u32,
    /// Values per frame.
    pub len: usize,
    /// frames × `len` values.
    pub values: Vec<f32>,
}

impl FeatureTable {
    pub fn frames(&self) -> usize {
        self.teacher.len()
    }

    /// Room for `frames` more frames, so that reading them allocates once.
    pub fn reserve(&mut self, frames: usize) {
        for (pools, dims) in self.columns.iter_mut().zip(&self.dims) {
            for (values, &d) in pools.iter_mut().zip(dims) {
                values.reserve_exact(frames * d);
            }
        }
        self.teacher.reserve_exact(frames);
        self.labels.reserve_exact(frames);
        self.soft.reserve_exact(frames * self.classes);
        for s in &mut self.signatures {
            s.values.reserve_exact(frames * s.len);
        }
    }

    /// Ground truth for every frame, when every frame has it.
    pub fn all_labels(&self) -> Option<Vec<u32>> {
        self.labels.iter().copied().collect()
    }

    /// Features of `cut` under pooling `pool` (an index into [`POOLS`]).
    pub fn column(&self, cut: usize, pool: usize) -> (&[f32], usize) {
        (&self.columns[cut][pool], self.dims[cut][pool])
    }

    /// Frame `i`'s signature on `grid`, one of the grids the table was made with: the search
    /// makes its rules on those grids alone ([`Detector::grid`] of the same input).
    pub fn signature(&self, grid: u32, i: usize) -> &[f32] {
        let s = self
            .signatures
            .iter()
            .find(|s| s.grid == grid)
            .expect("rules are made on the grids the feature table keeps");
        &s.values[i * s.len..(i + 1) * s.len]
    }
}
