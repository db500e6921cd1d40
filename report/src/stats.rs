//! Point estimates and bootstrap 95% confidence intervals over repetitions, for single
//! metrics and for the relative change between two sets of repetitions. Seeded, so a report
//! regenerated from the same results shows the same intervals.

use crate::{schema::RepetitionSummary, LoadedRun};
use rand::{Rng, SeedableRng};
use serde::Serialize;

const RESAMPLES: usize = 2000;
const SEED: u64 = 0x5eed_57ac;

/// A metric measured once per repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    P50,
    P99,
    P999,
    Goodput,
    CpuPerMb,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::P50,
        Metric::P99,
        Metric::P999,
        Metric::Goodput,
        Metric::CpuPerMb,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::Goodput => "goodput",
            Metric::CpuPerMb => "CPU per MB",
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            Metric::P50 | Metric::P99 | Metric::P999 => "µs",
            Metric::Goodput => "Mbit/s",
            Metric::CpuPerMb => "ms/MB",
        }
    }
    /// Whether a smaller value is better (latency, CPU) or a larger one (goodput).
    pub fn lower_is_better(self) -> bool {
        self != Metric::Goodput
    }
    /// Whether the metric is per class (latency, goodput) or per stack (CPU).
    pub fn per_class(self) -> bool {
        self != Metric::CpuPerMb
    }
}

/// The mean over repetitions and, with two or more, its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub point: f64,
    /// `None` with fewer than two repetitions: one run has no error bar.
    pub ci95: Option<(f64, f64)>,
    pub n: usize,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn resample_mean(v: &[f64], rng: &mut impl Rng) -> f64 {
    (0..v.len())
        .map(|_| v[rng.gen_range(0..v.len())])
        .sum::<f64>()
        / v.len() as f64
}

fn percentile_interval(mut draws: Vec<f64>) -> (f64, f64) {
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// The mean of `values` with a percentile-bootstrap 95% interval.
pub fn estimate(values: &[f64]) -> Estimate {
    let point = mean(values);
    let ci95 = (values.len() >= 2).then(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
        percentile_interval(
            (0..RESAMPLES)
                .map(|_| resample_mean(values, &mut rng))
                .collect(),
        )
    });
    Estimate {
        point,
        ci95,
        n: values.len(),
    }
}

/// The relative change of the mean from `base` to `new` (0.1 = 10% higher), with a 95%
/// interval from resampling both sides independently.
pub fn relative_change(base: &[f64], new: &[f64]) -> Estimate {
    let point = mean(new) / mean(base) - 1.0;
    let ci95 = (base.len() >= 2 && new.len() >= 2).then(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
        percentile_interval(
            (0..RESAMPLES)
                .map(|_| resample_mean(new, &mut rng) / resample_mean(base, &mut rng) - 1.0)
                .collect(),
        )
    });
    Estimate {
        point,
        ci95,
        n: base.len().min(new.len()),
    }
}

/// One repetition's value of `metric`, for `class` (ignored by per-stack metrics).
pub fn value(r: &RepetitionSummary, class: &str, metric: Metric) -> Option<f64> {
    if metric == Metric::CpuPerMb {
        let cpu: f64 = r
            .nodes
            .iter()
            .map(|n| n.cpu_user_seconds + n.cpu_sys_seconds)
            .sum::<f64>()
            + r.underlay_cpu_seconds
            + r.host_softirq_seconds;
        let mb = r.classes.iter().map(|c| c.delivered_bytes).sum::<u64>() as f64 / 1e6;
        return (mb > 0.0).then(|| cpu * 1e3 / mb);
    }
    let c = r.classes.iter().find(|c| c.name == class)?;
    if c.delivered == 0 {
        return None;
    }
    Some(match metric {
        Metric::P50 => c.latency_us.p50 as f64,
        Metric::P99 => c.latency_us.p99 as f64,
        Metric::P999 => c.latency_us.p999 as f64,
        Metric::Goodput => c.goodput_bytes_per_sec * 8.0 / 1e6,
        Metric::CpuPerMb => unreachable!("handled above"),
    })
}

/// Values of `metric` for `stack` (and `class`) across a run's repetitions.
pub fn values(run: &LoadedRun, stack: &str, class: &str, metric: Metric) -> Vec<f64> {
    run.repetitions
        .iter()
        .filter(|r| r.stack == stack)
        .filter_map(|r| value(r, class, metric))
        .collect()
}

/// The (stack, class) pairs of a run in report order; per-stack metrics use class "".
pub fn keys(run: &LoadedRun) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for r in &run.repetitions {
        for c in &r.classes {
            let k = (r.stack.clone(), c.name.clone());
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_repetition_has_no_error_bar() {
        let e = estimate(&[5.0]);
        assert_eq!((e.point, e.ci95, e.n), (5.0, None, 1));
    }

    #[test]
    fn intervals_cover_the_mean_and_shrink_with_agreement() {
        let noisy = estimate(&[80.0, 120.0, 100.0, 90.0, 110.0]);
        let (lo, hi) = noisy.ci95.expect("5 repetitions");
        assert!(lo < 100.0 && 100.0 < hi, "{noisy:?}");
        let tight = estimate(&[99.0, 101.0, 100.0, 100.0, 100.0]);
        let (tlo, thi) = tight.ci95.expect("5 repetitions");
        assert!(thi - tlo < (hi - lo) / 5.0, "{tight:?} vs {noisy:?}");
    }

    #[test]
    fn relative_change_finds_a_real_shift_and_not_a_null_one() {
        let base = [100.0, 104.0, 96.0, 101.0];
        let slower = [150.0, 156.0, 144.0, 151.0];
        let c = relative_change(&base, &slower);
        assert!((c.point - 0.5).abs() < 0.01, "{c:?}");
        let (lo, _) = c.ci95.expect("CI");
        assert!(lo > 0.3, "{c:?}");
        let same = relative_change(&base, &[101.0, 97.0, 103.0, 100.0]);
        let (lo, hi) = same.ci95.expect("CI");
        assert!(lo < 0.0 && 0.0 < hi, "{same:?}");
    }
}
