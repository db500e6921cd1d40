//! The self-check before a run: directed paths are probed for one-way delay, jitter, loss
//! and reordering (all of them in small networks, rounds of them in large ones; see
//! [`ProbeSelection`]), rate-limited uplinks for their rate, and one pair by `ping` as a
//! cross-check. The kernel stamps every probe's arrival, and all namespaces share one
//! clock, so one-way delay is measured directly and the probe's own wake-ups do not count.
//!
//! A measured value passes when it is within the scenario's tolerance (e.g. 10% or 200 µs,
//! whichever is larger), within four standard errors of the estimate, whichever is larger,
//! plus the probe's own timing noise measured at the same time on loopback paths. A rate
//! the probe's sender cannot reach is recorded as not verified, not blamed on the link.

mod net;
mod paths;
mod ping;
mod rate;

pub use net::{in_netns, NodeAddr};

use super::{
    coverage::ProbeSelection,
    plan::{LinkPlan, PathImpairment},
};
use crate::scenario::{JitterDistribution, Tolerance};
use paths::{probe_paths, Arrival, PATH_PORT};
use stackbench_core::schema::{
    Checked, LinkCheck, PathCheck, ProbeCoverage, ProbeNoise, RateVerdict, UplinkCheck,
};
use std::{io, time::Duration};

/// Standard errors a value may be off before sampling noise no longer explains it.
const Z: f64 = 4.0;
/// Probes per second in all: on a small machine more would add the jitter they measure,
/// and the userspace emulator forwards each one.
const PROBES_PER_SECOND: u64 = 5000;
/// Probes a path needs for a median and an IQR worth judging.
const MIN_PROBES_PER_PATH: u64 = 40;
/// Loopback paths that measure the probe's own noise.
const NOISE_PATHS: u32 = 4;

/// Spacing of one path's probes: no closer than 8 jitter deviations (so jitter cannot
/// make one probe wait for another), 1 ms, or the share of [`PROBES_PER_SECOND`] that
/// `pairs` paths leave each.
fn spacing(max_jitter_ns: u64, pairs: usize) -> Duration {
    let per_path = 1_000_000_000 * pairs as u64 / PROBES_PER_SECOND;
    Duration::from_nanos((8 * max_jitter_ns).max(1_000_000).max(per_path))
}

/// Share of arrivals that overtook a probe sent earlier on the same path.
fn early_share(seqs_in_arrival_order: &[u32]) -> f64 {
    if seqs_in_arrival_order.is_empty() {
        return 0.0;
    }
    let mut min_after = u32::MAX;
    let mut early = 0;
    for &s in seqs_in_arrival_order.iter().rev() {
        if min_after < s {
            early += 1;
        }
        min_after = min_after.min(s);
    }
    early as f64 / seqs_in_arrival_order.len() as f64
}

/// Median and the standard deviation implied by the interquartile range for `dist`: robust
/// to the odd probe a busy CPU delays by milliseconds, which would swamp a plain mean and
/// standard deviation of a few hundred samples. `None` without samples.
fn robust_center_spread(xs: &mut [f64], dist: JitterDistribution) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize];
    let iqr = q(0.75) - q(0.25);
    let per_sd = match dist {
        JitterDistribution::Normal => 1.349,
        JitterDistribution::Uniform => 3f64.sqrt(),
    };
    Some((q(0.5), iqr / per_sd))
}

fn time_allowance(tol: &Tolerance, configured_us: f64, stderr_us: f64) -> f64 {
    (tol.relative.0 * configured_us)
        .max(tol.absolute.0.as_secs_f64() * 1e6)
        .max(Z * stderr_us)
}

/// Allowed deviation of a share estimated from `n` samples: relative tolerance or `Z`
/// binomial standard errors, inflated by `burst` for correlated (bursty) losses.
fn share_allowance(tol: &Tolerance, p: f64, n: f64, burst: f64) -> f64 {
    let p_for_var = p.max(1.0 / n.max(1.0));
    (tol.relative.0 * p).max(Z * (p_for_var * (1.0 - p_for_var) * burst / n.max(1.0)).sqrt())
}

