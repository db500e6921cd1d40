//! The self-check before a run: every directed path is probed for one-way delay, jitter,
//! loss and reordering, every rate-limited uplink for its rate, and one pair by `ping` as
//! a cross-check. The probe's sockets live in the node namespaces (one thread enters each),
//! and all namespaces share one monotonic clock, so one-way delay is measured directly.
//!
//! A measured value passes when it is within the scenario's tolerance (e.g. 10% or 200 µs,
//! whichever is larger) or within four standard errors of the estimate, whichever is
//! larger: a short probe cannot pin a 1% loss rate to 10%, and the check says how close
//! it could get.

use super::plan::{LinkPlan, PathImpairment};
use crate::{
    metrics::monotonic_ns,
    scenario::{JitterDistribution, Tolerance},
};
use stackbench_report::schema::{Checked, LinkCheck, PathCheck, PingCheck, UplinkCheck};
use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

const PATH_PORT: u16 = 4501;
const RATE_PORT: u16 = 4502;
const PROBE_LEN: usize = 64;
/// Payload of a rate-probe datagram; with UDP, IPv4 and Ethernet headers a 1242 B frame.
const RATE_PAYLOAD: usize = 1200;
const L2_OVERHEAD: usize = 42;
/// How long a rate probe sends.
const RATE_PROBE: Duration = Duration::from_millis(300);
/// Standard errors a value may be off before sampling noise no longer explains it.
const Z: f64 = 4.0;

/// Where the probe finds each node.
pub struct NodeAddr {
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// Runs `f` on a thread inside namespace `netns`; sockets it makes stay in that namespace.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on this thread only, with a namespace fd we hold open.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")))
    })
}

fn bind_in(node: &NodeAddr, port: u16) -> io::Result<UdpSocket> {
    let ip = node.ip;
    in_netns(&node.netns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.set_recv_buffer_size(8 << 20)?;
        s.bind(&SocketAddrV4::new(ip, port).into())?;
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(s)
    })
}

/// One received probe.
#[derive(Clone, Copy)]
struct Arrival {
    from: u32,
    seq: u32,
    delay_ns: i64,
}

/// Spacing of one path's probes: no closer than 8 jitter deviations (so jitter cannot
/// make one probe wait for another), 1 ms, or 200 µs per path in all: at most 5000 probes a
/// second in all, so that on a small machine the probe's own threads do not add the jitter
/// they measure.
fn spacing(plan: &LinkPlan) -> Duration {
    let paths = plan.directed_paths().count() as u64;
    let jitter = plan
        .directed_paths()
        .map(|(_, _, p)| p.jitter_ns)
        .max()
        .unwrap_or(0);
    Duration::from_nanos((8 * jitter).max(1_000_000).max(paths * 200_000))
}

