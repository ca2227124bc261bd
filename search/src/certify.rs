//! Certificates: a lower confidence bound on a rate measured on held-out frames that nothing
//! was fitted on (or an upper one on a mean loss), tested along a path, and how many frames a
//! target out of reach would need. Neighbouring frames are correlated, so they count as fewer
//! independent samples: the effective sample size shrinks with the failures' autocorrelation.

use statrs::distribution::{Beta, ContinuousCDF, Normal};

/// The longest lag whose correlation the effective sample sizes count: each lag costs a pass
/// over the frames, so archive-length footage stays linear in its frames. Correlation that
/// lasts longer still counts up to here: at most one independent sample per 2 × MAX_LAG frames
/// (about five minutes at 25 fps).
const MAX_LAG: usize = 4096;

/// Independent samples that per-frame `x` (in time order) are worth: n / (1 + 2 Σ ρ_k),
/// summing the autocorrelations while they stay positive (Geyer's initial positive sequence).
/// Never more than n, never less than 1.
pub fn effective_samples_of(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return n as f64;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    if var == 0.0 {
        return n as f64;
    }
    let mut sum = 0.0;
    for lag in 1..(n / 2).min(MAX_LAG) {
        let cov = x[..n - lag]
            .iter()
            .zip(&x[lag..])
            .map(|(a, b)| (a - mean) * (b - mean))
            .sum::<f64>()
            / n as f64;
        let rho = cov / var;
        if rho <= 0.0 {
            break;
        }
        sum += rho;
    }
    (n as f64 / (1.0 + 2.0 * sum)).clamp(1.0, n as f64)
}

/// Clopper–Pearson upper bound on a failure rate, with `confidence` (e.g. 0.95): `failures`
/// out of `samples`, both possibly fractional after the correlation correction.
pub fn failure_upper_bound(failures: f64, samples: f64, confidence: f64) -> f64 {
    if samples <= 0.0 || failures >= samples {
        return 1.0;
    }
    match Beta::new(failures + 1.0, samples - failures) {
        Ok(beta) => beta.inverse_cdf(confidence),
        Err(_) => 1.0,
    }
}

/// Independent scenes a stream is worth, from the backbone's answers per frame in time order:
/// n / (1 + 2 Σ ρ_k) as in [`effective_samples_of`], with ρ_k the answers' own autocorrelation (how
/// much likelier two frames k apart give the same answer than two frames at random). Frames of
/// one scene are near copies, which their failures alone may not show when failures are rare;
/// shuffled images give about n. A stream with a single answer is one scene.
pub fn effective_scenes(answers: &[u32]) -> f64 {
    let n = answers.len();
    if n < 2 {
        return n as f64;
    }
    let mut counts = std::collections::HashMap::new();
    for &a in answers {
        *counts.entry(a).or_insert(0usize) += 1;
    }
    // The chance that two frames at random agree.
    let chance: f64 = counts
        .values()
        .map(|&c| (c as f64 / n as f64).powi(2))
        .sum();
    if chance >= 1.0 {
        return 1.0;
    }
    let mut sum = 0.0;
    for lag in 1..(n / 2).min(MAX_LAG) {
        let same = answers[..n - lag]
            .iter()
            .zip(&answers[lag..])
            .filter(|(a, b)| a == b)
            .count() as f64
            / (n - lag) as f64;
        let rho = (same - chance) / (1.0 - chance);
        if rho <= 0.0 {
            break;
        }
        sum += rho;
    }
    (n as f64 / (1.0 + 2.0 * sum)).clamp(1.0, n as f64)
}

/// Per-frame values in time order (failures as 1s and 0s, or a goal's penalties) with the
/// independent samples they are worth, worked out once: what every bound rests on.
///
/// Scenes are the units. The frames are cut into blocks as long as a scene (n / `scenes`
/// frames), and the variance of their mean is counted over the blocks (batch means), plus one
/// whole block failing that was not seen: a failure that would take a whole scene, rare
/// enough that the certifying frames show none, is still allowed for. Failures that come a
/// frame at a time in a scene count as the evidence they are; with no failure at all, the
/// frames are worth their scenes and no more.
pub struct Evidence {
    values: Vec<f64>,
    effective: f64,
    /// Frames per block; 1 for frames that are their own scenes.
    block: usize,
}