/// Variance inflation of a loss estimate when losses come in bursts of mean length 1/r.
fn burst_inflation(p: &PathImpairment) -> f64 {
    match p.burst_loss {
        None => 1.0,
        Some(b) => {
            let lambda = (1.0 - b.p - b.r).clamp(0.0, 0.999);
            let share = b.stationary_loss() / p.expected_loss().max(1e-12);
            1.0 + share * (2.0 * lambda / (1.0 - lambda))
        }
    }
}

/// The probe's own noise, from the loopback paths' delays.
fn noise_of(loopback: &[Vec<Arrival>]) -> ProbeNoise {
    let mut d: Vec<f64> = loopback
        .iter()
        .flatten()
        .map(|a| a.delay_ns as f64 / 1e3)
        .collect();
    let samples = d.len() as u64;
    let (median_us, sd_us) =
        robust_center_spread(&mut d, JitterDistribution::Normal).unwrap_or((0.0, 0.0));
    let p99_us = d
        .get(((d.len().saturating_sub(1)) as f64 * 0.99) as usize)
        .copied()
        .unwrap_or(0.0);
    ProbeNoise {
        samples,
        median_us,
        sd_us,
        p99_us,
    }
}

/// Judges one probed path's delay and jitter.
fn path_check(
    (from, to, imp): (u32, u32, &PathImpairment),
    got: &[Arrival],
    sent: u32,
    gap: Duration,
    tol: &Tolerance,
    noise: &ProbeNoise,
) -> PathCheck {
    let mut delays: Vec<f64> = got.iter().map(|a| a.delay_ns as f64 / 1e3).collect();
    let configured_delay = imp.delay_ns as f64 / 1e3;
    let configured_sd = imp.jitter_ns as f64 / 1e3;
    let (delay_us, jitter_us) = match robust_center_spread(&mut delays, imp.distribution) {
        // No sample: nothing measured, which fails (the caller names the path).
        None => (
            Checked::new(configured_delay, 0.0, -1.0),
            Checked::new(configured_sd, 0.0, -1.0),
        ),
        Some((median, sd)) => {
            let n = delays.len() as f64;
            // Standard errors of the median and of the IQR-based deviation (normal case),
            // plus what the probe itself adds: its median delay on a zero-delay path to a
            // median, its spread to a spread.
            (
                Checked::new(
                    configured_delay,
                    median,
                    time_allowance(tol, configured_delay, 1.25 * sd / n.sqrt()) + noise.median_us,
                ),
                Checked::new(
                    configured_sd,
                    sd,
                    time_allowance(tol, configured_sd, 1.17 * sd / n.sqrt()) + noise.sd_us,
                ),
            )
        }
    };
    let seqs: Vec<u32> = got.iter().map(|a| a.seq).collect();
    // Only a packet that skips a delay longer than the probe gap can overtake one.
    let overtakes = imp.delay_ns > gap.as_nanos() as u64;
    PathCheck {
        from,
        to,
        probes_sent: sent as u64,
        probes_received: got.len() as u64,
        delay_us,
        jitter_us,
        loss: Checked::new(
            imp.expected_loss(),
            1.0 - got.len() as f64 / sent as f64,
            0.0,
        ),
        reorder: Checked::new(
            if overtakes {
                imp.reorder * (1.0 - imp.expected_loss())
            } else {
                0.0
            },
            early_share(&seqs),
            0.0,
        ),
        loss_group: 0,
    }
}

