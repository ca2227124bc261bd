//! Cross-fitting: the training frames cut into folds, a head trained once per fold on the other
//! folds and once on them all. Each training frame then has the outputs of a head that never
//! saw it (out of fold), so exit rules and structures are chosen on every training frame, and
//! no held-out frame is spent choosing; the bundle ships the head trained on them all.

use std::ops::Range;

use anyhow::{Result, bail};

use crate::heads::TrainedHead;
use crate::outputs::ExitOutputs;
use crate::table::FeatureTable;
use earlyexit::rule::Signals;

/// Folds the training frames are cut into. Each fold's head learns from half the frames; more
/// folds would train heads closer to the shipped one, at a training time that grows with them.
pub const FOLDS: usize = 2;

/// The memory, in bytes, that the trainings of one head may take together, besides the
/// frames: [`CrossFitted::train`] runs fewer side by side when each takes more.
pub const TRAINING_MEMORY: usize = 1_000_000_000;

/// Which fold each training frame is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folds {
    /// Per training frame.
    of: Vec<usize>,
    count: usize,
}

/// Where one footage's training frames, as the search holds them, sit in its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Its rows of the training table, in time.
    pub rows: Range<usize>,
    /// Each row's place among the footage's training frames: `0..rows.len()` when the search
    /// holds them all, else the places of those it sampled.
    pub places: Vec<usize>,
    /// The footage's training frames in all, held or not.
    pub frames: usize,
}

impl Timeline {
    /// A footage whose training frames the search holds all of, at `rows`.
    #[cfg(test)]
    pub fn whole(rows: Range<usize>) -> Timeline {
        Timeline {
            places: (0..rows.len()).collect(),
            frames: rows.len(),
            rows,
        }
    }
}

impl Folds {
    /// Each footage's training frames cut into `count` stretches of its time, the first in
    /// fold 0: neighbouring frames are near copies of one scene, so a fold holds whole
    /// stretches rather than every `count`-th frame, and a head is scored on scenes it did not
    /// learn from, of every camera. A frame's fold follows from its place in the footage, not
    /// from which frames the search sampled, so footage repeated under another id (or the same
    /// scene filmed twice) puts each frame's copies in one fold whatever was sampled of each:
    /// else a head would be scored on copies of what it learned.
    pub fn in_time(footage: &[Timeline], count: usize) -> Folds {
        let frames = footage.iter().map(|f| f.rows.end).max().unwrap_or(0);
        let mut of = vec![0; frames];
        for f in footage {
            for (row, place) in f.rows.clone().zip(&f.places) {
                of[row] = place * count / f.frames;
            }
        }
        Folds { of, count }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The frames outside fold `k`: what its head learns from.
    pub fn training_rows(&self, k: usize) -> Vec<usize> {
        (0..self.of.len()).filter(|&i| self.of[i] != k).collect()
    }

    /// That every fold holds a frame and leaves one to learn from: else out-of-fold outputs
    /// cannot be had.
    pub fn check(&self) -> Result<()> {
        let sizes: Vec<usize> = (0..self.count)
            .map(|k| self.of.iter().filter(|&&f| f == k).count())
            .collect();
        if self.count < 2 || sizes.contains(&0) {
            bail!(
                "too few training frames to cross-fit heads over {} folds: {} in all",
                self.count,
                self.of.len()
            );
        }
        Ok(())
    }
}

/// A head trained on every training frame, and one per fold trained on the other folds.
#[derive(Debug, Clone)]
pub struct CrossFitted {
    /// What the bundle ships.
    pub head: TrainedHead,
    /// `folds[k]` never saw fold `k`.
    pub folds: Vec<TrainedHead>,
}

impl CrossFitted {
    /// Trains `fit` on every fold's complement, and on every frame. A head's training keeps
    /// about one core busy, so the trainings run side by side, as many at once as fit in
    /// [`TRAINING_MEMORY`] when each takes `memory` bytes, and one at a time beyond: a wide
    /// head over many classes needs hundreds of MB. `fit` takes the rows to learn from (None
    /// for all) and an index (0 for all, else the fold's, from 1), so that each fold may draw
    /// its own seed; the heads do not depend on how many ran at once.
    pub fn train(
        folds: &Folds,
        memory: usize,
        fit: impl Fn(Option<&[usize]>, usize) -> Result<TrainedHead> + Sync,
    ) -> Result<CrossFitted> {
        let rows: Vec<Vec<usize>> = (0..folds.count()).map(|k| folds.training_rows(k)).collect();
        let jobs: Vec<Option<&[usize]>> = std::iter::once(None)
            .chain(rows.iter().map(|r| Some(r.as_slice())))
            .collect();
        let at_once = (TRAINING_MEMORY / memory.max(1)).clamp(1, jobs.len());
        let fit = &fit;
        let mut trained = Vec::with_capacity(jobs.len());
        for (c, chunk) in jobs.chunks(at_once).enumerate() {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, &rows)| scope.spawn(move || fit(rows, c * at_once + i)))
                    .collect();
                trained.extend(handles.into_iter().map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                }));
            });
        }
        let mut heads = trained.into_iter().collect::<Result<Vec<_>>>()?.into_iter();
        let Some(head) = heads.next() else {
            bail!("no head was trained");
        };
        Ok(CrossFitted {
            head,
            folds: heads.collect(),
        })
    }

    /// The ensemble of `members`, fold by fold.
    pub fn ensemble(members: &[&CrossFitted]) -> CrossFitted {
        let folds = members.first().map_or(0, |m| m.folds.len());
        CrossFitted {
            head: TrainedHead::ensemble(members.iter().map(|m| m.head.clone()).collect()),
            folds: (0..folds)
                .map(|k| {
                    TrainedHead::ensemble(members.iter().map(|m| m.folds[k].clone()).collect())
                })
                .collect(),
        }
    }

    /// What the heads say of every frame of the training table `table` at candidate cut
    /// `cut`, each frame answered by the head of its own fold, which never saw it.
    pub fn out_of_fold(
        &self,
        table: &FeatureTable,
        folds: &Folds,
        cut: usize,
    ) -> Result<ExitOutputs> {
        let classes = self.head.classes;
        let probabilities = self
            .folds
            .iter()
            .map(|h| h.probabilities(table, cut))
            .collect::<Result<Vec<_>>>()?;
        let mut outputs = ExitOutputs::default();
        for (i, &k) in folds.of.iter().enumerate().take(table.frames()) {
            outputs.push(&Signals::of(
                &probabilities[k][i * classes..(i + 1) * classes],
            ));
        }
        Ok(outputs)
    }
}

