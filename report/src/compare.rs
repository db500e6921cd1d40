//! `stackbench compare BASELINE RUN`: for each stack × class × metric, the change from the
//! baseline with its 95% interval, and a verdict against thresholds read from a config file.

use crate::{
    stats::{self, Estimate, Metric},
    LoadedRun, ReportError,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Relative changes below which a difference is not called a regression or improvement
/// (0.5 = 50%), per metric. Read from TOML; unknown keys are rejected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub goodput: f64,
    pub cpu_per_mb: f64,
}

impl Thresholds {
    pub fn load(path: &Path) -> Result<Thresholds, ReportError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ReportError::Io(path.to_owned(), e))?;
        toml::from_str(&text).map_err(|e| ReportError::Config(path.to_owned(), e.to_string()))
    }
    pub fn of(&self, m: Metric) -> f64 {
        match m {
            Metric::P50 => self.p50,
            Metric::P99 => self.p99,
            Metric::P999 => self.p999,
            Metric::Goodput => self.goodput,
            Metric::CpuPerMb => self.cpu_per_mb,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Regressed,
    NoSignificantChange,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "REGRESSED",
            Verdict::NoSignificantChange => "no significant change",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub stack: String,
    /// Empty for per-stack metrics.
    pub class: String,
    pub metric: Metric,
    pub baseline: Estimate,
    pub run: Estimate,
    /// Relative change of the mean (0.1 = 10% higher).
    pub change: Estimate,
    pub threshold: f64,
    pub verdict: Verdict,
}

/// A change is significant when it exceeds the threshold and, where both sides have two or
/// more repetitions, its whole 95% interval lies on the same side of zero.
fn verdict(change: &Estimate, threshold: f64, lower_is_better: bool) -> Verdict {
    let worse = if lower_is_better { 1.0 } else { -1.0 };
    let (point, interval) = (change.point * worse, change.ci95);
    let excludes_zero = |sign: f64| {
        interval.is_none_or(|(lo, hi)| {
            let (a, b) = (lo * worse, hi * worse);
            a.min(b) * sign > 0.0 && a.max(b) * sign > 0.0
        })
    };
    if point > threshold && excludes_zero(1.0) {
        Verdict::Regressed
    } else if point < -threshold && excludes_zero(-1.0) {
        Verdict::Improved
    } else {
        Verdict::NoSignificantChange
    }
}

/// Compares `keys` (stack, class) of the run with the baseline, each side's values of a
/// (stack, class, metric) given by `base` and `new`.
fn compare_by(
    keys: Vec<(String, String)>,
    th: &Thresholds,
    base: impl Fn(&str, &str, Metric) -> Vec<f64>,
    new: impl Fn(&str, &str, Metric) -> Vec<f64>,
    label: impl Fn(&str) -> String,
) -> Vec<Comparison> {
    let mut out = vec![];
    let mut stacks_done: Vec<String> = vec![];
    for (stack, class) in keys {
        for metric in Metric::ALL {
            let class = if metric.per_class() {
                class.clone()
            } else if stacks_done.contains(&stack) {
                continue;
            } else {
                String::new()
            };
            let (b, r) = (base(&stack, &class, metric), new(&stack, &class, metric));
            if b.is_empty() || r.is_empty() {
                continue;
            }
            let change = stats::relative_change(&b, &r);
            out.push(Comparison {
                verdict: verdict(&change, th.of(metric), metric.lower_is_better()),
                stack: label(&stack),
                class,
                metric,
                baseline: stats::estimate(&b),
                run: stats::estimate(&r),
                change,
                threshold: th.of(metric),
            });
        }
        if !stacks_done.contains(&stack) {
            stacks_done.push(stack);
        }
    }
    out
}

/// Every stack × class × metric present in both runs, in absolute figures: for runs on
/// the same machine.
pub fn compare(baseline: &LoadedRun, run: &LoadedRun, th: &Thresholds) -> Vec<Comparison> {
    compare_by(
        stats::keys(run),
        th,
        |s, c, m| stats::values(baseline, s, c, m),
        |s, c, m| stats::values(run, s, c, m),
        str::to_owned,
    )
}

/// Where two runs' networks were: both real (namespaces, a VM), both simulated, or one
/// each. A simulated network's timings do not depend on the machine and it has no CPU cost,
/// so two simulated runs compare in absolute figures, without CPU; a real run and a
/// simulated one measure different things and do not compare at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engines {
    Real,
    Simulated,
    Mixed,
}