/// Loss and reordering, judged over each group of paths configured alike (so that they
/// get enough samples); writes the group's verdict into its members.
fn judge_groups(plan: &LinkPlan, paths: &mut [PathCheck], tol: &Tolerance) -> Vec<String> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, p) in paths.iter_mut().enumerate() {
        let imp = plan.path(p.from, p.to);
        let key = format!("{:?}/{:?}/{:?}", imp.loss, imp.burst_loss, imp.reorder);
        let g = match groups.iter().position(|(k, _)| *k == key) {
            Some(g) => g,
            None => {
                groups.push((key, vec![]));
                groups.len() - 1
            }
        };
        groups[g].1.push(i);
        p.loss_group = g as u32;
    }
    let mut failures = Vec::new();
    for (_, members) in &groups {
        let first = &paths[members[0]];
        let imp = plan.path(first.from, first.to);
        let reorder_configured = first.reorder.configured;
        let n_sent: f64 = members.iter().map(|&i| paths[i].probes_sent as f64).sum();
        let n_got: f64 = members
            .iter()
            .map(|&i| paths[i].probes_received as f64)
            .sum();
        let early = members
            .iter()
            .map(|&i| paths[i].reorder.measured * paths[i].probes_received as f64)
            .sum::<f64>()
            / n_got.max(1.0);
        let loss = Checked::new(
            imp.expected_loss(),
            1.0 - n_got / n_sent,
            share_allowance(tol, imp.expected_loss(), n_sent, burst_inflation(imp)),
        );
        let reorder = Checked::new(
            reorder_configured,
            early,
            share_allowance(tol, reorder_configured, n_got, 1.0),
        );
        let names: Vec<String> = members
            .iter()
            .map(|&i| format!("n{}->n{}", paths[i].from, paths[i].to))
            .collect();
        for (what, c) in [("loss", &loss), ("reordering", &reorder)] {
            if !c.ok {
                failures.push(format!(
                    "{what} over {n_sent} probes on {} paths ({}): measured {}, configured {} (allowed ±{})",
                    members.len(),
                    names.join(" "),
                    fmt_value(c.measured, ""),
                    fmt_value(c.configured, ""),
                    fmt_value(c.allowed, "")
                ));
            }
        }
        for &i in members {
            paths[i].loss.allowed = loss.allowed;
            paths[i].loss.ok = loss.ok;
            paths[i].reorder.allowed = reorder.allowed;
            paths[i].reorder.ok = reorder.ok;
        }
    }
    failures
}