/// Probes every path at once for `duration`; returns each node's arrivals and the count sent
/// on each path.
fn probe_paths(
    nodes: &[NodeAddr],
    duration: Duration,
    gap: Duration,
    drain: Duration,
) -> io::Result<(Vec<Vec<Arrival>>, u32)> {
    let sockets: Vec<UdpSocket> = nodes
        .iter()
        .map(|n| bind_in(n, PATH_PORT))
        .collect::<io::Result<_>>()?;
    let count = (duration.as_nanos() / gap.as_nanos()).max(1) as u32;
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let receivers: Vec<_> = sockets
            .iter()
            .map(|sock| {
                let stop = stop.clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 256];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(n) = sock.recv(&mut buf) else { continue };
                        let now = monotonic_ns();
                        if n < 16 {
                            continue;
                        }
                        let word = |i: usize| {
                            u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]])
                        };
                        let sent = u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default());
                        got.push(Arrival {
                            from: word(0),
                            seq: word(4),
                            delay_ns: now as i64 - sent as i64,
                        });
                    }
                    got
                })
            })
            .collect();
        let start = monotonic_ns();
        let senders: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(from, sock)| {
                s.spawn(move || -> io::Result<()> {
                    let mut pkt = [0u8; PROBE_LEN];
                    pkt[0..4].copy_from_slice(&(from as u32).to_le_bytes());
                    for seq in 0..count {
                        let due = start + seq as u64 * gap.as_nanos() as u64;
                        let now = monotonic_ns();
                        if due > now {
                            std::thread::sleep(Duration::from_nanos(due - now));
                        }
                        pkt[4..8].copy_from_slice(&seq.to_le_bytes());
                        let peers = nodes.iter().enumerate().filter(|(to, _)| *to != from);
                        for (_, n) in peers {
                            pkt[8..16].copy_from_slice(&monotonic_ns().to_le_bytes());
                            sock.send_to(&pkt, SocketAddrV4::new(n.ip, PATH_PORT))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for t in senders {
            if let Ok(Err(e)) = t.join() {
                result = Err(e);
            }
        }
        std::thread::sleep(drain);
        stop.store(true, Ordering::Relaxed);
        let arrivals = receivers
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect();
        result.map(|()| (arrivals, count))
    })
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
/// standard deviation of a few hundred samples.
fn robust_center_spread(xs: &mut [f64], dist: JitterDistribution) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize];
    let iqr = q(0.75) - q(0.25);
    let per_sd = match dist {
        JitterDistribution::Normal => 1.349,
        JitterDistribution::Uniform => 3f64.sqrt(),
    };
    (q(0.5), iqr / per_sd)
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

/// Measures every path of `plan` and judges it against the scenario.
pub fn check(
    nodes: &[NodeAddr],
    plan: &LinkPlan,
    tol: &Tolerance,
    duration: Duration,
    mechanism: &str,
) -> io::Result<LinkCheck> {
    let gap = spacing(plan);
    let max_delay = plan
        .directed_paths()
        .map(|(_, _, p)| p.delay_ns + 3 * p.jitter_ns)
        .max()
        .unwrap_or(0);
    let drain = Duration::from_nanos(max_delay) + Duration::from_millis(200);
    let (arrivals, sent) = probe_paths(nodes, duration, gap, drain)?;
    let mut paths: Vec<PathCheck> = Vec::new();
    // Paths configured alike form a group, so that loss and reordering get enough samples.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (from, to, imp) in plan.directed_paths() {
        let got: Vec<&Arrival> = arrivals[to as usize]
            .iter()
            .filter(|a| a.from == from)
            .collect();
        let mut delays: Vec<f64> = got.iter().map(|a| a.delay_ns as f64 / 1e3).collect();
        let (median, sd) = robust_center_spread(&mut delays, imp.distribution);
        let n = delays.len().max(1) as f64;
        let configured_delay = imp.delay_ns as f64 / 1e3;
        let configured_sd = imp.jitter_ns as f64 / 1e3;
        let seqs: Vec<u32> = got.iter().map(|a| a.seq).collect();
        let key = format!("{:?}/{:?}/{:?}", imp.loss, imp.burst_loss, imp.reorder);
        let group = match groups.iter().position(|(k, _)| *k == key) {
            Some(g) => g,
            None => {
                groups.push((key, vec![]));
                groups.len() - 1
            }
        };
        groups[group].1.push(paths.len());
        // Only a packet that skips a delay longer than the probe gap can overtake one.
        let overtakes = imp.delay_ns > gap.as_nanos() as u64;
        paths.push(PathCheck {
            from,
            to,
            probes_sent: sent as u64,
            probes_received: got.len() as u64,
            // Standard errors of the median and of the IQR-based deviation (normal case).
            delay_us: Checked::new(
                configured_delay,
                median,
                time_allowance(tol, configured_delay, 1.25 * sd / n.sqrt()),
            ),
            jitter_us: Checked::new(
                configured_sd,
                sd,
                time_allowance(tol, configured_sd, 1.17 * sd / n.sqrt()),
            ),
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
            loss_group: group as u32,
        });
    }
    let mut failures = Vec::new();
    // Loss and reordering: judged over each group's samples together.
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
    let uplinks = plan
        .nodes
        .iter()
        .filter_map(|n| n.uplink_bits_per_sec.map(|r| (n.index, r)))
        .map(|(node, rate)| {
            let to = (node + 1) % nodes.len() as u32;
            let loss = plan.path(node, to).expected_loss();
            probe_rate(
                &nodes[node as usize],
                &nodes[to as usize],
                rate,
                loss,
                tol,
                drain,
            )
            .map(|(rate_bits_per_sec, sender_held_back)| UplinkCheck {
                node,
                rate_bits_per_sec,
                sender_held_back,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let ping = Some(ping_check(nodes, plan, &paths));
    for p in &paths {
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
    for u in &uplinks {
        if !u.rate_bits_per_sec.ok {
            failures.push(format!(
                "uplink of n{}: rate measured {:.1} Mbit/s, configured {:.1} Mbit/s (allowed ±{:.1}){}",
                u.node,
                u.rate_bits_per_sec.measured / 1e6,
                u.rate_bits_per_sec.configured / 1e6,
                u.rate_bits_per_sec.allowed / 1e6,
                if u.sender_held_back {
                    ""
                } else {
                    "; the probe's sender never had to wait, so it, not the link, may be the limit"
                }
            ));
        }
    }
    Ok(LinkCheck {
        schema: stackbench_report::schema::SCHEMA_VERSION,
        mechanism: mechanism.to_owned(),
        emulator_scheduling: None,
        tolerance: format!(
            "{} or {}, whichever is larger, or {Z} standard errors of the estimate where that is larger; loss and reordering over all paths configured alike",
            tol.relative, tol.absolute
        ),
        nodes: plan.nodes.clone(),
        paths,
        uplinks,
        ping,
        failures,
    })
}

fn fmt_value(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        format!("{:.3}%", v * 100.0)
    } else {
        format!("{v:.0}")
    }
}

/// Sends as fast as it can from `from` to `to` for [`RATE_PROBE`] and measures the rate the
/// receiver sees once the rate limiter's initial burst has passed. Returns the check and
/// whether the sender was held back by the link.
fn probe_rate(
    from: &NodeAddr,
    to: &NodeAddr,
    rate: u64,
    loss: f64,
    tol: &Tolerance,
    drain: Duration,
) -> io::Result<(Checked, bool)> {
    let rx = bind_in(to, RATE_PORT)?;
    let tx = bind_in(from, 0)?;
    tx.set_nonblocking(true)?;
    let dest = SocketAddrV4::new(to.ip, RATE_PORT);
    let stop = AtomicBool::new(false);
    let frame = (RATE_PAYLOAD + L2_OVERHEAD) as f64;
    let (arrivals, held_back) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut times = Vec::new();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    times.push(monotonic_ns());
                }
            }
            times
        });
        let payload = [0u8; RATE_PAYLOAD];
        let start = monotonic_ns();
        let mut held_back = false;
        while monotonic_ns() - start < RATE_PROBE.as_nanos() as u64 {
            if let Err(e) = tx.send_to(&payload, dest) {
                held_back |= e.kind() == io::ErrorKind::WouldBlock;
                std::thread::yield_now();
            }
        }
        std::thread::sleep(drain);
        stop.store(true, Ordering::Relaxed);
        (receiver.join().unwrap_or_default(), held_back)
    });
    // From the first quarter (past the bucket's burst and the queue filling) to the 90th
    // percentile (before the last arrivals, whose timestamps a descheduled receiver thread
    // would stretch).
    let (a, b) = (arrivals.len() / 4, arrivals.len() * 9 / 10);
    let measured = if b > a + 10 {
        let span = (arrivals[b] - arrivals[a]) as f64 / 1e9;
        (b - a) as f64 * frame * 8.0 / span / (1.0 - loss)
    } else {
        0.0
    };
    let configured = rate as f64;
    Ok((
        Checked::new(configured, measured, tol.relative.0 * configured),
        held_back,
    ))
}

