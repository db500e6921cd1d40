//! In-process WireGuard stacks against their crypto-bound ceiling (see
//! [`stackbench_core::ceiling`]): how much of what WireGuard's crypto allows each reached,
//! from the same run's goodput and micro-costs.

use crate::summary::{fmt_rate, LoadedRun};
use stackbench_core::ceiling::{ceilings, Ceiling, FastKernelShare, FAST_KERNEL};

pub const HEADERS: [&str; 8] = [
    "stack",
    "WireGuard library",
    "control goodput (CPU/B)",
    "WireGuard seal+open per B",
    "ceiling",
    "goodput",
    "share of ceiling",
    "share, fast kernel path (reps: control, stack)",
];

fn rows(run: &LoadedRun) -> Vec<Ceiling> {
    match run.floor.as_ref().and_then(|f| f.wireguard.as_ref()) {
        Some(costs) => ceilings(&run.repetitions, costs),
        None => vec![],
    }
}

fn share((mean, min, max): (f64, f64, f64), n: usize) -> String {
    if n > 1 {
        format!("{mean:.2} ({min:.2}–{max:.2})")
    } else {
        format!("{mean:.2}")
    }
}

fn fast_share(f: Option<&FastKernelShare>) -> String {
    match f {
        Some(f) => format!("{:.2} ({}, {})", f.share, f.control_reps, f.stack_reps),
        None => "none in the fast path on one side".into(),
    }
}

/// The section, or `None` when the run measured no in-process WireGuard.
pub fn section(run: &LoadedRun, table: crate::links::TableFn) -> Option<String> {
    let costs = run.floor.as_ref()?.wireguard.as_ref()?;
    let mut out = format!(
        "The ceiling is the goodput the stack's QUIC control (same crypto, no WireGuard, same run) would reach if WireGuard added only its own seal and open per byte, on the CPU budget the control used ({} cores × its busy share). The share of the ceiling a stack misses is its own overhead: copies, locks, smaller batches. The kernel's part of the work (UDP, segmentation offloads, the veth pair) can flip between a fast path and one up to twice as dear from one repetition to the next, for controls and tunnels alike; the last column compares only repetitions whose nodes' system CPU per byte was within {FAST_KERNEL}× of the run's least, on both sides. Costs: {}.\n\n",
        costs.cores, costs.method
    );
    let mut body = vec![];
    let mut missing = vec![];
    for c in rows(run) {
        match c {
            Ceiling::Row(r) => body.push(vec![
                r.stack.clone(),
                r.library.clone(),
                format!(
                    "{} ({:.2} ns)",
                    fmt_rate(r.control_goodput),
                    r.control_ns_per_byte
                ),
                format!("{:.2} ns", r.wg_ns_per_byte),
                fmt_rate(r.ceiling),
                fmt_rate(r.goodput.iter().sum::<f64>() / r.goodput.len().max(1) as f64),
                share(r.fraction(), r.goodput.len()),
                fast_share(r.fast_kernel.as_ref()),
            ]),
            Ceiling::Missing { stack, reason } => {
                missing.push(format!("{stack}: no ceiling, because {reason}"))
            }
        }
    }
    if !body.is_empty() {
        out.push_str(&table(&HEADERS, &body));
    }
    for m in missing {
        out.push_str(&format!("\n{m}\n"));
    }
    Some(out)
}

/// One line per in-process stack for the terminal.
pub fn terminal_lines(run: &LoadedRun) -> String {
    rows(run)
        .into_iter()
        .map(|c| match c {
            Ceiling::Row(r) => format!(
                "crypto-bound ceiling: {} reached {} of its ceiling {}, {} in the fast kernel path ({} + WireGuard {:.2} ns/B over {}'s {:.2} ns/B)\n",
                r.stack,
                share(r.fraction(), r.goodput.len()),
                fmt_rate(r.ceiling),
                fast_share(r.fast_kernel.as_ref()),
                r.library,
                r.wg_ns_per_byte,
                r.control,
                r.control_ns_per_byte
            ),
            Ceiling::Missing { stack, reason } => {
                format!("crypto-bound ceiling: {stack} has none, because {reason}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{
        ClassSummary, MachineFloor, RepetitionSummary, RunManifest, WgCryptoCosts, WgLibraryCost,
    };

    fn rep(stack: &str, goodput: f64) -> RepetitionSummary {
        RepetitionSummary {
            stack: stack.into(),
            cpu_busy_fraction: 1.0,
            classes: vec![ClassSummary {
                name: "bulk".into(),
                goodput_bytes_per_sec: goodput,
                ..ClassSummary::default()
            }],
            ..RepetitionSummary::default()
        }
    }

    fn run(wireguard: Option<WgCryptoCosts>) -> LoadedRun {
        LoadedRun {
            manifest: RunManifest::default(),
            repetitions: vec![
                rep("quic-tls", 1e9),
                rep("quic-tls+wg-gotatun", 0.5e9),
                rep("quic-null+wg-gotatun", 0.5e9),
            ],
            links: None,
            floor: Some(MachineFloor {
                wireguard,
                ..MachineFloor::default()
            }),
            simulation: None,
        }
    }

    #[test]
    fn each_in_process_stack_gets_its_share_or_the_reason_it_has_none() {
        let costs = WgCryptoCosts {
            cores: 2,
            method: "test".into(),
            libraries: vec![WgLibraryCost {
                underlay: "+wg-gotatun".into(),
                library: "gotatun 0.10".into(),
                ns_per_quic_byte: 1.0,
                ..WgLibraryCost::default()
            }],
            ..WgCryptoCosts::default()
        };
        let r = run(Some(costs));
        let s = section(&r, &|h, rows| crate::summary::markdown_table(h, rows)).expect("section");
        assert!(s.contains("| quic-tls+wg-gotatun | gotatun 0.10 |"), "{s}");
        assert!(
            s.contains("| 0.75 | none in the fast path on one side |"),
            "2/3 GB/s ceiling, 0.5 GB/s reached: {s}"
        );
        assert!(
            s.contains("quic-null+wg-gotatun: no ceiling, because its control quic-null"),
            "{s}"
        );
        let t = terminal_lines(&r);
        assert!(
            t.contains("quic-tls+wg-gotatun reached 0.75 of its ceiling"),
            "{t}"
        );
        assert!(section(&run(None), &|_, _| String::new()).is_none());
        assert!(terminal_lines(&run(None)).is_empty());
    }
}