impl Evidence {
    /// `values` in a stream of about `scenes` independent scenes (see [`effective_scenes`];
    /// infinite when every frame is its own): the fewer samples of what the blocks and the
    /// values' own correlation allow.
    pub fn new(values: Vec<f64>, scenes: f64) -> Evidence {
        let n = values.len();
        let block = if scenes.is_finite() && scenes > 0.0 {
            ((n as f64 / scenes).ceil() as usize).clamp(1, n.max(1))
        } else {
            1
        };
        let mut e = Evidence {
            values,
            effective: 1.0,
            block,
        };
        let frame_var = e.frame_variance();
        let mean_var = e.mean_variance();
        let by_blocks = if mean_var > 0.0 {
            frame_var / mean_var
        } else {
            n as f64
        };
        e.effective = effective_samples_of(&e.values)
            .min(by_blocks)
            .clamp(1.0, n.max(1) as f64);
        e
    }

    /// The per-frame variance, counting the unseen failing block's frames as unit events.
    fn frame_variance(&self) -> f64 {
        let n = self.frames().max(1.0);
        let mean = self.mean();
        let square = (self.values.iter().map(|v| v * v).sum::<f64>() + self.block as f64) / n;
        (square - mean * mean).max(0.0)
    }

    /// The variance of the mean by batch means over blocks, with the unseen failing block.
    fn mean_variance(&self) -> f64 {
        let n = self.frames().max(1.0);
        let mean = self.mean();
        let spread: f64 = self
            .values
            .chunks(self.block)
            .map(|b| (b.iter().sum::<f64>() - mean * b.len() as f64).powi(2))
            .sum();
        (spread + (self.block as f64).powi(2)) / (n * n)
    }

    /// [`Evidence::new`] of one flag per frame: whether it failed.
    pub fn of_failures(failures: &[bool], scenes: f64) -> Evidence {
        Evidence::new(
            failures.iter().map(|&f| f64::from(u8::from(f))).collect(),
            scenes,
        )
    }

    /// Independent samples the values are worth.
    pub fn effective(&self) -> f64 {
        self.effective
    }

    fn frames(&self) -> f64 {
        self.values.len() as f64
    }

    fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.frames().max(1.0)
    }

    /// Of failures: a lower bound on the success rate that holds with `confidence`.
    pub fn rate_lower_bound(&self, confidence: f64) -> f64 {
        if self.values.is_empty() {
            return 0.0;
        }
        // The observed rate is kept; only the evidence behind it shrinks.
        let (failures, n) = (self.values.iter().sum::<f64>(), self.effective);
        1.0 - failure_upper_bound(failures * n / self.frames(), n, confidence)
    }

    /// An upper bound on the mean that holds with about `confidence`: mean + z·sd/√n_eff, by
    /// the normal approximation. The variance counts a failing block more than seen, so a
    /// handful of failures (or none) is not taken as certainty.
    pub fn mean_upper_bound(&self, confidence: f64) -> f64 {
        self.mean_and_margin(confidence)
            .map_or(f64::INFINITY, |(mean, margin)| mean + margin)
    }

    /// The mean and z·sd/√n_eff, or `None` for no values.
    fn mean_and_margin(&self, confidence: f64) -> Option<(f64, f64)> {
        if self.values.is_empty() {
            return None;
        }
        let sd = self.frame_variance().sqrt();
        let z = Normal::standard().inverse_cdf(confidence);
        Some((self.mean(), z * sd / self.effective.sqrt()))
    }

    /// Of failures: roughly how many frames like these (the same failure rate, the same
    /// correlation) would lift [`Evidence::rate_lower_bound`] to `target`; `None` when their
    /// rate itself is not above it, which no number of frames fixes.
    pub fn frames_to_reach_rate(&self, target: f64, confidence: f64) -> Option<f64> {
        let share = self.mean();
        if self.values.is_empty() || 1.0 - share <= target {
            return None;
        }
        let reaches = |m: f64| 1.0 - failure_upper_bound(share * m, m, confidence) >= target;
        Some(least_reaching(reaches)? * self.frames() / self.effective)
    }

    /// Roughly how many frames like these would bring [`Evidence::mean_upper_bound`] down to
    /// `limit`; `None` when their mean itself is not below it.
    pub fn frames_to_reach_mean(&self, limit: f64, confidence: f64) -> Option<f64> {
        let (mean, margin) = self.mean_and_margin(confidence)?;
        if mean >= limit {
            return None;
        }
        // The margin shrinks as one over the root of the effective samples.
        let needed = self.effective * (margin / (limit - mean)).powi(2);
        Some(needed.max(1.0) * self.frames() / self.effective)
    }
}