/// The rows `rows` of `values`, `width` values a row.
pub fn gather<T: Copy>(values: &[T], width: usize, rows: &[usize]) -> Vec<T> {
    rows.iter()
        .flat_map(|&r| &values[r * width..(r + 1) * width])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_cut_each_footage_in_time() {
        let folds = Folds::in_time(&[Timeline::whole(0..4), Timeline::whole(4..10)], 2);
        assert_eq!(folds.of, vec![0, 0, 1, 1, 0, 0, 0, 1, 1, 1]);
        assert_eq!(folds.training_rows(1), vec![0, 1, 4, 5, 6]);
        assert!(folds.check().is_ok());
        let thirds = Folds::in_time(&[Timeline::whole(0..6)], 3);
        assert_eq!(thirds.of, vec![0, 0, 1, 1, 2, 2]);
    }

    /// Two copies of a footage of 8 training frames, each sampled differently: a frame's
    /// copies share a fold, which their places in the held rows would not give.
    #[test]
    fn a_sampled_frame_keeps_the_fold_of_its_place_in_the_footage() {
        let sampled = |rows: Range<usize>, places: Vec<usize>| Timeline {
            rows,
            places,
            frames: 8,
        };
        let folds = Folds::in_time(
            &[
                sampled(0..3, vec![0, 1, 5]),
                sampled(3..7, vec![4, 5, 6, 7]),
            ],
            2,
        );
        assert_eq!(folds.of, vec![0, 0, 1, 1, 1, 1, 1]);
        // Frame 5 of each copy: fold 1 in both.
        assert_eq!((folds.of[2], folds.of[4]), (1, 1));
    }

    #[test]
    fn too_few_frames_for_the_folds_are_refused() {
        let err = Folds::in_time(&[Timeline::whole(0..1)], 2)
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("1 in all"), "{err}");
        assert!(Folds::in_time(&[], 2).check().is_err());
    }

    /// Trains the three heads of two folds on a small problem, `memory` bytes each, and
    /// returns them with the most trainings that ran at once.
    fn trained_at(memory: usize) -> (Vec<earlyexit_graph::heads::HeadSpec>, usize) {
        use crate::heads::{HeadKind, Targets, Training, train};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (n, d) = (60, 4);
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 13) % 11) as f32).collect();
        let y: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let folds = Folds::in_time(&[Timeline::whole(0..n)], 2);
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let head = CrossFitted::train(&folds, memory, |rows, k| {
            most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            // Wait for the others, if they run at once, so that a loaded machine cannot
            // start them apart.
            let start = std::time::Instant::now();
            while running.load(Ordering::SeqCst) < 3 && start.elapsed().as_millis() < 500 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let rows: Vec<usize> = rows.map_or_else(|| (0..n).collect(), <[usize]>::to_vec);
            let training = Training {
                seed: k as u64,
                ..Training::default()
            };
            let (x, y) = (gather(&x, d, &rows), gather(&y, 1, &rows));
            let head = train(HeadKind::LinearGap, &x, d, Targets::Hard(&y), 3, &training);
            running.fetch_sub(1, Ordering::SeqCst);
            head
        })
        .unwrap();
        let specs = std::iter::once(&head.head)
            .chain(&head.folds)
            .map(|h| h.spec())
            .collect();
        (specs, most.into_inner())
    }

    #[test]
    fn trainings_run_side_by_side_only_while_they_fit_and_train_the_same_heads() {
        let (side_by_side, most) = trained_at(1);
        assert_eq!(most, 3);
        let (two, most) = trained_at(TRAINING_MEMORY / 2);
        assert_eq!(most, 2);
        let (alone, most) = trained_at(TRAINING_MEMORY);
        assert_eq!(most, 1);
        assert_eq!(side_by_side, alone);
        assert_eq!(side_by_side, two);
        // Each fold's head learned from other frames, with another seed.
        assert_ne!(side_by_side[1], side_by_side[2]);
    }

    #[test]
    fn gather_takes_whole_rows() {
        assert_eq!(gather(&[1, 2, 3, 4, 5, 6], 2, &[2, 0]), vec![5, 6, 1, 2]);
    }
}
