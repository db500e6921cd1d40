//! What a mixed network or an upgrade did, from what the nodes reported: the phases before,
//! during and after the upgrade (by each object's intended send time, which the seeded
//! schedule gives back), what each lost and how fast it spread, and what running two
//! stacks cost in CPU and bytes on the wire.

use crate::{
    control::{NodeReport, UsageSample},
    scenario::network::Strategy,
    schema::{
        network::{NetworkSummary, PhaseClass, PhaseSummary, UpgradePoint, UpgradeSummary},
        Percentiles,
    },
    workload::{network::NetworkPlan, reach_times, Schedule, WorkloadPlan},
};
use std::{collections::HashMap, time::Duration};

/// The host's cumulative busy CPU seconds at instants, s from the start of sending.
pub type HostBusy = [(f64, f64)];

/// What `plan.network` ran, or `None` for one stack on every node.
pub fn summarize(
    plan: &WorkloadPlan,
    reports: &[NodeReport],
    host_busy: &HostBusy,
    cores: f64,
) -> Option<NetworkSummary> {
    let net = &plan.network;
    if net.is_single() {
        return None;
    }
    Some(NetworkSummary {
        stacks: net.stacks.clone(),
        composition: net.composition(),
        edges: {
            let mut by = std::collections::BTreeMap::new();
            for (u, v) in plan.fanout.graph.edges() {
                let slot = net.dial_slot(u.min(v), u.max(v)).unwrap_or_default();
                *by.entry(net.stacks[slot as usize].clone()).or_default() += 1;
            }
            by
        },
        fallbacks: reports.iter().flat_map(|r| r.fallbacks.clone()).collect(),
        upgrade: net
            .upgrade
            .as_ref()
            .map(|_| upgrade(plan, net, reports, host_busy, cores)),
    })
}

fn us(s: u64) -> f64 {
    s as f64 / 1e6
}

fn upgrade(
    plan: &WorkloadPlan,
    net: &NetworkPlan,
    reports: &[NodeReport],
    host_busy: &HostBusy,
    cores: f64,
) -> UpgradeSummary {
    // Validated: an upgrade network has its plan.
    let u = net.upgrade.as_ref().expect("an upgrade plan");
    let records: Vec<_> = reports.iter().filter_map(|r| r.upgrade.as_ref()).collect();
    // Restart: a node is done once every neighbour is connected again, on the new stack.
    let degree: HashMap<u32, u32> = reports
        .iter()
        .map(|r| (r.index, plan.fanout.graph.neighbours(r.index).len() as u32))
        .collect();
    // The upgrade begins at the earlier of the plan's first start and the first node's
    // measured one: a node that starts late still drops what is in flight at the planned
    // instant, and that loss belongs to "during", as the partition model says.
    let planned_began_s =
        u.at.iter()
            .map(Duration::as_secs_f64)
            .fold(f64::INFINITY, f64::min);
    let began_s = records
        .iter()
        .map(|r| us(r.began_us))
        .fold(planned_began_s, f64::min);
    let done = |index: u32, r: &crate::control::NodeUpgrade| match u.strategy {
        Strategy::Dual => r.old_dropped_us,
        Strategy::Restart => r
            .last_connected_us
            .filter(|_| r.dialled + r.accepted >= degree.get(&index).copied().unwrap_or(0)),
    };
    let finished: Vec<f64> = reports
        .iter()
        .filter_map(|r| done(r.index, r.upgrade.as_ref()?))
        .map(us)
        .collect();
    let unfinished_nodes = plan.nodes - finished.len() as u32;
    let send_end = plan.send_end().as_secs_f64();
    let finished_s = if unfinished_nodes > 0 || finished.is_empty() {
        send_end
    } else {
        finished.iter().copied().fold(began_s, f64::max)
    };
    let began_s = if began_s.is_finite() {
        began_s
    } else {
        send_end
    };
    let warmup = plan.warmup.as_secs_f64();
    let spans = [
        ("before", warmup, began_s.max(warmup)),
        ("during", began_s.max(warmup), finished_s.min(send_end)),
        ("after", finished_s.min(send_end), send_end),
    ];
    let intended = intended_times(plan);
    let mut by_object: HashMap<(u16, u8, u64), Vec<u64>> = HashMap::new();
    for r in reports {
        for &(o, c, s, l) in &r.deliveries {
            by_object.entry((o, c, s)).or_default().push(l);
        }
    }
    let phases = spans
        .iter()
        .map(|&(phase, a, b)| PhaseSummary {
            phase: phase.into(),
            from_s: a,
            to_s: b,
            host_cpu_fraction: rate(host_busy, a, b) / cores.max(1.0),
            node_cpu_cores: reports
                .iter()
                .map(|r| usage_rate(&r.usage, a, b, |s| s.cpu_us as f64 / 1e6))
                .sum(),
            wire_bytes_per_s: reports
                .iter()
                .map(|r| usage_rate(&r.usage, a, b, |s| s.tx_bytes as f64))
                .sum(),
            classes: phase_classes(plan, &intended, &mut by_object, a, b),
        })
        .collect();
    let mut handshakes: Vec<u64> = records
        .iter()
        .flat_map(|r| r.handshake_us.iter().copied())
        .collect();
    let mut endpoint: Vec<u64> = records.iter().map(|r| r.endpoint_us).collect();
    UpgradeSummary {
        from: net.stacks[u.from as usize].clone(),
        to: net.stacks[u.to as usize].clone(),
        strategy: u.strategy.name().into(),
        nodes: plan.nodes,
        began_s,
        finished_s,
        unfinished_nodes,
        // Each connection is dialled by one end (and accepted by the other).
        connections: records.iter().map(|r| r.dialled).sum(),
        dial_failures: records.iter().map(|r| r.dial_failures).sum(),
        handshake_us: Percentiles::from_samples(&mut handshakes),
        endpoint_us: Percentiles::from_samples(&mut endpoint),
        phases,
        timeline: timeline(u.strategy, reports, plan.nodes),
    }
}