pub fn engines(baseline: &LoadedRun, run: &LoadedRun) -> Engines {
    match (
        baseline.manifest.simulated_network.is_some(),
        run.manifest.simulated_network.is_some(),
    ) {
        (false, false) => Engines::Real,
        (true, true) => Engines::Simulated,
        _ => Engines::Mixed,
    }
}

/// [`compare`] for two runs on a simulated network: every timing, and no CPU (the
/// simulator models the CPU as infinitely fast, so CPU per MB is zero on both sides).
pub fn compare_simulated(
    baseline: &LoadedRun,
    run: &LoadedRun,
    th: &Thresholds,
) -> Vec<Comparison> {
    let mut c = compare(baseline, run, th);
    c.retain(|c| c.metric != Metric::CpuPerMb);
    c
}

/// The stack every other is measured against within a run: quic-tls when present, else the
/// first stack.
pub fn reference_stack(run: &LoadedRun) -> Option<String> {
    let stacks: Vec<String> = stats::keys(run).into_iter().map(|(s, _)| s).collect();
    stacks
        .iter()
        .find(|s| *s == "quic-tls")
        .or(stacks.first())
        .cloned()
}

/// Each repetition's value of `stack` divided by the reference stack's in the same
/// repetition of the same run.
fn ratios(run: &LoadedRun, stack: &str, reference: &str, class: &str, m: Metric) -> Vec<f64> {
    run.repetitions
        .iter()
        .filter(|r| r.stack == stack)
        .filter_map(|r| {
            let mine = stats::value(r, class, m)?;
            let theirs = run
                .repetitions
                .iter()
                .find(|x| x.stack == reference && x.repetition == r.repetition)
                .and_then(|x| stats::value(x, class, m))?;
            (theirs > 0.0).then(|| mine / theirs)
        })
        .collect()
}

/// For runs on different machines: each stack's ratio to `reference` measured in the same
/// run, baseline against run. Absolute figures are not compared; the reference stack
/// itself has nothing to be judged against.
pub fn compare_within_run(
    baseline: &LoadedRun,
    run: &LoadedRun,
    reference: &str,
    th: &Thresholds,
) -> Vec<Comparison> {
    let keys = stats::keys(run)
        .into_iter()
        .filter(|(s, _)| s != reference)
        .collect();
    compare_by(
        keys,
        th,
        |s, c, m| ratios(baseline, s, reference, c, m),
        |s, c, m| ratios(run, s, reference, c, m),
        |s| format!("{s} / {reference}"),
    )
}

/// What a run was measured on, from its `env.json`: runs whose fingerprints differ are
/// not compared in absolute figures.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Fingerprint {
    #[serde(default)]
    pub cpu_model: String,
    #[serde(default)]
    pub cpu_id: String,
    #[serde(default)]
    pub cores: u64,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub virtualization: String,
}

impl Fingerprint {
    /// The fingerprint in `dir/env.json`, if it can be read.
    pub fn load(dir: &Path) -> Option<Fingerprint> {
        let text = std::fs::read_to_string(dir.join("env.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({}), {} cores, kernel {}, virtualization: {}",
            self.cpu_model,
            if self.cpu_id.is_empty() {
                "?"
            } else {
                &self.cpu_id
            },
            self.cores,
            self.kernel,
            if self.virtualization.is_empty() {
                "?"
            } else {
                &self.virtualization
            }
        )
    }

    /// The fields that differ; a field one side did not record is not counted.
    pub fn differences(&self, other: &Fingerprint) -> Vec<&'static str> {
        let mut d = vec![];
        let mut text = |name, a: &str, b: &str| {
            if !a.is_empty() && !b.is_empty() && a != b {
                d.push(name);
            }
        };
        text("CPU model", &self.cpu_model, &other.cpu_model);
        text("CPU id", &self.cpu_id, &other.cpu_id);
        text("kernel", &self.kernel, &other.kernel);
        text(
            "virtualization",
            &self.virtualization,
            &other.virtualization,
        );
        if self.cores != other.cores {
            d.push("cores");
        }
        d
    }
}

