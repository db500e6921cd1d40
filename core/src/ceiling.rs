//! The crypto-bound ceiling of an in-process WireGuard stack: the goodput its QUIC control
//! (the same QUIC crypto without WireGuard, in the same run) would reach if WireGuard added
//! nothing but its own sealing and opening, on CPUs the control saturates.
//!
//! The control spends `c = cores × busy / goodput` CPU-seconds per byte. WireGuard adds
//! `w`, its seal plus open per QUIC byte, measured in the same run. Sharing the same CPUs,
//! the stack can at best deliver `cores × busy / (c + w)`. Its goodput over that is the
//! share of the ceiling it reaches; what it misses is the stack's own overhead (copies,
//! locks, smaller batches), which is worth closing.

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
        let budget = costs.cores as f64 * busy;
        let c = budget / g * 1e9;
        let w = lib.ns_per_quic_byte;
        out.push(Ceiling::Row(CeilingRow {
            stack: stack.to_string(),
            control: control.to_string(),
            library: lib.library.clone(),
            control_goodput: g,
            control_ns_per_byte: c,
            wg_ns_per_byte: w,
            ceiling: budget / (c + w) * 1e9,
            goodput: of(reps, stack).map(goodput).collect(),
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