/// Every open-loop object's intended send time, by (origin, class, seq).
pub fn intended_times(plan: &WorkloadPlan) -> HashMap<(u16, u8, u64), Duration> {
    let mut out = HashMap::new();
    for n in 0..plan.nodes {
        let mut s = Schedule::new(plan, n);
        while let Some(e) = s.pop_due(Duration::MAX) {
            out.insert((n as u16, e.class, e.seq), e.intended);
        }
    }
    out
}

fn phase_classes(
    plan: &WorkloadPlan,
    intended: &HashMap<(u16, u8, u64), Duration>,
    by_object: &mut HashMap<(u16, u8, u64), Vec<u64>>,
    a: f64,
    b: f64,
) -> Vec<PhaseClass> {
    let receivers = plan.receivers_per_object();
    plan.classes
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.arrival.is_backlog())
        .map(|(ci, c)| {
            let mut pc = PhaseClass {
                class: c.name.clone(),
                ..Default::default()
            };
            let (mut lat, mut r90, mut r100) = (vec![], vec![], vec![]);
            for (key, t) in intended {
                let t_s = t.as_secs_f64();
                if key.1 as usize != ci || !plan.is_measured(*t) || t_s < a || t_s >= b {
                    continue;
                }
                pc.objects += 1;
                pc.predicted_lost +=
                    (receivers - plan.network.reachable(plan, key.0 as u32, *t)) as u64;
                let Some(lats) = by_object.get_mut(key) else {
                    pc.unreached_90 += 1;
                    pc.unreached_100 += 1;
                    continue;
                };
                pc.delivered += lats.len() as u64;
                lat.extend_from_slice(lats);
                let reach = reach_times(lats, receivers);
                match reach[1] {
                    Some(t) => r90.push(t),
                    None => pc.unreached_90 += 1,
                }
                match reach[3] {
                    Some(t) => r100.push(t),
                    None => pc.unreached_100 += 1,
                }
            }
            pc.expected = pc.objects * receivers as u64;
            pc.lost = pc.expected.saturating_sub(pc.delivered);
            pc.latency_us = Percentiles::from_samples(&mut lat);
            pc.reach_90_us = Percentiles::from_samples(&mut r90);
            pc.reach_100_us = Percentiles::from_samples(&mut r100);
            pc
        })
        .collect()
}

