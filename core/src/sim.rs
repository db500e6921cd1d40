//! A seeded, in-memory network of [`NodeCore`]s: no sockets, no clocks. Each hop costs the
//! path's configured delay plus the time the sender's uplink needs to serialize the object
//! behind whatever it is already sending, plus a fixed per-object processing cost. It runs
//! a thousand nodes in seconds, tests relay logic, and predicts the reach times a run
//! should see before any stack's own costs.
//!
//! What it leaves out, on purpose: jitter, loss and retransmission, priority between
//! classes on one uplink (it serializes in order of sending), backlog classes, and every
//! CPU cost beyond the fixed one. A measured run that is far slower than the prediction
//! points at those.

use crate::{
    link::LinkPlan,
    node::{InEvent, NodeCore, OutEvent},
    schema::{Percentiles, SimulatedClass},
    workload::{reach_times, ObjectHeader, WorkloadPlan, REACH_PERCENTS},
};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    time::Duration,
};

/// What a hop costs besides the path and the uplink.
#[derive(Debug, Clone, Copy)]
pub struct HopCost {
    /// Charged once per object sent and once per object received.
    pub per_object: Duration,
}

impl Default for HopCost {
    fn default() -> Self {
        HopCost {
            per_object: Duration::from_micros(20),
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Tick(u32),
    Arrive {
        to: u32,
        from: u32,
        header: ObjectHeader,
    },
}

/// Per class: one reach-time sample set per share of nodes, hop counts, and copies.
#[derive(Debug, Default)]
struct ClassTally {
    /// Objects originated in the measured window.
    scheduled: u64,
    latencies: BTreeMap<(u16, u64), Vec<u64>>,
    hops: BTreeMap<u8, u64>,
    deliveries: u64,
    duplicates: u64,
}

/// The network as the simulator sees it: each node's uplink rate and each path's delay.
pub struct Network<'a> {
    pub uplink_bits_per_sec: Vec<Option<u64>>,
    pub delay_ns: Box<dyn Fn(u32, u32) -> u64 + 'a>,
}

impl<'a> Network<'a> {
    /// The network a run's link plan describes (delays without jitter or loss).
    pub fn of(links: &'a LinkPlan) -> Network<'a> {
        Network {
            uplink_bits_per_sec: links.nodes.iter().map(|n| n.uplink_bits_per_sec).collect(),
            delay_ns: Box::new(|from, to| links.path(from, to).delay_ns),
        }
    }
}

/// Runs `plan` over `net` and returns, per open-loop class, what the network would see.
pub fn simulate(plan: &WorkloadPlan, net: &Network<'_>, cost: HopCost) -> Vec<SimulatedClass> {
    let n = plan.nodes;
    let mut cores: Vec<NodeCore> = (0..n).map(|i| NodeCore::new(plan, i, 0)).collect();
    for core in &mut cores {
        for p in core.neighbours().to_vec() {
            core.handle(InEvent::PeerUp(p));
        }
    }
    let mut queue: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut push = |queue: &mut BinaryHeap<_>, at: u64, e: Event| {
        order += 1;
        queue.push(Reverse((at, order, e)));
    };
    let mut tick_at: Vec<Option<u64>> = vec![None; n as usize];
    for (i, core) in cores.iter().enumerate() {
        if let Some(t) = core.next_wakeup() {
            tick_at[i] = Some(t);
            push(&mut queue, t, Event::Tick(i as u32));
        }
    }
    let mut uplink_free = vec![0u64; n as usize];
    // A node is busy with one object at a time.
    let mut cpu_free = vec![0u64; n as usize];
    let per_object = cost.per_object.as_nanos() as u64;
    let mut tally: Vec<ClassTally> = plan.classes.iter().map(|_| ClassTally::default()).collect();
    let end = (plan.send_end() + plan.drain).as_nanos() as u64;
    while let Some(Reverse((now, _, event))) = queue.pop() {
        if now > end {
            break;
        }
        let node = match event {
            Event::Tick(i) => {
                if tick_at[i as usize] != Some(now) {
                    continue; // superseded by an earlier tick
                }
                tick_at[i as usize] = None;
                cores[i as usize].handle(InEvent::Tick { now_ns: now });
                i
            }
            Event::Arrive { to, from, header } => {
                let at = now.max(cpu_free[to as usize]) + per_object;
                cpu_free[to as usize] = at;
                cores[to as usize].handle(InEvent::Received {
                    from,
                    header,
                    now_ns: at,
                });
                to
            }
        };
        let core = &mut cores[node as usize];
        while let Some(out) = core.poll() {
            match out {
                OutEvent::Send { peer, header, .. } => {
                    let start = now.max(cpu_free[node as usize]) + per_object;
                    cpu_free[node as usize] = start;
                    let bits = header.len as f64 * 8.0;
                    let tx = net.uplink_bits_per_sec[node as usize]
                        .map_or(0, |rate| (bits / rate as f64 * 1e9) as u64);
                    let done = start.max(uplink_free[node as usize]) + tx;
                    uplink_free[node as usize] = done;
                    let delay = (net.delay_ns)(node, peer);
                    push(
                        &mut queue,
                        done + delay,
                        Event::Arrive {
                            to: peer,
                            from: node,
                            header,
                        },
                    );
                }
                OutEvent::Delivered { header, now_ns, .. } => {
                    let measured = plan.is_measured(Duration::from_nanos(header.intended_ns));
                    if let Some(t) = tally.get_mut(header.class as usize).filter(|_| measured) {
                        t.deliveries += 1;
                        *t.hops.entry(header.hops).or_default() += 1;
                        t.latencies
                            .entry((header.origin, header.seq))
                            .or_default()
                            .push((now_ns - header.intended_ns) / 1000);
                    }
                }
                OutEvent::Duplicate { header, .. } => {
                    let measured = plan.is_measured(Duration::from_nanos(header.intended_ns));
                    if let Some(t) = tally.get_mut(header.class as usize).filter(|_| measured) {
                        t.duplicates += 1;
                    }
                }
                OutEvent::Scheduled {
                    class, intended_ns, ..
                } => {
                    let measured = plan.is_measured(Duration::from_nanos(intended_ns));
                    if let Some(t) = tally.get_mut(class as usize).filter(|_| measured) {
                        t.scheduled += 1;
                    }
                }
                OutEvent::NotSentInTime { .. } => {}
            }
        }
        // One pending tick per node: the earliest it needs.
        if let Some(t) = core.next_wakeup() {
            let t = t.max(now);
            if tick_at[node as usize].is_none_or(|s| t < s) {
                tick_at[node as usize] = Some(t);
                push(&mut queue, t, Event::Tick(node));
            }
        }
    }
    summarize(plan, tally)
}

fn summarize(plan: &WorkloadPlan, tally: Vec<ClassTally>) -> Vec<SimulatedClass> {
    let receivers = plan.receivers_per_object();
    plan.classes
        .iter()
        .zip(tally)
        .filter(|(c, _)| !c.arrival.is_backlog())
        .map(|(c, t)| {
            let mut reach: [Vec<u64>; 4] = Default::default();
            let mut reached_pairs = 0;
            for (_, mut lat) in t.latencies {
                reached_pairs += lat.len() as u64;
                let times = reach_times(&mut lat, receivers);
                for (slot, r) in reach.iter_mut().zip(times) {
                    slot.extend(r);
                }
            }
            SimulatedClass {
                class: c.name.clone(),
                objects: t.scheduled,
                unreached: (t.scheduled * receivers as u64).saturating_sub(reached_pairs),
                reach_us: REACH_PERCENTS
                    .iter()
                    .zip(reach.iter_mut())
                    .map(|(pct, v)| (format!("{pct}%"), Percentiles::from_samples(v)))
                    .collect(),
                hops: t.hops.into_iter().map(|(h, n)| (h as u32, n)).collect(),
                deliveries: t.deliveries,
                duplicates: t.duplicates,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(nodes: u32, fanout: &str, extra: &str) -> (WorkloadPlan, LinkPlan) {
        let text = format!(
            r#"
name = "sim"
seed = 5
duration = "2s"
warmup = "0s"
stacks = ["quic-tls"]
[topology]
nodes = {nodes}
{fanout}
{extra}
[[class]]
name = "block"
priority = 10
size = "4KiB"
arrival = {{ process = "constant", rate = "2/s" }}
origins = [0]
"#
        );
        let s = Scenario::parse(std::path::Path::new("sim.toml"), &text, &["quic-tls"])
            .expect("a valid scenario");
        let plan = WorkloadPlan::from_scenario(&s).expect("a plan");
        (plan, LinkPlan::from_scenario(&s))
    }

    #[test]
    fn gossip_reaches_a_thousand_nodes_over_several_hops() {
        // Scenarios stop at 200 nodes (the namespaces' address plan); the simulator does not.
        let (mut plan, _) = scenario(16, "fanout = \"gossip\"\ndegree = 8", "");
        plan.nodes = 1000;
        plan.fanout.graph =
            crate::graph::PeerGraph::random_regular(1000, 8, None, 5).expect("a graph");
        let net = Network {
            uplink_bits_per_sec: vec![None; 1000],
            delay_ns: Box::new(|_, _| 10_000_000),
        };
        let out = simulate(&plan, &net, HopCost::default());
        let block = &out[0];
        assert_eq!(block.objects, 4);
        assert_eq!(block.unreached, 0, "a connected graph reaches everyone");
        assert_eq!(block.deliveries, 4 * 999);
        let max_hops = *block.hops.keys().max().expect("deliveries");
        let diameter = (1..1000)
            .map(|i| plan.fanout.graph.distances(0)[i])
            .max()
            .expect("nodes");
        assert_eq!(max_hops, diameter, "first copies travel shortest paths");
        let reach100 = &block.reach_us["100%"];
        assert!(reach100.min >= diameter as u64 * 10_000, "{reach100:?}");
        // Each relay sends to D-1 peers (minus the origin); all but one copy are extra.
        let per_delivery = block.duplicates as f64 / block.deliveries as f64;
        assert!((4.0..7.0).contains(&per_delivery), "{per_delivery}");
    }

    #[test]
    fn direct_fanout_is_one_hop_without_duplicates() {
        let (plan, links) = scenario(16, "", "[links]\ndelay = \"5ms\"");
        let out = simulate(&plan, &Network::of(&links), HopCost::default());
        assert_eq!(out[0].hops.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(out[0].duplicates, 0);
        assert!(out[0].reach_us["100%"].min >= 5_000);
    }

    #[test]
    fn a_slow_uplink_serializes_the_fanout() {
        // 15 copies of 4 KiB at 10 Mbit/s: the last leaves ~49 ms after the first.
        let (plan, links) = scenario(16, "uplink = \"10Mbit\"", "");
        let out = simulate(&plan, &Network::of(&links), HopCost::default());
        let r = &out[0].reach_us;
        assert!(r["100%"].p50 > 45_000 && r["50%"].p50 < 30_000, "{r:?}");
    }
}