/// Measures the paths and uplinks of `plan` (all, or rounds of them) and judges them
/// against the scenario.
pub fn check(
    nodes: &[NodeAddr],
    plan: &LinkPlan,
    tol: &Tolerance,
    duration: Duration,
    mechanism: &str,
) -> io::Result<LinkCheck> {
    let started = std::time::Instant::now();
    let budget =
        (duration.as_secs_f64() * PROBES_PER_SECOND as f64 / MIN_PROBES_PER_PATH as f64) as usize;
    let selection = ProbeSelection::choose(plan, budget);
    let n = nodes.len() as u32;
    let loopbacks: Vec<(u32, u32)> = (0..NOISE_PATHS.min(n))
        .map(|k| {
            let i = k * n / NOISE_PATHS.min(n);
            (i, i)
        })
        .collect();
    let pairs: Vec<(u32, u32)> = selection.paths.iter().chain(&loopbacks).copied().collect();
    let max_jitter = selection
        .paths
        .iter()
        .map(|&(f, t)| plan.path(f, t).jitter_ns)
        .max()
        .unwrap_or(0);
    let gap = spacing(max_jitter, pairs.len());
    let count = (duration.as_nanos() / gap.as_nanos()).max(1) as u32;
    let max_delay = selection
        .paths
        .iter()
        .map(|&(f, t)| plan.path(f, t).delay_ns + 3 * plan.path(f, t).jitter_ns)
        .max()
        .unwrap_or(0);
    let drain = Duration::from_nanos(max_delay) + Duration::from_millis(200);
    let socks = nodes
        .iter()
        .map(|node| net::bind_in(node, PATH_PORT, 8 << 20))
        .collect::<io::Result<Vec<_>>>()?;
    let ips: Vec<_> = nodes.iter().map(|n| n.ip).collect();
    let arrivals = probe_paths(&socks, &ips, &pairs, count, gap, drain)?;
    drop(socks);
    let (path_arrivals, loopback_arrivals) = arrivals.split_at(selection.paths.len());
    let noise = noise_of(loopback_arrivals);
    let mut failures = Vec::new();
    let mut paths: Vec<PathCheck> = selection
        .paths
        .iter()
        .zip(path_arrivals)
        .map(|(&(f, t), got)| path_check((f, t, plan.path(f, t)), got, count, gap, tol, &noise))
        .collect();
    for p in paths.iter().filter(|p| p.probes_received == 0) {
        failures.push(format!(
            "path n{}->n{}: none of its {} probes arrived; the path is down (a missing route or bridge port, a firewall rule, or an emulator that is not forwarding)",
            p.from, p.to, p.probes_sent
        ));
    }
    failures.extend(judge_groups(plan, &mut paths, tol));
    let mut warnings = Vec::new();
    let mut uplinks = Vec::new();
    for &node in &selection.uplinks {
        let Some(rate) = plan.nodes[node as usize].uplink_bits_per_sec else {
            continue;
        };
        let to = (node + 1) % n;
        let m = rate::measure(&nodes[node as usize], &nodes[to as usize], drain)?;
        let (checked, verdict, note) =
            rate::judge(rate, plan.path(node, to).expected_loss(), &m, tol);
        match (verdict, &note) {
            (RateVerdict::Off, Some(why)) => failures.push(format!(
                "uplink of n{node}: rate measured {:.1} Mbit/s, configured {:.1} Mbit/s (allowed ±{:.1}): {why}",
                checked.measured / 1e6,
                checked.configured / 1e6,
                checked.allowed / 1e6
            )),
            (RateVerdict::NotVerified, Some(why)) => warnings.push(format!(
                "uplink of n{node}: rate NOT VERIFIED ({:.1} Mbit/s configured, {:.1} Mbit/s seen): {why}",
                checked.configured / 1e6,
                checked.measured / 1e6
            )),
            _ => {}
        }
        uplinks.push(UplinkCheck {
            node,
            rate_bits_per_sec: checked,
            sender_held_back: m.held_back,
            offered_bits_per_sec: m.offered_bits_per_sec,
            verdict,
            note,
        });
    }
    let ping = Some(ping::ping_check(nodes, plan, &paths));
    for p in paths.iter().filter(|p| p.probes_received > 0) {
        for (what, c, unit) in [
            ("one-way delay", &p.delay_us, "us"),
            ("jitter (sd)", &p.jitter_us, "us"),
        ] {
            if !c.ok {
                failures.push(format!(
                    "path n{}->n{}: {what} measured {} {unit}, configured {} {unit} (allowed ±{} {unit})",
                    p.from,
                    p.to,
                    fmt_value(c.measured, unit),
                    fmt_value(c.configured, unit),
                    fmt_value(c.allowed, unit)
                ));
            }
        }
    }
    let paths_total = plan.directed_paths().count();
    Ok(LinkCheck {
        schema: stackbench_core::schema::SCHEMA_VERSION,
        mechanism: mechanism.to_owned(),
        emulator_scheduling: None,
        tolerance: format!(
            "{} or {}, whichever is larger, or {Z} standard errors of the estimate where that is larger, plus the probe's own noise (median {:.0} us, sd {:.0} us on loopback); loss and reordering over all paths configured alike",
            tol.relative, tol.absolute, noise.median_us, noise.sd_us
        ),
        nodes: plan.nodes.clone(),
        paths,
        uplinks,
        ping,
        failures,
        warnings,
        unchecked: false,
        coverage: Some(ProbeCoverage {
            summary: selection.describe(paths_total),
            paths_total: paths_total as u64,
            paths_probed: selection.paths.len() as u64,
            uplinks_total: selection.uplinks_total as u64,
            uplinks_probed: selection.uplinks.len() as u64,
            probes_per_path: count as u64,
            wall_ms: started.elapsed().as_millis() as u64,
        }),
        probe_noise: Some(noise),
        discarded_attempts: Vec::new(),
    })
}

