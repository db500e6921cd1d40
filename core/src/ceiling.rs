//! The crypto-bound ceiling of an in-process WireGuard stack: the goodput its QUIC control
//! (the same QUIC crypto without WireGuard, in the same run) would reach if WireGuard added
//! nothing but its own sealing and opening, on CPUs the control saturates.
//!
//! The control spends `c = cores × busy / goodput` CPU-seconds per byte. WireGuard adds
//! `w`, its seal plus open per QUIC byte, measured in the same run. Sharing the same CPUs,
//! the stack can at best deliver `cores × busy / (c + w)`. Its goodput over that is the
//! share of the ceiling it reaches; what it misses is the stack's own overhead (copies,
//! locks, smaller batches), which is worth closing.
//!
//! On a 2-core VM the kernel's share of the work (the nodes' system CPU per delivered byte:
//! UDP, GSO/GRO, the veth pair) flips from one repetition to the next between a fast path and
//! one about 1.5–1.9× as dear, for controls and tunnels alike, while the user CPU per byte
//! stays within a few percent. That flip, not WireGuard, makes a stack's share swing between
//! runs. A repetition "ran in the fast kernel path" when its kernel CPU per byte is within
//! [`FAST_KERNEL`] of the least of the whole run (every stack sends the same datagrams, so the
//! kernel's work per byte is the same for all); the share among those repetitions alone
//! compares a stack and its control on equal terms.

use crate::schema::{RepetitionSummary, WgCryptoCosts};
use serde::Serialize;

/// One in-process stack against its ceiling, over a run's repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CeilingRow {
    pub stack: String,
    /// The stack without WireGuard, measured in the same run.
    pub control: String,
    pub library: String,
    /// The control's mean goodput, bytes/s, and its CPU per byte, ns.
    pub control_goodput: f64,
    pub control_ns_per_byte: f64,
    /// WireGuard's seal + open per QUIC byte, ns.
    pub wg_ns_per_byte: f64,
    /// The ceiling, bytes/s.
    pub ceiling: f64,
    /// The stack's goodput, bytes/s, one per repetition.
    pub goodput: Vec<f64>,
    /// The share among the repetitions (of the control and of the stack) that ran in the
    /// fast kernel path; `None` when either has none.
    pub fast_kernel: Option<FastKernelShare>,
}

/// A stack's share of its ceiling among repetitions in the fast kernel path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FastKernelShare {
    pub share: f64,
    /// Repetitions that ran in the fast path: the control's and the stack's.
    pub control_reps: usize,
    pub stack_reps: usize,
}

impl CeilingRow {
    /// Share of the ceiling reached: mean, least and most over repetitions.
    pub fn fraction(&self) -> (f64, f64, f64) {
        let f: Vec<f64> = self.goodput.iter().map(|g| g / self.ceiling).collect();
        let mean = f.iter().sum::<f64>() / f.len().max(1) as f64;
        let min = f.iter().copied().fold(f64::INFINITY, f64::min);
        let max = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    }
}

/// What the ceiling is for each in-process stack of a run, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Ceiling {
    Row(CeilingRow),
    /// The stack ran, but its ceiling cannot be computed: the reason.
    Missing {
        stack: String,
        reason: String,
    },
}

/// The control must keep this share of the CPUs busy for its CPU budget to be what bounds
/// it: below, the run was not CPU-bound and has no crypto-bound ceiling.
pub const SATURATED: f64 = 0.9;

/// A repetition ran in the fast kernel path when its kernel CPU per byte is at most this
/// many times the run's least (measured: the fast path sits within ±10%, the slow one at
/// 1.4–1.9×).
pub const FAST_KERNEL: f64 = 1.25;

/// The nodes' system CPU seconds per delivered byte, if the repetition delivered any.
pub fn kernel_seconds_per_byte(r: &RepetitionSummary) -> Option<f64> {
    let bytes = goodput(r) * r.measured_seconds;
    let sys: f64 = r.nodes.iter().map(|n| n.cpu_sys_seconds).sum();
    (bytes > 0.0 && sys > 0.0).then(|| sys / bytes)
}

