//! Frames as the search holds them in memory: per candidate cut and pooling a frames ×
//! features matrix, and per frame the backbone's answer, the ground truth and the stream rule's
//! signatures. `extract` fills one a few frames at a time; `fit` reads shards into one.
//! [`Columns`] says which feature columns a table holds: held-out frames hold only those the
//! search reads on them.

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

    /// A table of no frames, shaped like this one.
    pub fn empty_like(&self) -> FeatureTable {
        FeatureTable {
            columns: self
                .dims
                .iter()
                .map(|d| vec![Vec::new(); d.len()])
                .collect(),
            dims: self.dims.clone(),
            classes: self.classes,
            signatures: self
                .signatures
                .iter()
                .map(|s| Signatures {
                    values: Vec::new(),
                    ..s.clone()
                })
                .collect(),
            ..FeatureTable::default()
        }
    }

    /// Room for `frames` more frames, with the feature columns of `columns`, so that reading
    /// them allocates once.
    pub fn reserve(&mut self, frames: usize, columns: &Columns) {
        for (cut, (pools, dims)) in self.columns.iter_mut().zip(&self.dims).enumerate() {
            for (pool, (values, &d)) in pools.iter_mut().zip(dims).enumerate() {
                if columns.has(cut, pool) {
                    values.reserve_exact(frames * d);
                }
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

    /// Whether the table holds the features of `cut` under pooling `pool` for every frame.
    pub fn holds(&self, cut: usize, pool: usize) -> bool {
        let (values, d) = self.column(cut, pool);
        values.len() == self.frames() * d
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

/// Which feature columns to read or hold: per candidate cut, per pooling.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// `[cut][pool]`.
    wanted: Vec<Vec<bool>>,
}

impl Columns {
    /// Every column of a table of `dims`.
    pub fn all(dims: &[Vec<usize>]) -> Columns {
        Columns::matching(dims, |_, _| true)
    }

    /// No feature column: a frame's answers and signatures only.
    pub fn none(dims: &[Vec<usize>]) -> Columns {
        Columns::matching(dims, |_, _| false)
    }

    /// The columns of a table of `dims` for which `wanted(cut, pool)`.
    pub fn matching(dims: &[Vec<usize>], wanted: impl Fn(usize, usize) -> bool) -> Columns {
        Columns {
            wanted: dims
                .iter()
                .enumerate()
                .map(|(cut, pools)| (0..pools.len()).map(|pool| wanted(cut, pool)).collect())
                .collect(),
        }
    }

    pub fn has(&self, cut: usize, pool: usize) -> bool {
        self.wanted
            .get(cut)
            .and_then(|pools| pools.get(pool))
            .copied()
            .unwrap_or(false)
    }

    /// The values a frame holds in these columns of a table of `dims`.
    pub fn values(&self, dims: &[Vec<usize>]) -> usize {
        dims.iter()
            .enumerate()
            .flat_map(|(cut, pools)| pools.iter().enumerate().map(move |(p, &d)| (cut, p, d)))
            .filter(|&(cut, pool, _)| self.has(cut, pool))
            .map(|(_, _, d)| d)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_the_values_they_hold() {
        let dims = vec![vec![8, 32], vec![16]];
        assert_eq!(Columns::all(&dims).values(&dims), 56);
        assert_eq!(Columns::none(&dims).values(&dims), 0);
        let gap = Columns::matching(&dims, |_, pool| pool == 0);
        assert_eq!(gap.values(&dims), 24);
        assert!(gap.has(1, 0) && !gap.has(0, 1) && !gap.has(2, 0));
    }
}
