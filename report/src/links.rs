//! The network section of summaries and reports: what the scenario asked of the links, what
//! the self-check measured before the run, the `ping` cross-check, and what the userspace
//! emulator did and cost during each repetition.

use crate::schema::{Checked, LinkCheck, RepetitionSummary};
use std::collections::BTreeMap;

pub const PATH_HEADERS: [&str; 7] = [
    "paths",
    "delay (set)",
    "delay (measured, per path)",
    "jitter sd (set)",
    "jitter sd (measured)",
    "loss set / measured",
    "reordered set / measured",
];
pub const UPLINK_HEADERS: [&str; 4] = ["nodes", "uplink (set)", "measured", "verdict"];
pub const EMULATOR_HEADERS: [&str; 8] = [
    "stack",
    "rep",
    "emulator CPU",
    "forwarded",
    "dropped (asked)",
    "refused by port",
    "late p50 / p99",
    "late max",
];

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}us")
    }
}

fn pct(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

fn range(values: impl Iterator<Item = f64>, f: fn(f64) -> String) -> String {
    let v: Vec<f64> = values.collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "-".into()
    } else if f(lo) == f(hi) {
        f(lo)
    } else {
        format!("{}..{}", f(lo), f(hi))
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        ""
    } else {
        " ✗"
    }
}

/// Paths grouped by what was configured, with the range of what was measured.
pub fn path_rows(c: &LinkCheck) -> Vec<[String; 7]> {
    let mut groups: BTreeMap<(u64, u64, u32), Vec<usize>> = BTreeMap::new();
    for (i, p) in c.paths.iter().enumerate() {
        let key = (
            p.delay_us.configured.round() as u64,
            p.jitter_us.configured.round() as u64,
            p.loss_group,
        );
        groups.entry(key).or_default().push(i);
    }
    groups
        .values()
        .map(|members| {
            let ps: Vec<_> = members.iter().map(|&i| &c.paths[i]).collect();
            let first = ps[0];
            let all_ok = |f: fn(&crate::schema::PathCheck) -> &Checked| ps.iter().all(|p| f(p).ok);
            let sent: f64 = ps.iter().map(|p| p.probes_sent as f64).sum();
            let got: f64 = ps.iter().map(|p| p.probes_received as f64).sum();
            let early: f64 = ps
                .iter()
                .map(|p| p.reorder.measured * p.probes_received as f64)
                .sum::<f64>()
                / got.max(1.0);
            let names = if ps.len() <= 3 {
                ps.iter()
                    .map(|p| format!("n{}→n{}", p.from, p.to))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                format!("{} paths", ps.len())
            };
            [
                names,
                ms(first.delay_us.configured),
                format!(
                    "{}{}",
                    range(ps.iter().map(|p| p.delay_us.measured), ms),
                    verdict(all_ok(|p| &p.delay_us))
                ),
                ms(first.jitter_us.configured),
                format!(
                    "{}{}",
                    range(ps.iter().map(|p| p.jitter_us.measured), ms),
                    verdict(all_ok(|p| &p.jitter_us))
                ),
                format!(
                    "{} / {} of {sent}{}",
                    pct(first.loss.configured),
                    pct(1.0 - got / sent.max(1.0)),
                    verdict(first.loss.ok)
                ),
                format!(
                    "{} / {}{}",
                    pct(first.reorder.configured),
                    pct(early),
                    verdict(first.reorder.ok)
                ),
            ]
        })
        .collect()
}

/// Whether a group of uplinks' rates were verified, and by what.
fn rate_verdict(us: &[&crate::schema::UplinkCheck]) -> String {
    use crate::schema::RateVerdict;
    let mbit = |b: f64| format!("{:.0}Mbit/s", b / 1e6);
    if us.iter().any(|u| u.verdict == RateVerdict::Off) {
        "OFF".into()
    } else if us.iter().any(|u| u.verdict == RateVerdict::NotVerified) {
        format!(
            "NOT VERIFIED (probe's sender reached {})",
            range(us.iter().map(|u| u.offered_bits_per_sec), mbit)
        )
    } else if us.iter().all(|u| u.sender_held_back) {
        "verified; the link held the sender back".into()
    } else {
        "verified".into()
    }
}

pub fn uplink_rows(c: &LinkCheck) -> Vec<[String; 4]> {
    let mbit = |b: f64| format!("{:.1}Mbit/s", b / 1e6);
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, u) in c.uplinks.iter().enumerate() {
        groups
            .entry(u.rate_bits_per_sec.configured as u64)
            .or_default()
            .push(i);
    }
    groups
        .iter()
        .map(|(rate, members)| {
            let us: Vec<_> = members.iter().map(|&i| &c.uplinks[i]).collect();
            [
                us.iter()
                    .map(|u| format!("n{}", u.node))
                    .collect::<Vec<_>>()
                    .join(" "),
                mbit(*rate as f64),
                format!(
                    "{}{}",
                    range(us.iter().map(|u| u.rate_bits_per_sec.measured), mbit),
                    verdict(us.iter().all(|u| u.rate_bits_per_sec.ok))
                ),
                rate_verdict(&us),
            ]
        })
        .collect()
}