/// A cumulative series' value at `t`, interpolated linearly (clamped at the ends).
fn at(points: &[(f64, f64)], t: f64) -> f64 {
    match points.iter().position(|p| p.0 >= t) {
        None => points.last().map_or(0.0, |p| p.1),
        Some(0) => points[0].1,
        Some(i) => {
            let (p, q) = (points[i - 1], points[i]);
            let span = q.0 - p.0;
            if span <= 0.0 {
                q.1
            } else {
                p.1 + (q.1 - p.1) * (t - p.0) / span
            }
        }
    }
}

/// How fast a cumulative series grew between `a` and `b`, per second.
fn rate(points: &[(f64, f64)], a: f64, b: f64) -> f64 {
    if b <= a || points.len() < 2 {
        return 0.0;
    }
    (at(points, b) - at(points, a)) / (b - a)
}

fn usage_rate(samples: &[UsageSample], a: f64, b: f64, f: impl Fn(&UsageSample) -> f64) -> f64 {
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (us(s.t_us), f(s))).collect();
    rate(&points, a, b)
}

/// The share of nodes on the new stack, and running both, at each change.
fn timeline(strategy: Strategy, reports: &[NodeReport], nodes: u32) -> Vec<UpgradePoint> {
    // (time, change in on_new, change in dual)
    let mut changes: Vec<(f64, i32, i32)> = vec![];
    for r in reports.iter().filter_map(|r| r.upgrade.as_ref()) {
        let up = us(r.began_us + r.endpoint_us);
        changes.push((up, 1, (strategy == Strategy::Dual) as i32));
        if let Some(d) = r.old_dropped_us {
            changes.push((us(d), 0, -1));
        }
    }
    changes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = nodes.max(1) as f64;
    let (mut on_new, mut dual) = (0i32, 0i32);
    let mut out = vec![UpgradePoint::default()];
    for (t, dn, dd) in changes {
        on_new += dn;
        dual += dd;
        out.push(UpgradePoint {
            t_s: t,
            on_new: on_new as f64 / n,
            dual: dual as f64 / n,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        control::NodeUpgrade,
        scenario::network::Strategy,
        workload::{example_plan, network::UpgradePlan},
    };

    fn upgrade_plan() -> WorkloadPlan {
        let mut plan = example_plan();
        plan.network = NetworkPlan {
            name: "up".into(),
            stacks: vec!["quic-tls".into(), "quic-null+wg-inproc".into()],
            speaks: vec![vec![0]; 3],
            upgrade: Some(UpgradePlan {
                from: 0,
                to: 1,
                strategy: Strategy::Dual,
                at: vec![Duration::from_secs(2); 3],
                rank: vec![0, 1, 2],
                grace: Duration::from_millis(500),
                downtime: Duration::ZERO,
            }),
        };
        plan
    }

    /// Every node got every object of every other origin, 1 ms after it was due, except
    /// node 2, which lost what was intended in [2.5 s, 3 s).
    fn reports(plan: &WorkloadPlan) -> Vec<NodeReport> {
        let intended = intended_times(plan);
        (0..3u32)
            .map(|n| NodeReport {
                index: n,
                deliveries: intended
                    .iter()
                    .filter(|((o, _, _), t)| {
                        *o as u32 != n
                            && plan.is_measured(**t)
                            && !(n == 2 && (2.5..3.0).contains(&t.as_secs_f64()))
                    })
                    .map(|((o, c, s), _)| (*o, *c, *s, 1000))
                    .collect(),
                upgrade: Some(NodeUpgrade {
                    began_us: 2_000_000,
                    endpoint_us: 1_000,
                    dialled: n,
                    accepted: 2 - n,
                    old_dropped_us: Some(3_000_000 + n as u64 * 100_000),
                    ..Default::default()
                }),
                usage: (0..=50)
                    .map(|k| UsageSample {
                        t_us: k * 100_000,
                        // One core busy, twice that while both stacks run.
                        cpu_us: k * 100_000 + k.saturating_sub(20).min(10) * 100_000,
                        tx_bytes: k * 1000,
                        rx_bytes: 0,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn phases_split_by_intended_time_and_count_what_was_lost() {
        let plan = upgrade_plan();
        let host: Vec<(f64, f64)> = (0..=50)
            .map(|k| (k as f64 / 10.0, k as f64 / 10.0))
            .collect();
        let s = summarize(&plan, &reports(&plan), &host, 2.0)
            .expect("a network summary")
            .upgrade
            .expect("an upgrade");
        assert_eq!((s.began_s, s.finished_s, s.unfinished_nodes), (2.0, 3.2, 0));
        assert_eq!(s.connections, 3, "each of 3 edges once");
        let before = s.phase("before").expect("before");
        let during = s.phase("during").expect("during");
        let after = s.phase("after").expect("after");
        assert_eq!((before.from_s, before.to_s), (1.0, 2.0));
        for p in [before, after] {
            assert!(
                p.classes.iter().all(|c| c.lost == 0 && c.objects > 0),
                "{p:?}"
            );
        }
        // Node 2 missed what origins 0 and 1 intended in [2.5, 3): one delivery per object.
        let block = &during.classes[0];
        assert_eq!(block.class, "block");
        assert_eq!(
            block.lost, 5,
            "10/s from node 0 only, half a second: {block:?}"
        );
        assert_eq!(block.unreached_100, 5);
        assert_eq!(block.predicted_lost, 0, "dual never partitions");
        assert_eq!(block.latency_us.p50, 1000);
        // Only open-loop classes.
        assert_eq!(during.classes.len(), 2);
        // 3 nodes × 1 core before; 2 cores each while dual (2 s to 3 s).
        assert!((before.node_cpu_cores - 3.0).abs() < 1e-9, "{before:?}");
        assert!(during.node_cpu_cores > 5.0, "{during:?}");
        assert!((before.host_cpu_fraction - 0.5).abs() < 1e-9);
        assert!((before.wire_bytes_per_s - 30_000.0).abs() < 1e-6);
        // Everyone on the new stack and dual at 2.001 s; dual ends node by node.
        let last = s.timeline.last().expect("points");
        assert_eq!((last.on_new, last.dual), (1.0, 0.0));
        assert!(s.timeline.iter().any(|p| p.dual == 1.0));
    }

    #[test]
    fn a_restarted_node_missing_a_neighbour_has_not_finished() {
        let mut plan = upgrade_plan();
        if let Some(u) = plan.network.upgrade.as_mut() {
            u.strategy = Strategy::Restart;
        }
        let mut reports = reports(&plan);
        let s = |reports: &[NodeReport]| {
            summarize(&plan, reports, &[], 2.0)
                .and_then(|n| n.upgrade)
                .expect("an upgrade")
        };
        for r in reports.iter_mut() {
            if let Some(u) = r.upgrade.as_mut() {
                u.last_connected_us = Some(2_500_000);
            }
        }
        assert_eq!(s(&reports).unfinished_nodes, 0);
        assert_eq!(s(&reports).finished_s, 2.5);
        if let Some(u) = reports[0].upgrade.as_mut() {
            u.accepted -= 1;
        }
        let lagging = s(&reports);
        assert_eq!(lagging.unfinished_nodes, 1);
        assert_eq!(lagging.finished_s, plan.send_end().as_secs_f64());
    }

    #[test]
    fn a_node_starting_late_does_not_move_the_phase_boundary_past_the_plan() {
        let plan = upgrade_plan();
        let mut reports = reports(&plan);
        for r in reports.iter_mut() {
            if let Some(u) = r.upgrade.as_mut() {
                u.began_us = 2_003_000;
            }
        }
        let s = summarize(&plan, &reports, &[], 2.0)
            .and_then(|n| n.upgrade)
            .expect("an upgrade");
        assert_eq!(s.began_s, 2.0, "the plan's start, not the late measurement");
        assert_eq!(s.phase("before").map(|p| p.to_s), Some(2.0));
    }

    #[test]
    fn single_stack_networks_have_no_network_summary() {
        let plan = example_plan();
        assert!(summarize(&plan, &[], &[], 2.0).is_none());
    }
}
