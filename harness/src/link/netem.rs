//! The netem mechanism, for kernels that have the qdisc: the same plan as the userspace
//! emulator, applied on each node's egress as `netem` (delay, jitter, loss, reordering) with
//! the uplink's `tbf` as its child, so packets are delayed first and then rate-limited.
//!
//! Where the two mechanisms could differ, the netem side is set to match the model:
//! - jitter never reorders: netem's `rate` option (set far above any link) makes each
//!   packet's release time no earlier than its predecessor's, as the model does;
//! - random and bursty loss together become one Gilbert-Elliott model whose per-state loss
//!   includes the random loss (netem takes one loss model);
//! - uniform jitter of standard deviation σ is netem's default uniform ±√3σ.
//!
//! One netem per egress cannot give different destinations different delays, so a plan
//! whose paths from one node differ (a region matrix) is not netem's: `auto` then uses the
//! userspace emulator and says why.

use super::plan::{LinkPlan, PathImpairment};
use crate::{scenario::JitterDistribution, units::BitRate};

/// netem's `rate` where jitter is on: only there to keep packets in order (100 Gbit/s adds
/// 0.1 ns per 1500 B frame).
const ORDER_KEEPING_RATE: &str = "100gbit";
/// netem's own queue, in packets: it holds every packet in flight on the delayed path.
const LIMIT: &str = "1000000";

/// Why netem cannot apply `plan`, if it cannot.
pub fn unsupported(plan: &LinkPlan) -> Option<String> {
    plan.paths.iter().enumerate().find_map(|(from, row)| {
        let mut others = row.iter().enumerate().filter(|(to, _)| *to != from);
        let (_, first) = others.next()?;
        let (to, _) = others.find(|(_, p)| *p != first)?;
        Some(format!(
            "paths from node {from} differ by destination (e.g. to node {to}), and one netem per egress cannot tell destinations apart"
        ))
    })
}

fn pct(x: f64) -> String {
    format!("{}%", (x * 100.0 * 1e6).round() / 1e6)
}

/// netem's arguments for one path's impairment.
pub fn netem_args(p: &PathImpairment) -> Vec<String> {
    let mut a: Vec<String> = vec!["netem".into(), "limit".into(), LIMIT.into()];
    if p.delay_ns > 0 || p.jitter_ns > 0 {
        a.extend(["delay".into(), format!("{}us", p.delay_ns / 1_000)]);
        if p.jitter_ns > 0 {
            match p.distribution {
                JitterDistribution::Normal => {
                    a.extend([
                        format!("{}us", p.jitter_ns / 1_000),
                        "distribution".into(),
                        "normal".into(),
                    ]);
                }
                JitterDistribution::Uniform => {
                    let half = (p.jitter_ns as f64 * 3f64.sqrt() / 1_000.0).round();
                    a.push(format!("{half}us"));
                }
            }
        }
    }
    match p.burst_loss {
        Some(ge) => {
            let with_random = |x: f64| 1.0 - (1.0 - x) * (1.0 - p.loss);
            a.extend([
                "loss".into(),
                "gemodel".into(),
                pct(ge.p),
                pct(ge.r),
                pct(with_random(ge.loss_in_bad)),
                pct(with_random(ge.loss_in_good)),
            ]);
        }
        None if p.loss > 0.0 => a.extend(["loss".into(), "random".into(), pct(p.loss)]),
        None => {}
    }
    if p.reorder > 0.0 {
        a.extend(["reorder".into(), pct(p.reorder)]);
    }
    if p.jitter_ns > 0 {
        a.extend(["rate".into(), ORDER_KEEPING_RATE.into()]);
    }
    a
}

/// The `tc` argument lists that give node `index` its egress: netem at the root, the
/// uplink's TBF (if any) as its child. `burst` sizes the TBF bucket.
pub fn node_commands(
    plan: &LinkPlan,
    index: u32,
    burst: impl Fn(BitRate) -> u64,
) -> Vec<Vec<String>> {
    let node = &plan.nodes[index as usize];
    let to = if index == 0 { 1 } else { 0 };
    let dev = ["dev", crate::topology::NODE_IFACE];
    let mut netem: Vec<String> = ["qdisc", "replace"]
        .iter()
        .chain(&dev)
        .chain(&["root", "handle", "1:"])
        .map(|s| s.to_string())
        .collect();
    netem.extend(netem_args(plan.path(index, to)));
    let mut out = vec![netem];
    if let Some(rate) = node.uplink_bits_per_sec {
        out.push(
            ["qdisc", "add"]
                .iter()
                .chain(&dev)
                .map(|s| s.to_string())
                .chain([
                    "parent".into(),
                    "1:1".into(),
                    "handle".into(),
                    "2:".into(),
                    "tbf".into(),
                    "rate".into(),
                    format!("{rate}bit"),
                    "burst".into(),
                    format!("{}b", burst(BitRate(rate))),
                    "latency".into(),
                    format!("{}us", node.queue_us.max(1)),
                ])
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::plan::BurstLoss;

    #[test]
    fn arguments_follow_the_model() {
        let p = PathImpairment {
            delay_ns: 30_000_000,
            jitter_ns: 1_000_000,
            loss: 0.01,
            reorder: 0.02,
            ..PathImpairment::NONE
        };
        assert_eq!(
            netem_args(&p).join(" "),
            "netem limit 1000000 delay 30000us 1000us distribution normal loss random 1% reorder 2% rate 100gbit"
        );
        let uniform = PathImpairment {
            distribution: JitterDistribution::Uniform,
            loss: 0.0,
            reorder: 0.0,
            ..p
        };
        assert!(netem_args(&uniform)
            .join(" ")
            .contains("delay 30000us 1732us rate"));
        let bursty = PathImpairment {
            jitter_ns: 0,
            reorder: 0.0,
            burst_loss: Some(BurstLoss {
                p: 0.001,
                r: 0.25,
                loss_in_bad: 1.0,
                loss_in_good: 0.0,
            }),
            ..p
        };
        // The random 1% joins each state's own loss: 100% in bad, 1% in good.
        assert_eq!(
            netem_args(&bursty).join(" "),
            "netem limit 1000000 delay 30000us loss gemodel 0.1% 25% 100% 1%"
        );
    }
}