fn goodput(r: &RepetitionSummary) -> f64 {
    r.classes.iter().map(|c| c.goodput_bytes_per_sec).sum()
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The ceiling of every stack in `reps` whose underlay `costs` measured, in order of
/// first appearance.
pub fn ceilings(reps: &[RepetitionSummary], costs: &WgCryptoCosts) -> Vec<Ceiling> {
    let mut stacks: Vec<&str> = vec![];
    for r in reps {
        if !stacks.contains(&r.stack.as_str()) {
            stacks.push(&r.stack);
        }
    }
    fn of<'a>(
        reps: &'a [RepetitionSummary],
        name: &'a str,
    ) -> impl Iterator<Item = &'a RepetitionSummary> + 'a {
        reps.iter().filter(move |r| r.stack == name)
    }
    let fastest = reps
        .iter()
        .filter_map(kernel_seconds_per_byte)
        .fold(f64::INFINITY, f64::min);
    let fast = |r: &&RepetitionSummary| {
        kernel_seconds_per_byte(r).is_some_and(|k| k <= fastest * FAST_KERNEL)
    };
    // The ceiling from the control's repetitions: (its goodput, its CPU per byte, ceiling).
    let ceiling_of = |control: &[&RepetitionSummary], w: f64| {
        let g = mean(control.iter().map(|r| goodput(r)))?;
        let busy = mean(control.iter().map(|r| r.cpu_busy_fraction))?;
        let budget = costs.cores as f64 * busy;
        let c = budget / g * 1e9;
        Some((g, c, budget / (c + w) * 1e9))
    };
    let mut out = vec![];
    for stack in stacks {
        let Some(lib) = costs
            .libraries
            .iter()
            .find(|l| stack.ends_with(l.underlay.as_str()))
        else {
            continue;
        };
        let control = &stack[..stack.len() - lib.underlay.len()];
        let missing = |reason: String| Ceiling::Missing {
            stack: stack.to_string(),
            reason,
        };
        let (Some(g), Some(busy)) = (
            mean(of(reps, control).map(goodput)),
            mean(of(reps, control).map(|r| r.cpu_busy_fraction)),
        ) else {
            out.push(missing(format!(
                "its control {control} did not run in the same run (add it to the stacks)"
            )));
            continue;
        };
        if g <= 0.0 || busy <= 0.0 || lib.ns_per_quic_byte <= 0.0 {
            out.push(missing(format!(
                "{control} delivered nothing, or used no CPU"
            )));
            continue;
        }
        let w = lib.ns_per_quic_byte;
        let controls: Vec<_> = of(reps, control).collect();
        let Some((g, c, ceiling)) = ceiling_of(&controls, w) else {
            out.push(missing(format!(
                "{control} has no goodput or CPU to compare"
            )));
            continue;
        };
        let fast_controls: Vec<_> = controls.iter().copied().filter(fast).collect();
        let fast_stack: Vec<f64> = of(reps, stack).filter(fast).map(goodput).collect();
        let fast_kernel = ceiling_of(&fast_controls, w)
            .zip(mean(fast_stack.iter().copied()))
            .map(|((_, _, fast_ceiling), g)| FastKernelShare {
                share: g / fast_ceiling,
                control_reps: fast_controls.len(),
                stack_reps: fast_stack.len(),
            });
        out.push(Ceiling::Row(CeilingRow {
            stack: stack.to_string(),
            control: control.to_string(),
            library: lib.library.clone(),
            control_goodput: g,
            control_ns_per_byte: c,
            wg_ns_per_byte: w,
            ceiling,
            goodput: of(reps, stack).map(goodput).collect(),
            fast_kernel,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ClassSummary, WgLibraryCost};

    fn rep(stack: &str, goodput: f64, busy: f64) -> RepetitionSummary {
        RepetitionSummary {
            stack: stack.into(),
            cpu_busy_fraction: busy,
            classes: vec![ClassSummary {
                name: "bulk".into(),
                goodput_bytes_per_sec: goodput,
                ..ClassSummary::default()
            }],
            ..RepetitionSummary::default()
        }
    }

    fn costs() -> WgCryptoCosts {
        WgCryptoCosts {
            cores: 2,
            libraries: vec![WgLibraryCost {
                underlay: "+wg-inproc".into(),
                library: "boringtun".into(),
                ns_per_quic_byte: 1.0,
                ..WgLibraryCost::default()
            }],
            ..WgCryptoCosts::default()
        }
    }

    /// A control at 1 GB/s on 2 saturated cores spends 2 ns a byte; with WireGuard's 1 ns
    /// more, the ceiling is 2/3 GB/s, and a stack at 0.5 GB/s reaches 0.75 of it.
    #[test]
    fn the_ceiling_adds_wireguards_cost_to_the_controls() {
        let reps = [
            rep("quic-tls", 1e9, 1.0),
            rep("quic-tls+wg-inproc", 0.5e9, 1.0),
            rep("quic-tls+wg-inproc", 0.6e9, 1.0),
            rep("quic-null+wg-inproc", 0.5e9, 1.0),
            rep("quic-tls+wg-go", 0.1e9, 1.0),
        ];
        let c = ceilings(&reps, &costs());
        assert_eq!(c.len(), 2, "wg-go has no measured library: {c:?}");
        let Ceiling::Row(row) = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(row.control, "quic-tls");
        assert!((row.control_ns_per_byte - 2.0).abs() < 1e-9, "{row:?}");
        assert!((row.ceiling - 2e9 / 3.0).abs() < 1.0, "{row:?}");
        let (mean, min, max) = row.fraction();
        assert!(
            (min - 0.75).abs() < 1e-9 && (max - 0.9).abs() < 1e-9,
            "{min} {max}"
        );
        assert!((mean - 0.825).abs() < 1e-9);
        match &c[1] {
            Ceiling::Missing { stack, reason } => {
                assert_eq!(stack, "quic-null+wg-inproc");
                assert!(reason.contains("quic-null did not run"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// `rep` whose nodes spent `kernel` seconds of system CPU per delivered byte.
    fn rep_k(stack: &str, goodput: f64, kernel: f64) -> RepetitionSummary {
        RepetitionSummary {
            measured_seconds: 2.0,
            nodes: vec![crate::schema::NodeSummary {
                cpu_sys_seconds: kernel * goodput * 2.0,
                ..Default::default()
            }],
            ..rep(stack, goodput, 1.0)
        }
    }

    /// Repetitions in the slow kernel path (here 2× the fast one's system CPU per byte) are
    /// left out of the fast-path share, on both sides; the all-repetition share keeps them.
    #[test]
    fn the_fast_kernel_share_compares_like_with_like() {
        let reps = [
            rep_k("quic-tls", 1e9, 1e-9),
            rep_k("quic-tls", 0.6e9, 2e-9),
            rep_k("quic-tls+wg-inproc", 0.6e9, 1.1e-9),
            rep_k("quic-tls+wg-inproc", 0.4e9, 2e-9),
        ];
        assert_eq!(kernel_seconds_per_byte(&reps[1]), Some(2e-9));
        let c = ceilings(&reps, &costs());
        let Ceiling::Row(row) = &c[0] else {
            panic!("{c:?}")
        };
        // Fast path: control 1 GB/s, 2 ns/B; + 1 ns/B of WireGuard: ceiling 2/3 GB/s.
        let fast = row
            .fast_kernel
            .as_ref()
            .expect("both have a fast repetition");
        assert_eq!((fast.control_reps, fast.stack_reps), (1, 1));
        assert!((fast.share - 0.9).abs() < 1e-9, "{fast:?}");
        // All: control 0.8 GB/s, 2.5 ns/B, ceiling 0.571 GB/s; the stack's mean 0.5 GB/s.
        assert!(
            (row.fraction().0 - 0.5e9 / (2e9 / 3.5)).abs() < 1e-9,
            "{row:?}"
        );
        // No repetition in the fast path on one side: no fast-path share.
        let slow_only = ceilings(&reps[1..], &costs());
        let Ceiling::Row(row) = &slow_only[0] else {
            panic!("{slow_only:?}")
        };
        assert!(row.fast_kernel.is_none(), "{row:?}");
    }

    /// A control that leaves some CPU idle had a smaller budget: its ceiling shrinks with it.
    /// One that leaves much idle was not CPU-bound, and has no ceiling.
    #[test]
    fn an_unsaturated_control_lowers_the_budget() {
        let full = ceilings(
            &[
                rep("quic-tls", 1e9, 1.0),
                rep("quic-tls+wg-inproc", 1e8, 1.0),
            ],
            &costs(),
        );
        let half = ceilings(
            &[
                rep("quic-tls", 1e9, 0.5),
                rep("quic-tls+wg-inproc", 1e8, 1.0),
            ],
            &costs(),
        );
        match (&full[0], &half[0]) {
            (Ceiling::Row(f), Ceiling::Row(h)) => assert!(h.ceiling < f.ceiling, "{h:?} {f:?}"),
            other => panic!("{other:?}"),
        }
    }
}