pub fn has_regression(c: &[Comparison]) -> bool {
    c.iter().any(|c| c.verdict == Verdict::Regressed)
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// A value with its interval, in the metric's unit.
pub fn fmt_estimate(e: &Estimate, unit: &str) -> String {
    match e.ci95 {
        Some((lo, hi)) => format!("{:.1} [{lo:.1}, {hi:.1}] {unit}", e.point),
        None => format!("{:.1} {unit} (n=1)", e.point),
    }
}

pub fn fmt_change(e: &Estimate) -> String {
    match e.ci95 {
        Some((lo, hi)) => format!("{} [{}, {}]", pct(e.point), pct(lo), pct(hi)),
        None => format!("{} (no CI: n=1)", pct(e.point)),
    }
}

/// The comparison as a Markdown table, regressions first.
pub fn markdown(baseline: &str, run: &str, c: &[Comparison]) -> String {
    let mut rows: Vec<&Comparison> = c.iter().collect();
    rows.sort_by_key(|c| {
        (
            c.verdict != Verdict::Regressed,
            c.verdict != Verdict::Improved,
        )
    });
    let regressions = c.iter().filter(|c| c.verdict == Verdict::Regressed).count();
    let improvements = c.iter().filter(|c| c.verdict == Verdict::Improved).count();
    let mut s = format!(
        "## stackbench compare: {run} against baseline {baseline}\n\n**{regressions} regressed, {improvements} improved, {} without significant change** (means over repetitions; 95% bootstrap intervals).\n\n",
        c.len() - regressions - improvements
    );
    s.push_str("| stack | class | metric | baseline | run | change [95% CI] | threshold | verdict |\n|---|---|---|---|---|---|---|---|\n");
    for c in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | ±{:.0}% | {} |\n",
            c.stack,
            if c.class.is_empty() {
                "(all)"
            } else {
                &c.class
            },
            c.metric.name(),
            fmt_estimate(&c.baseline, c.metric.unit()),
            fmt_estimate(&c.run, c.metric.unit()),
            fmt_change(&c.change),
            c.threshold * 100.0,
            c.verdict.label()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(point: f64, ci: Option<(f64, f64)>) -> Estimate {
        Estimate {
            point,
            ci95: ci,
            n: 3,
        }
    }

    #[test]
    fn verdicts_need_the_threshold_and_an_interval_clear_of_zero() {
        // Latency 80% higher, clearly: regressed.
        assert_eq!(
            verdict(&change(0.8, Some((0.5, 1.1))), 0.5, true),
            Verdict::Regressed
        );
        // Higher than the threshold, but the interval includes zero: noise.
        assert_eq!(
            verdict(&change(0.8, Some((-0.1, 1.7))), 0.5, true),
            Verdict::NoSignificantChange
        );
        // Clear, but under the threshold.
        assert_eq!(
            verdict(&change(0.2, Some((0.1, 0.3))), 0.5, true),
            Verdict::NoSignificantChange
        );
        // Latency 60% lower: improved.
        assert_eq!(
            verdict(&change(-0.6, Some((-0.7, -0.5))), 0.5, true),
            Verdict::Improved
        );
        // Goodput 40% lower is a regression.
        assert_eq!(
            verdict(&change(-0.4, Some((-0.5, -0.3))), 0.2, false),
            Verdict::Regressed
        );
        // One repetition: the point decides.
        assert_eq!(verdict(&change(0.9, None), 0.5, true), Verdict::Regressed);
    }

    #[test]
    fn thresholds_reject_unknown_keys_and_say_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "p50 = 0.5\np99 = 1.0\np999 = 2.0\ngoodput = 0.3\ncpu_per_mb = 0.3\n",
        )
        .expect("write");
        assert_eq!(Thresholds::load(&p).expect("valid").p99, 1.0);
        std::fs::write(
            &p,
            "p50 = 0.5\np99 = 1.0\np999 = 2.0\ngoodput = 0.3\ncpu_per_mb = 0.3\np90 = 1\n",
        )
        .expect("write");
        let e = Thresholds::load(&p).expect_err("unknown key").to_string();
        assert!(
            e.contains("unknown field `p90`") && e.contains("line 6"),
            "{e}"
        );
    }

    /// The shipped thresholds' shape: wide for tails, narrow for goodput.
    fn wide_thresholds() -> Thresholds {
        Thresholds {
            p50: 0.5,
            p99: 1.0,
            p999: 1.5,
            goodput: 0.25,
            cpu_per_mb: 0.5,
        }
    }

    fn run_of(stacks: &[(&str, u64)], reps: u32) -> LoadedRun {
        use crate::schema::{ClassSummary, Percentiles, RepetitionSummary};
        let repetitions = stacks
            .iter()
            .flat_map(|&(stack, p50)| {
                (0..reps).map(move |rep| RepetitionSummary {
                    stack: stack.into(),
                    repetition: rep,
                    classes: vec![ClassSummary {
                        name: "vote".into(),
                        delivered: 10,
                        latency_us: Percentiles {
                            count: 10,
                            // A little spread so that intervals exist.
                            p50: p50 + rep as u64,
                            p99: p50 * 2,
                            p999: p50 * 3,
                            ..Default::default()
                        },
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            })
            .collect();
        LoadedRun {
            manifest: Default::default(),
            repetitions,
            links: None,
            floor: None,
            simulation: None,
        }
    }

    #[test]
    fn across_machines_only_ratios_to_the_reference_are_judged() {
        let th = wide_thresholds();
        // A slower machine: everything 3x, the ratio unchanged. Absolute figures regress;
        // the within-run ratio does not.
        let base = run_of(&[("quic-tls", 100), ("wg", 200)], 3);
        let slower = run_of(&[("quic-tls", 300), ("wg", 600)], 3);
        assert!(has_regression(&compare(&base, &slower, &th)));
        let c = compare_within_run(&base, &slower, "quic-tls", &th);
        assert!(!c.is_empty() && !has_regression(&c), "{c:?}");
        assert!(c.iter().all(|c| c.stack == "wg / quic-tls"));
        // The stack itself got slower against the reference: a regression either way.
        let worse = run_of(&[("quic-tls", 300), ("wg", 1800)], 3);
        assert!(has_regression(&compare_within_run(
            &base, &worse, "quic-tls", &th
        )));
        assert_eq!(reference_stack(&worse).as_deref(), Some("quic-tls"));
    }

    #[test]
    fn simulated_runs_compare_without_cpu_and_never_with_real_ones() {
        let th = wide_thresholds();
        let real = run_of(&[("quic-tls", 100)], 3);
        let mut shadow = run_of(&[("quic-tls", 100)], 3);
        shadow.manifest.simulated_network = Some("Shadow".into());
        for r in &mut shadow.repetitions {
            // Bytes delivered with no CPU spent: what a simulator reports.
            r.classes[0].delivered_bytes = 1_000_000;
        }
        assert_eq!(engines(&real, &real), Engines::Real);
        assert_eq!(engines(&shadow, &shadow), Engines::Simulated);
        assert_eq!(engines(&real, &shadow), Engines::Mixed);
        assert_eq!(engines(&shadow, &real), Engines::Mixed);
        let all = compare(&shadow, &shadow, &th);
        assert!(all.iter().any(|c| c.metric == Metric::CpuPerMb));
        let c = compare_simulated(&shadow, &shadow, &th);
        assert!(!c.is_empty(), "timings are compared");
        assert!(c.iter().all(|c| c.metric != Metric::CpuPerMb), "{c:?}");
    }

    #[test]
    fn fingerprints_differ_only_in_what_both_recorded() {
        let intel = Fingerprint {
            cpu_model: "Intel(R) Xeon(R) Processor".into(),
            cores: 2,
            kernel: "6.1".into(),
            ..Default::default()
        };
        let amd = Fingerprint {
            cpu_model: "AMD EPYC".into(),
            cpu_id: "AuthenticAMD family 25 model 17 stepping 1".into(),
            virtualization: "virtual machine".into(),
            ..intel.clone()
        };
        assert_eq!(intel.differences(&amd), ["CPU model"]);
        assert!(amd.differences(&amd.clone()).is_empty());
    }
}