fn fmt_value(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        format!("{:.3}%", v * 100.0)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_arrivals_are_the_overtakers() {
        assert_eq!(early_share(&[0, 1, 2, 3]), 0.0);
        // 3 arrived before 1 and 2: one overtaker out of five.
        assert_eq!(early_share(&[0, 3, 1, 2, 4]), 0.2);
    }

    #[test]
    fn spread_ignores_the_odd_late_probe() {
        let mut xs: Vec<f64> = (0..1000)
            .map(|i| 30_000.0 + ((i * 7919) % 1000) as f64)
            .collect();
        xs[3] = 90_000.0;
        let (median, sd) =
            robust_center_spread(&mut xs, JitterDistribution::Uniform).expect("samples");
        assert!((median - 30_500.0).abs() < 5.0, "{median}");
        // Uniform over 1000 µs: sd 1000/sqrt(12) = 289 µs.
        assert!((sd - 288.7).abs() < 5.0, "{sd}");
    }

    #[test]
    fn allowances_follow_the_stated_tolerance_or_the_noise() {
        let tol = Tolerance::default();
        assert_eq!(time_allowance(&tol, 30_000.0, 1.0), 3000.0);
        assert_eq!(time_allowance(&tol, 100.0, 1.0), 200.0);
        assert_eq!(time_allowance(&tol, 100.0, 100.0), 400.0);
        // 1% loss from 100k samples: 4 standard errors is 0.13%, the 10% rule 0.1%.
        let a = share_allowance(&tol, 0.01, 100_000.0, 1.0);
        assert!((a - 4.0 * (0.01f64 * 0.99 / 1e5).sqrt()).abs() < 1e-9);
        // No loss configured: a single lost probe in 1000 is within 4 standard errors.
        assert!(share_allowance(&tol, 0.0, 1000.0, 1.0) > 0.001);
    }

    fn arrivals(delays_us: &[i64]) -> Vec<Arrival> {
        delays_us
            .iter()
            .enumerate()
            .map(|(i, d)| Arrival {
                seq: i as u32,
                delay_ns: d * 1000,
            })
            .collect()
    }

    #[test]
    fn the_probes_own_noise_widens_the_allowance() {
        let tol = Tolerance::default();
        let got = arrivals(&[300; 50]);
        let quiet = ProbeNoise::default();
        let imp = PathImpairment::NONE;
        let gap = Duration::from_millis(1);
        let c = path_check((0, 1, &imp), &got, 50, gap, &tol, &quiet);
        assert!(
            !c.delay_us.ok,
            "300 us on an unimpaired path, quiet probe: off"
        );
        let noisy = ProbeNoise {
            samples: 100,
            median_us: 150.0,
            sd_us: 40.0,
            p99_us: 900.0,
        };
        let c = path_check((0, 1, &imp), &got, 50, gap, &tol, &noisy);
        assert!(c.delay_us.ok, "within 200 us plus the probe's own 150 us");
        assert_eq!(c.delay_us.allowed, 350.0);
    }

    #[test]
    fn a_path_without_arrivals_fails_without_nan() {
        let imp = PathImpairment::NONE;
        let c = path_check(
            (2, 5, &imp),
            &[],
            40,
            Duration::from_millis(1),
            &Tolerance::default(),
            &ProbeNoise::default(),
        );
        assert_eq!(c.probes_received, 0);
        assert!(!c.delay_us.ok && !c.jitter_us.ok);
        for v in [c.delay_us.measured, c.jitter_us.measured, c.loss.measured] {
            assert!(v.is_finite(), "{v}");
        }
        assert!(serde_json::to_string(&c)
            .expect("json")
            .contains("\"measured\":0.0"));
    }

    #[test]
    fn noise_is_read_from_loopback_delays() {
        let n = noise_of(&[arrivals(&[10, 12, 11, 13, 500]), arrivals(&[11, 12])]);
        assert_eq!(n.samples, 7);
        assert_eq!(n.median_us, 12.0);
        assert_eq!(
            n.p99_us, 13.0,
            "the 99th percentile of 7 samples is the 6th"
        );
    }
}