/// Fixed-sequence testing, the *Learn then Test* procedure of Angelopoulos et al. (2021) along
/// an ordered path: hypotheses are tested in an order fixed before the certifying frames are
/// seen, each with the full confidence, and testing stops at the first that fails. Those passed
/// hold all together with that confidence, with no multiplicity penalty: a false pass needs the
/// first false hypothesis on the path to pass, which one test at the full confidence allows.
/// Returns the steps passed, in order, and the one that failed, if any.
pub fn fixed_sequence<T>(
    path: impl IntoIterator<Item = T>,
    passes: impl Fn(&T) -> bool,
) -> (Vec<T>, Option<T>) {
    let mut passed = Vec::new();
    for step in path {
        if !passes(&step) {
            return (passed, Some(step));
        }
        passed.push(step);
    }
    (passed, None)
}

/// The least m ≥ 1 (to a part in a thousand) at which `reaches` turns true, assuming it stays
/// true above; `None` beyond 10¹².
fn least_reaching(reaches: impl Fn(f64) -> bool) -> Option<f64> {
    let mut high = 1.0;
    while !reaches(high) {
        high *= 2.0;
        if high > 1e12 {
            return None;
        }
    }
    let mut low = high / 2.0;
    while high - low > 1e-3 * high {
        let mid = 0.5 * (low + high);
        if reaches(mid) { high = mid } else { low = mid }
    }
    Some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_known_values() {
        // 0 failures in 100: the upper 95% bound is 1 - 0.05^(1/100) ≈ 0.0295.
        let u = failure_upper_bound(0.0, 100.0, 0.95);
        assert!((u - (1.0 - 0.05f64.powf(0.01))).abs() < 1e-6, "{u}");
        // 5 in 100, one-sided 95%: about 0.1023 (R: binom.test(5, 100, alt = "less")).
        let u = failure_upper_bound(5.0, 100.0, 0.95);
        assert!((u - 0.1023).abs() < 5e-4, "{u}");
    }

    #[test]
    fn correlated_failures_count_as_fewer_samples() {
        let independent: Vec<bool> = (0..1000).map(|i| (i * 7919) % 13 == 0).collect();
        // The same failure rate, but in runs of 10 neighbouring frames.
        let runs: Vec<bool> = (0..1000).map(|i| (i / 10) % 13 == 0).collect();
        let n1 = Evidence::of_failures(&independent, f64::INFINITY).effective();
        let n2 = Evidence::of_failures(&runs, f64::INFINITY).effective();
        assert!(n1 > 800.0, "{n1}");
        assert!(n2 < 200.0, "{n2}");
        assert!(
            Evidence::of_failures(&runs, f64::INFINITY).rate_lower_bound(0.95)
                < Evidence::of_failures(&independent, f64::INFINITY).rate_lower_bound(0.95)
        );
    }

    #[test]
    fn the_mean_bound_widens_with_confidence_and_correlation() {
        // 1% failures, independent: mean 0.01, sd ≈ 0.1, n = 2000 → about 0.01 + z·0.0022.
        let independent: Vec<f64> = (0..2000)
            .map(|i| f64::from(u8::from((i * 7919) % 100 == 0)))
            .collect();
        let u90 = Evidence::new(independent.to_vec(), f64::INFINITY).mean_upper_bound(0.90);
        let u99 = Evidence::new(independent.to_vec(), f64::INFINITY).mean_upper_bound(0.99);
        assert!(u90 > 0.01 && u90 < 0.0135, "{u90}");
        assert!(u99 > u90, "{u99} {u90}");
        let runs: Vec<f64> = (0..2000)
            .map(|i| f64::from(u8::from((i / 10) % 100 == 0)))
            .collect();
        assert!(Evidence::new(runs.to_vec(), f64::INFINITY).mean_upper_bound(0.90) > u90);
        // No failure seen is not certainty.
        assert!(Evidence::new([0.0; 100].to_vec(), f64::INFINITY).mean_upper_bound(0.95) > 0.0);
    }

    #[test]
    fn fixed_sequence_stops_at_the_first_failure() {
        let (passed, failed) = fixed_sequence([1, 2, 7, 3], |&x| x < 5);
        assert_eq!((passed, failed), (vec![1, 2], Some(7)));
        let (passed, failed) = fixed_sequence([1, 2], |&x| x < 5);
        assert_eq!((passed, failed), (vec![1, 2], None));
    }

    /// Uniform draws in 0..1 from xorshift64*: the tests' own generator, so their figures never
    /// change.
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A stream whose true rates are known: frame i's exit is sure with score s_i ~ U(0, 1)
    /// and right with probability s_i, so the rule "leave when s ≥ t" agrees with the backbone
    /// on 1 − (1 − t)²/2 of frames. Thresholds from strict to loose, certified by fixed-sequence
    /// testing at 90%: over 400 repetitions, the loosest certified threshold must keep the
    /// target in at least 90% of them (allowing the binomial's own spread).
    #[test]
    fn the_certificate_covers_the_true_rate_at_its_confidence() {
        let (target, confidence, frames, repetitions) = (0.95, 0.90, 600, 400);
        let true_rate = |t: f64| 1.0 - (1.0 - t).powi(2) / 2.0;
        let path: Vec<f64> = (0..=100).map(|j| 1.0 - f64::from(j) / 100.0).collect();
        let mut uniform = uniform(0x9e37_79b9_7f4a_7c15);
        let (mut misses, mut certified) = (0, 0);
        for _ in 0..repetitions {
            let stream: Vec<(f64, bool)> = (0..frames)
                .map(|_| {
                    let s = uniform();
                    (s, uniform() < s)
                })
                .collect();
            let failures = |t: f64| -> Vec<bool> {
                stream.iter().map(|&(s, right)| s >= t && !right).collect()
            };
            let (passed, _) = fixed_sequence(path.iter().copied(), |&t| {
                Evidence::of_failures(&failures(t), f64::INFINITY).rate_lower_bound(confidence)
                    >= target
            });
            if let Some(&loosest) = passed.last() {
                certified += 1;
                misses += usize::from(true_rate(loosest) < target);
            }
        }
        // Bin(400, 0.10) exceeds 55 with probability below 1%.
        assert!(
            misses <= 55,
            "{misses} of {repetitions} certified thresholds miss the target"
        );
        assert!(
            certified > repetitions / 2,
            "the target is within reach: {certified}"
        );
    }

    /// Scenes of 4 to 40 frames, as items on an inspection belt: along the path, a scene fails
    /// whole with probability 0.03·t and any frame alone with probability 0.06·t, so a share
    /// q + (1 − q)·r of frames fail. Certified by fixed-sequence testing at 90% with the scenes
    /// the answers show, over 300 repetitions, the loosest step passed must keep the target in
    /// at least 90% of them.
    #[test]
    fn the_certificate_covers_the_true_rate_on_a_stream_of_scenes() {
        let (target, confidence, frames, repetitions) = (0.95, 0.90, 3000, 300);
        let true_rate = |t: f64| {
            let (q, r) = (0.03 * t, 0.06 * t);
            1.0 - (q + (1.0 - q) * r)
        };
        let path: Vec<f64> = (0..=100).map(|j| f64::from(j) / 100.0).collect();
        let mut uniform = uniform(0x2545_f491_4f6c_dd1d);
        let (mut misses, mut certified) = (0, 0);
        for _ in 0..repetitions {
            // Per frame: its scene's answer, the scene's draw and the frame's own.
            let mut stream: Vec<(u32, f64, f64)> = Vec::with_capacity(frames);
            while stream.len() < frames {
                let len = 4 + (uniform() * 37.0) as usize;
                let (answer, scene) = ((uniform() * 10.0) as u32, uniform());
                for _ in 0..len {
                    stream.push((answer, scene, uniform()));
                }
            }
            stream.truncate(frames);
            let answers: Vec<u32> = stream.iter().map(|f| f.0).collect();
            let scenes = effective_scenes(&answers);
            let failures = |t: f64| -> Vec<bool> {
                stream
                    .iter()
                    .map(|&(_, scene, frame)| scene < 0.03 * t || frame < 0.06 * t)
                    .collect()
            };
            let (passed, _) = fixed_sequence(path.iter().copied(), |&t| {
                Evidence::of_failures(&failures(t), scenes).rate_lower_bound(confidence) >= target
            });
            if let Some(&loosest) = passed.last() {
                certified += 1;
                misses += usize::from(true_rate(loosest) < target);
            }
        }
        // Bin(300, 0.10) exceeds 42 with probability below 1%.
        assert!(
            misses <= 42,
            "{misses} of {repetitions} certified steps miss the target"
        );
        assert!(
            certified > repetitions / 2,
            "the target is within reach: {certified}"
        );
    }

    #[test]
    fn the_frames_a_target_needs_grow_as_it_nears_the_observed_rate() {
        // 1% failures on 1,000 independent frames.
        let failures: Vec<bool> = (0..1000).map(|i| (i * 7919) % 100 == 0).collect();
        let near = Evidence::of_failures(&failures, f64::INFINITY)
            .frames_to_reach_rate(0.985, 0.95)
            .unwrap();
        let far = Evidence::of_failures(&failures, f64::INFINITY)
            .frames_to_reach_rate(0.97, 0.95)
            .unwrap();
        assert!(far < 1000.0 && near > 1000.0, "{far} {near}");
        // With that many frames like these, the bound does reach the target.
        let more: Vec<bool> = (0..near.ceil() as usize)
            .map(|i| (i * 7919) % 100 == 0)
            .collect();
        assert!(Evidence::of_failures(&more, f64::INFINITY).rate_lower_bound(0.95) >= 0.985 - 1e-3);
        assert_eq!(
            Evidence::of_failures(&failures, f64::INFINITY).frames_to_reach_rate(0.995, 0.95),
            None
        );
        // A mean loss of 0.1% certifies a 0.2% limit on more frames than a 0.5% one.
        let loss: Vec<f64> = (0..1000)
            .map(|i| f64::from(u8::from((i * 7919) % 1000 == 0)))
            .collect();
        let strict = Evidence::new(loss.clone(), f64::INFINITY)
            .frames_to_reach_mean(0.002, 0.95)
            .unwrap();
        let lax = Evidence::new(loss.clone(), f64::INFINITY)
            .frames_to_reach_mean(0.005, 0.95)
            .unwrap();
        assert!(strict > lax, "{strict} {lax}");
        assert_eq!(
            Evidence::new(loss.clone(), f64::INFINITY).frames_to_reach_mean(0.0005, 0.95),
            None
        );
    }
    #[test]
    fn scenes_count_runs_of_one_answer_and_not_shuffled_answers() {
        // 40 scenes of 25 frames, each scene one answer of ten.
        let scenes: Vec<u32> = (0..1000).map(|i| ((i / 25) * 7 % 10) as u32).collect();
        let shuffled: Vec<u32> = (0..1000).map(|i| ((i * 7919) % 10) as u32).collect();
        let s = effective_scenes(&scenes);
        assert!((10.0..=80.0).contains(&s), "{s}");
        assert!(effective_scenes(&shuffled) > 800.0);
        assert_eq!(effective_scenes(&[3; 50]), 1.0);
        // No failure in 1,000 frames of 40 scenes certifies far less than in 1,000 shuffled.
        let none = vec![false; 1000];
        assert!(Evidence::of_failures(&none, s).rate_lower_bound(0.95) < 0.95);
        assert!(
            Evidence::of_failures(&none, effective_scenes(&shuffled)).rate_lower_bound(0.95) > 0.99
        );
    }
    #[test]
    fn long_scenes_cost_a_bounded_number_of_passes() {
        // Two answers in runs of 50,000 frames: correlated far beyond MAX_LAG.
        let answers: Vec<u32> = (0..200_000).map(|i| (i / 50_000) as u32 % 2).collect();
        let scenes = effective_scenes(&answers);
        assert!(
            scenes <= 200_000.0 / (2.0 * MAX_LAG as f64) * 1.1,
            "{scenes}"
        );
        assert!(scenes >= 1.0);
        let runs: Vec<f64> = answers.iter().map(|&a| f64::from(a)).collect();
        assert!(effective_samples_of(&runs) <= scenes * 1.1);
    }
}
