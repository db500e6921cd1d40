//! Measurement primitives: HDR histograms and their encodings, CPU and interface counters,
//! the shared monotonic clock.

use crate::control::NetCounters;
use std::collections::BTreeMap;

pub use stackbench_core::histogram::{
    decode_histogram, encode_histogram, new_histogram, record, HistogramCodecError,
};

/// CLOCK_MONOTONIC in ns: one clock for every process (and namespace) on the host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's CPU time so far: (user µs, system µs).
pub fn process_cpu_us() -> (u64, u64) {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an owned rusage; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// User plus system CPU seconds of process `pid` (all its threads) so far, from /proc.
/// This process's peak resident memory (VmHWM), bytes; 0 where /proc does not say.
pub fn max_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// A `kB` field of `/proc/self/status`, 0 where it is missing.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// This process's resident memory and open file descriptors now, `t_s` into the run.
pub fn resource_sample(t_s: f64) -> stackbench_core::schema::ResourceSample {
    stackbench_core::schema::ResourceSample {
        t_s,
        rss_bytes: status_kib("VmRSS:") * 1024,
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u32),
    }
}

pub fn pid_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    parse_stat(&stat).1
}

/// The parent pid and the CPU seconds (user + system) of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> (u32, f64) {
    // Fields after the parenthesised command name: state, ppid, ..., utime (14), stime (15).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ppid = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ppid, (num(11) + num(12)) / hz)
}

/// CPU seconds used so far by the kernel's own threads (children of kthreadd), where kernel
/// WireGuard encrypts and decrypts (its per-interface `wg-crypt` workqueues). Threads that
/// exited meanwhile are not counted.
pub fn kernel_threads_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (ppid, secs) =
                parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?);
            (ppid == 2).then_some(secs)
        })
        .sum()
}

/// Interface counters of the caller's network namespace, from /proc/self/net/dev.
pub fn net_counters() -> BTreeMap<String, NetCounters> {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> BTreeMap<String, NetCounters> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() >= 10).then(|| {
                (
                    name.trim().to_owned(),
                    NetCounters {
                        rx_bytes: f[0],
                        rx_packets: f[1],
                        tx_bytes: f[8],
                        tx_packets: f[9],
                    },
                )
            })
        })
        .filter(|(name, _)| name != "lo")
        .collect()
}

/// Counters from /proc/self/net/snmp of the caller's network namespace: UDP receive-buffer
/// drops and IP fragments created (the tunnel MTUs are sized so that there are none).
pub fn snmp_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/net/snmp").unwrap_or_default();
    (
        parse_snmp(&text, "Udp:", "RcvbufErrors").unwrap_or(0),
        parse_snmp(&text, "Ip:", "FragCreates").unwrap_or(0),
    )
}