/// `ping` from node 0 to node 1, beside the probe's RTT for the same pair.
fn ping_check(nodes: &[NodeAddr], plan: &LinkPlan, paths: &[PathCheck]) -> PingCheck {
    let one_way = |from: u32, to: u32| {
        paths
            .iter()
            .find(|p| p.from == from && p.to == to)
            .map_or(f64::NAN, |p| p.delay_us.measured)
    };
    let configured = (plan.path(0, 1).delay_ns + plan.path(1, 0).delay_ns) as f64 / 1e3;
    let mut check = PingCheck {
        from: 0,
        to: 1,
        ping_rtt_us: None,
        ping_error: None,
        probe_rtt_us: one_way(0, 1) + one_way(1, 0),
        configured_rtt_us: configured,
    };
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &nodes[0].netns,
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-q",
            "-W",
            "5",
        ])
        .arg(nodes[1].ip.to_string())
        .output();
    match out {
        Err(e) => check.ping_error = Some(format!("cannot run ping: {e}")),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            match parse_ping(&text) {
                Some(v) => check.ping_rtt_us = Some(v),
                None => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    check.ping_error = Some(
                        if err.contains("No such file") || err.contains("not found") {
                            "ping not found; install it with: apt-get install iputils-ping".into()
                        } else {
                            format!("ping gave no RTT: {}", err.trim())
                        },
                    );
                }
            }
        }
    }
    check
}

/// min/avg/max/mdev in µs from ping's summary line.
fn parse_ping(text: &str) -> Option<[f64; 4]> {
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    let values = line.split('=').nth(1)?.trim().split(' ').next()?;
    let v: Vec<f64> = values
        .split('/')
        .filter_map(|x| x.parse::<f64>().ok())
        .map(|ms| ms * 1e3)
        .collect();
    (v.len() == 4).then(|| [v[0], v[1], v[2], v[3]])
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
        let (median, sd) = robust_center_spread(&mut xs, JitterDistribution::Uniform);
        assert!((median - 30_500.0).abs() < 5.0, "{median}");
        // Uniform over 1000 µs: sd 1000/sqrt(12) = 289 µs.
        assert!((sd - 288.7).abs() < 5.0, "{sd}");
    }

    #[test]
    fn ping_summaries_parse() {
        let t = "--- 198.18.0.2 ping statistics ---\n10 packets transmitted, 10 received, 0% packet loss, time 1803ms\nrtt min/avg/max/mdev = 60.101/60.220/60.512/0.110 ms\n";
        assert_eq!(parse_ping(t), Some([60101.0, 60220.0, 60512.0, 110.0]));
        assert_eq!(parse_ping("100% packet loss"), None);
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
}