pub fn emulator_rows(reps: &[RepetitionSummary]) -> Vec<[String; 8]> {
    reps.iter()
        .filter_map(|r| r.link_emulator.as_ref().map(|e| (r, e)))
        .map(|(r, e)| {
            [
                r.stack.clone(),
                r.repetition.to_string(),
                format!("{:.2}s", e.cpu_seconds),
                format!(
                    "{} pkts, {:.1} MB",
                    e.forwarded_packets,
                    e.forwarded_bytes as f64 / 1e6
                ),
                e.dropped_packets.to_string(),
                e.send_errors.to_string(),
                format!("{}us / {}us", e.lateness_us.p50, e.lateness_us.p99),
                format!("{}us", e.lateness_us.max),
            ]
        })
        .collect()
}

/// One sentence: `ping`'s RTT beside the probe's and the configured one.
pub fn ping_line(c: &LinkCheck) -> String {
    let Some(p) = &c.ping else {
        return "no ping cross-check".into();
    };
    let ping = match (&p.ping_rtt_us, &p.ping_error) {
        (Some([min, avg, max, mdev]), _) => format!(
            "ping avg {} (min {}, max {}, mdev {})",
            ms(*avg),
            ms(*min),
            ms(*max),
            ms(*mdev)
        ),
        (None, Some(e)) => format!("ping: {e}"),
        (None, None) => "ping: no result".into(),
    };
    format!(
        "Idle RTT n{}↔n{}: {ping}; stackbench probe {}; configured {}.",
        p.from,
        p.to,
        ms(p.probe_rtt_us),
        ms(p.configured_rtt_us)
    )
}

/// One line for the terminal.
pub fn terminal_line(c: &LinkCheck) -> String {
    format!(
        "links: {}; self-check {}{} on {} paths and {} uplinks. {}\n",
        c.mechanism,
        match (c.failures.is_empty(), c.unchecked, c.warnings.is_empty()) {
            (false, true, _) => "FAILED (not enforced: --unchecked-links)",
            (false, false, _) => "FAILED",
            (true, _, false) => "passed, with values not verified",
            (true, _, true) => "passed",
        },
        match c.discarded_attempts.len() {
            0 => String::new(),
            n => format!(" (probe {} of {})", n + 1, n + 1),
        },
        c.paths.len(),
        c.uplinks.len(),
        ping_line(c)
    )
}

/// A renderer of one table: headers, then rows.
pub type TableFn<'a> = &'a dyn Fn(&[&str], &[Vec<String>]) -> String;

/// The section as text, its tables drawn by `table` (Markdown or HTML).
pub fn section(c: &LinkCheck, reps: &[RepetitionSummary], table: TableFn) -> String {
    let mut s = format!(
        "Mechanism: {}{}. Checked before the run; tolerance: {}.\n\n",
        c.mechanism,
        c.emulator_scheduling
            .as_ref()
            .map(|x| format!(" (scheduling: {x})"))
            .unwrap_or_default(),
        c.tolerance
    );
    if let Some(cov) = &c.coverage {
        s.push_str(&format!(
            "Probed: {}; {} probes per path; the check took {:.1} s.\n\n",
            cov.summary,
            cov.probes_per_path,
            cov.wall_ms as f64 / 1e3
        ));
    }
    for (i, attempt) in c.discarded_attempts.iter().enumerate() {
        s.push_str(&format!(
            "Probe {} was discarded and the links probed again; it found: {attempt}.\n\n",
            i + 1
        ));
    }
    s.push_str(&table(
        &PATH_HEADERS,
        &path_rows(c).into_iter().map(Vec::from).collect::<Vec<_>>(),
    ));
    if !c.uplinks.is_empty() {
        s.push('\n');
        s.push_str(&table(
            &UPLINK_HEADERS,
            &uplink_rows(c)
                .into_iter()
                .map(Vec::from)
                .collect::<Vec<_>>(),
        ));
    }
    s.push_str(&format!("\n{}\n", ping_line(c)));
    let emu = emulator_rows(reps);
    if !emu.is_empty() {
        s.push_str("\nThe userspace emulator during each repetition (its CPU competes with the stacks'; lateness is its own timing error):\n\n");
        s.push_str(&table(
            &EMULATOR_HEADERS,
            &emu.into_iter().map(Vec::from).collect::<Vec<_>>(),
        ));
    }
    s
}

/// The mark every output of a run carries when its links were not held to the scenario
/// (`--unchecked-links`); `None` for a checked run.
pub fn unchecked_banner(m: &crate::schema::RunManifest) -> Option<String> {
    m.links_not_verified
        .as_ref()
        .map(|why| format!("LINKS NOT VERIFIED: {why}"))
}

/// What the self-check could not verify (a rate the probe's sender could not reach).
pub fn check_warnings(c: Option<&LinkCheck>) -> Vec<String> {
    c.map(|c| {
        c.warnings
            .iter()
            .map(|w| format!("self-check: {w}"))
            .collect()
    })
    .unwrap_or_default()
}

/// Warnings about the emulator: frames it lost that the scenario did not ask for.
pub fn warnings(reps: &[RepetitionSummary]) -> Vec<String> {
    reps.iter()
        .filter_map(|r| r.link_emulator.as_ref().map(|e| (r, e)))
        .filter(|(_, e)| e.send_errors > 0)
        .map(|(r, e)| {
            format!(
                "{} rep {}: the link emulator could not deliver {} frames (a port's queue was full): losses the scenario did not ask for",
                r.stack, r.repetition, e.send_errors
            )
        })
        .collect()
}