fn parse_snmp(text: &str, table: &str, field: &str) -> Option<u64> {
    let mut rows = text.lines().filter(|l| l.starts_with(table));
    let (names, values) = (rows.next()?, rows.next()?);
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Per-interface difference `after - before`.
pub fn net_delta(
    before: &BTreeMap<String, NetCounters>,
    after: &BTreeMap<String, NetCounters>,
) -> BTreeMap<String, NetCounters> {
    after
        .iter()
        .map(|(k, a)| {
            let b = before.get(k).copied().unwrap_or_default();
            let d = NetCounters {
                rx_bytes: a.rx_bytes.saturating_sub(b.rx_bytes),
                rx_packets: a.rx_packets.saturating_sub(b.rx_packets),
                tx_bytes: a.tx_bytes.saturating_sub(b.tx_bytes),
                tx_packets: a.tx_packets.saturating_sub(b.tx_packets),
            };
            (k.clone(), d)
        })
        .collect()
}

/// Host-wide CPU time so far, in seconds summed over all CPUs, from /proc/stat: (softirq,
/// busy). Kernel network work (and kernel WireGuard) runs in softirq rather than in any
/// node; busy time includes every process on the host, ours or not.
pub fn host_cpu_seconds() -> (f64, f64) {
    let field = host_cpu_fields();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy = field[0] + field[1] + field[2] + field[5] + field[6] + field[7];
    (field[6], busy)
}

/// CPU seconds the hypervisor has taken from this virtual machine so far ("steal", summed
/// over all CPUs; 0 on bare metal): time in which nothing here ran, emulated links included.
pub fn host_steal_seconds() -> f64 {
    host_cpu_fields()[7]
}

/// The first eight fields of /proc/stat's "cpu" line, in seconds (zeros where unreadable).
fn host_cpu_fields() -> [f64; 8] {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut fields = [0.0; 8];
    if let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) {
        for (f, v) in fields.iter_mut().zip(line.split_whitespace().skip(1)) {
            *f = v.parse().unwrap_or(0.0);
        }
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    fields.map(|t| t / hz)
}

/// The busiest `window_s` seconds among `samples` of (time s, host busy CPU seconds), as a
/// share of `cores` CPUs: saturation that a whole repetition's average dilutes.
pub fn peak_busy_fraction(samples: &[(f64, f64)], window_s: f64, cores: f64) -> f64 {
    let mut peak: f64 = 0.0;
    let mut start = 0;
    for end in 0..samples.len() {
        while start < end && samples[end].0 - samples[start + 1].0 >= window_s {
            start += 1;
        }
        let (t0, b0) = samples[start];
        let (t1, b1) = samples[end];
        if t1 - t0 >= window_s {
            peak = peak.max((b1 - b0) / ((t1 - t0) * cores));
        }
    }
    peak.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_second_is_found_in_a_quiet_run() {
        // 2 cores; 10 s sampled every 100 ms: idle but for one second fully busy.
        let samples: Vec<(f64, f64)> = (0..=100)
            .map(|i| i as f64 / 10.0)
            .map(|t: f64| (t, 2.0 * (t - 4.0).clamp(0.0, 1.0)))
            .collect();
        let peak = peak_busy_fraction(&samples, 1.0, 2.0);
        assert!((peak - 1.0).abs() < 1e-9, "{peak}");
        let flat: Vec<(f64, f64)> = (0..=100)
            .map(|i| (i as f64 / 10.0, i as f64 / 10.0))
            .collect();
        assert!((peak_busy_fraction(&flat, 1.0, 2.0) - 0.5).abs() < 1e-9);
        assert_eq!(
            peak_busy_fraction(&flat[..5], 1.0, 2.0),
            0.0,
            "shorter than a window"
        );
    }

    #[test]
    fn stat_lines_give_parent_and_cpu() {
        // A command name with spaces and parentheses, as kworkers have.
        let line = "42 (kworker/0:1-wg-crypt-sb1 (x)) I 2 0 0 0 -1 69238880 0 0 0 0 300 100 0 0 20 0 1 0 5 0 0";
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(parse_stat(line), (2, 400.0 / hz));
        assert_eq!(parse_stat("garbage"), (0, 0.0));
    }

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0:     573       7    0    0    0     0          0         0      205       3    0    0    0     0       0          0\n";
        let m = parse_net_dev(text);
        assert_eq!(m.len(), 1, "loopback is left out");
        assert_eq!(
            m["eth0"],
            NetCounters {
                rx_bytes: 573,
                rx_packets: 7,
                tx_bytes: 205,
                tx_packets: 3
            }
        );
    }

    #[test]
    fn parses_proc_net_snmp() {
        let text = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 12 7 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp(text, "Udp:", "RcvbufErrors"), Some(7));
        assert_eq!(parse_snmp(text, "Udp:", "Missing"), None);
        assert_eq!(parse_snmp(text, "Ip:", "FragCreates"), None);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(monotonic_ns() >= a + 2_000_000);
    }
}
