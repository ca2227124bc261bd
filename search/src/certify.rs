//! Certificates: a lower confidence bound on a rate measured on held-out frames that nothing
//! was fitted on, and the upper bound that shows a target missed. Neighbouring frames are
//! correlated, so they count as fewer independent samples: the effective sample size shrinks
//! with the failures' autocorrelation.

use statrs::distribution::{Beta, ContinuousCDF, Normal};

/// Independent samples that `failures` (one flag per frame, in time order) are worth:
/// n / (1 + 2 Σ ρ_k), summing the autocorrelations while they stay positive (Geyer's initial
/// positive sequence). Never more than n, never less than 1.
pub fn effective_samples(failures: &[bool]) -> f64 {
    let x: Vec<f64> = failures.iter().map(|&f| f64::from(u8::from(f))).collect();
    effective_samples_of(&x)
}

/// [`effective_samples`] of any per-frame values.
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
    for lag in 1..n / 2 {
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

/// A lower bound on the success rate of `failures` (per frame, in time order) that holds with
/// `confidence`.
pub fn rate_lower_bound(failures: &[bool], confidence: f64) -> f64 {
    let n = failures.len();
    if n == 0 {
        return 0.0;
    }
    let k = failures.iter().filter(|&&f| f).count() as f64;
    let n_eff = effective_samples(failures);
    // The observed rate is kept; only the evidence behind it shrinks.
    1.0 - failure_upper_bound(k * n_eff / n as f64, n_eff, confidence)
}

/// An upper bound on the success rate of `failures` that holds with `confidence`: a target
/// above it is shown to be missed.
pub fn rate_upper_bound(failures: &[bool], confidence: f64) -> f64 {
    let n = failures.len();
    if n == 0 {
        return 1.0;
    }
    let successes = failures.iter().filter(|&&f| !f).count() as f64;
    let n_eff = effective_samples(failures);
    // Clopper–Pearson with the roles swapped: successes are the counted events.
    failure_upper_bound(successes * n_eff / n as f64, n_eff, confidence)
}

/// An upper bound on the mean of per-frame `values` (in time order) that holds with about
/// `confidence`: mean + z·sd/√n_eff, by the normal approximation. The variance counts one
/// more unit event than seen, so a handful of failures (or none) is not taken as certainty.
pub fn mean_upper_bound(values: &[f64], confidence: f64) -> f64 {
    mean_and_margin(values, confidence).map_or(f64::INFINITY, |(mean, margin)| mean + margin)
}

/// The lower bound that mirrors [`mean_upper_bound`]: a limit below it is shown to be exceeded.
pub fn mean_lower_bound(values: &[f64], confidence: f64) -> f64 {
    mean_and_margin(values, confidence).map_or(f64::NEG_INFINITY, |(mean, margin)| mean - margin)
}

/// The mean of `values` and z·sd/√n_eff, or `None` for no values.
fn mean_and_margin(values: &[f64], confidence: f64) -> Option<(f64, f64)> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let mean = values.iter().sum::<f64>() / nf;
    let square = (values.iter().map(|v| v * v).sum::<f64>() + 1.0) / nf;
    let sd = (square - mean * mean).max(0.0).sqrt();
    let z = Normal::standard().inverse_cdf(confidence);
    Some((mean, z * sd / effective_samples_of(values).sqrt()))
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
        let n1 = effective_samples(&independent);
        let n2 = effective_samples(&runs);
        assert!(n1 > 800.0, "{n1}");
        assert!(n2 < 200.0, "{n2}");
        assert!(rate_lower_bound(&runs, 0.95) < rate_lower_bound(&independent, 0.95));
    }

    #[test]
    fn the_mean_bound_widens_with_confidence_and_correlation() {
        // 1% failures, independent: mean 0.01, sd ≈ 0.1, n = 2000 → about 0.01 + z·0.0022.
        let independent: Vec<f64> = (0..2000)
            .map(|i| f64::from(u8::from((i * 7919) % 100 == 0)))
            .collect();
        let u90 = mean_upper_bound(&independent, 0.90);
        let u99 = mean_upper_bound(&independent, 0.99);
        assert!(u90 > 0.01 && u90 < 0.0135, "{u90}");
        assert!(u99 > u90, "{u99} {u90}");
        let runs: Vec<f64> = (0..2000)
            .map(|i| f64::from(u8::from((i / 10) % 100 == 0)))
            .collect();
        assert!(mean_upper_bound(&runs, 0.90) > u90);
        // No failure seen is not certainty.
        assert!(mean_upper_bound(&[0.0; 100], 0.95) > 0.0);
    }

    #[test]
    fn the_upper_bounds_show_a_missed_target_only_on_enough_evidence() {
        // 20 of 100 frames fail: the success rate is at most about 0.87 (R: binom.test(80,
        // 100, alt = "less") gives 0.8640), far below a 0.95 target.
        let failures: Vec<bool> = (0..100).map(|i| (i * 7919) % 5 == 0).collect();
        let upper = rate_upper_bound(&failures, 0.95);
        assert!((upper - 0.8640).abs() < 5e-3, "{upper}");
        assert!(rate_lower_bound(&failures, 0.95) < 0.8 && upper > 0.8);
        // The same share on 10 frames proves nothing about 0.95.
        assert!(rate_upper_bound(&failures[..10], 0.95) > 0.95);
        // A mean loss of 2% on 2,000 frames is above 1%; on 50 frames it may not be.
        let loss: Vec<f64> = (0..2000)
            .map(|i| f64::from(u8::from((i * 7919) % 50 == 0)))
            .collect();
        assert!(mean_lower_bound(&loss, 0.95) > 0.01);
        assert!(mean_lower_bound(&loss[..50], 0.95) < 0.01);
        assert!(mean_lower_bound(&loss, 0.95) < mean_upper_bound(&loss, 0.95));
    }
}
