//! Every decision a node makes about the workload, as a state machine without I/O (the
//! shape of quinn-proto and iroh-gossip): what to send when, to whom, what to relay and
//! what is a duplicate. The node runtime feeds it [`InEvent`]s and carries out the
//! [`OutEvent`]s it returns; the simulator does the same with a model of the network.
//!
//! Times are CLOCK_MONOTONIC nanoseconds (any clock shared by all nodes will do), passed in.

use crate::workload::{
    events::{Action, Step},
    ObjectHeader, Schedule, WorkloadPlan,
};
use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, VecDeque},
    time::Duration,
};

/// How far behind its schedule a node may fall before it drops what is due (counted as not
/// sent in time) rather than send it ever later.
pub const LAG_LIMIT: Duration = Duration::from_secs(1);
/// Objects one tick takes from the schedule at most, so a node that has fallen behind
/// still gets to receive and to answer its controller between ticks.
pub const MAX_PER_TICK: u32 = 256;

/// What happens to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InEvent {
    /// Time has come to `now_ns`: send what is due, relay what has been validated.
    Tick { now_ns: u64 },
    /// An object arrived whole from `from` at `now_ns`.
    Received {
        from: u32,
        header: ObjectHeader,
        now_ns: u64,
    },
    /// A connection to `peer` is up (objects may go to it).
    PeerUp(u32),
    /// The connection to `peer` is gone.
    PeerDown(u32),
    /// This node takes a churn step now: removing a peer or restarting takes peers away
    /// before their connections are seen closing.
    Step(Step),
}

/// What the node must do, or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    /// Send `header`'s object (its length is in the header) to `peer` at `priority`.
    Send {
        peer: u32,
        header: ObjectHeader,
        priority: i32,
    },
    /// This node originated an object meant to reach `receivers` nodes.
    Scheduled {
        class: u8,
        size: u32,
        intended_ns: u64,
        receivers: u64,
    },
    /// The generator fell more than [`LAG_LIMIT`] behind and dropped `count` objects of
    /// `class`, each meant for `receivers` nodes.
    NotSentInTime {
        class: u8,
        count: u64,
        receivers: u64,
    },
    /// The first copy of an object reached this node.
    Delivered {
        from: u32,
        header: ObjectHeader,
        now_ns: u64,
    },
    /// Another copy of an object this node already had (or had sent): counted, dropped.
    Duplicate {
        from: u32,
        header: ObjectHeader,
        now_ns: u64,
    },
}

/// An object waiting out its class's validation before it is relayed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PendingRelay {
    ready_ns: u64,
    from: u32,
    header: ObjectHeader,
}

/// One node's workload decisions.
#[derive(Debug)]
pub struct NodeCore {
    index: u32,
    plan: WorkloadPlan,
    start_ns: u64,
    schedule: Schedule,
    /// This node's peers on the plan's graph.
    neighbours: Vec<u32>,
    /// Peers connected now.
    up: BTreeSet<u32>,
    /// (origin, class, seq) of every open-loop object seen.
    seen: crate::seen::SeenSet,
    pending: BinaryHeap<Reverse<PendingRelay>>,
    out: VecDeque<OutEvent>,
}

impl NodeCore {
    /// Node `index` of `plan`, whose sending starts at `start_ns`. No peer is up yet.
    pub fn new(plan: &WorkloadPlan, index: u32, start_ns: u64) -> NodeCore {
        NodeCore {
            index,
            plan: plan.clone(),
            start_ns,
            schedule: Schedule::new(plan, index),
            neighbours: plan.fanout.graph.neighbours(index).to_vec(),
            up: BTreeSet::new(),
            seen: Default::default(),
            pending: BinaryHeap::new(),
            out: VecDeque::new(),
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// A node whose process starts again after a crash at `now_ns`: what it was meant to
    /// originate while it was down is gone with the process (the results count it as lost
    /// to the crash), and it goes on from now. Returns how many objects each class skipped.
    pub fn resume_at(&mut self, now_ns: u64) -> Vec<(u8, u64)> {
        let offset = Duration::from_nanos(now_ns.saturating_sub(self.start_ns));
        self.schedule.skip_until(offset)
    }

    /// The peers this node connects to: its neighbours on the plan's graph.
    pub fn neighbours(&self) -> &[u32] {
        &self.neighbours
    }

    /// Takes one event; its consequences queue up for [`NodeCore::poll`].
    pub fn handle(&mut self, event: InEvent) {
        match event {
            InEvent::Tick { now_ns } => self.tick(now_ns),
            InEvent::Received {
                from,
                header,
                now_ns,
            } => self.received(from, header, now_ns),
            InEvent::PeerUp(p) => {
                self.up.insert(p);
            }
            InEvent::PeerDown(p) => {
                self.up.remove(&p);
            }
            InEvent::Step(step) => match step.action {
                Action::RemovePeer { peer } => {
                    self.up.remove(&peer);
                }
                Action::Restart => self.up.clear(),
                // Peers come back with their connections (PeerUp).
                Action::Crash => self.up.clear(),
                Action::AddPeer { .. }
                | Action::Iface { .. }
                | Action::KeyUpdate
                | Action::Recover => {}
            },
        }
    }

    /// The next thing to do, in order.
    pub fn poll(&mut self) -> Option<OutEvent> {
        self.out.pop_front()
    }

    /// When the node next needs a [`InEvent::Tick`]: the next scheduled object or relay,
    /// or `None` when nothing is left to do unprompted.
    pub fn next_wakeup(&self) -> Option<u64> {
        let due = self
            .schedule
            .next_due()
            .map(|d| self.start_ns + d.as_nanos() as u64);
        let relay = self.pending.peek().map(|Reverse(p)| p.ready_ns);
        due.into_iter().chain(relay).min()
    }

    /// The next object of backlog class `class` for one peer, meant to leave at `now_ns`
    /// (closed loop: the runtime asks when the last one was acknowledged); it is recorded
    /// as scheduled for that one peer. `None` once sending has ended.
    pub fn backlog_next(&mut self, class: u8, now_ns: u64) -> Option<(ObjectHeader, i32)> {
        let offset = Duration::from_nanos(now_ns.saturating_sub(self.start_ns));
        let e = self.schedule.backlog_next(class, offset)?;
        self.out.push_back(OutEvent::Scheduled {
            class,
            size: e.size,
            intended_ns: now_ns,
            receivers: 1,
        });
        let header = ObjectHeader {
            origin: self.index as u16,
            class,
            len: e.size,
            seq: e.seq,
            intended_ns: now_ns,
            hops: 1,
            sent_ns: now_ns,
        };
        Some((header, self.plan.classes[class as usize].priority))
    }

    /// Backlog classes this node originates, with how many objects each keeps in flight
    /// to each peer.
    pub fn backlog_classes(&self) -> Vec<(u8, u32)> {
        Schedule::backlog_classes(&self.plan, self.index)
    }

    /// Nodes an object this node originates should reach: every other node under gossip,
    /// the peers connected now under direct fanout (a peer churn removed is not a loss).
    fn receivers(&self) -> u64 {
        match self.plan.fanout.relay {
            true => self.plan.receivers_per_object() as u64,
            false => self.up.len() as u64,
        }
    }

    fn tick(&mut self, now_ns: u64) {
        let offset = Duration::from_nanos(now_ns.saturating_sub(self.start_ns));
        if let Some(next) = self.schedule.next_due() {
            // Load this node cannot generate: drop what is due in bulk, counted, and go on
            // from now.
            if offset.saturating_sub(next) > LAG_LIMIT {
                let receivers = self.receivers();
                for (class, count) in self.schedule.skip_until(offset) {
                    self.out.push_back(OutEvent::NotSentInTime {
                        class,
                        count,
                        receivers,
                    });
                }
            }
        }
        for _ in 0..MAX_PER_TICK {
            let Some(e) = self.schedule.pop_due(offset) else {
                break;
            };
            let intended_ns = self.start_ns + e.intended.as_nanos() as u64;
            self.out.push_back(OutEvent::Scheduled {
                class: e.class,
                size: e.size,
                intended_ns,
                receivers: self.receivers(),
            });
            let header = ObjectHeader {
                origin: self.index as u16,
                class: e.class,
                len: e.size,
                seq: e.seq,
                intended_ns,
                hops: 1,
                sent_ns: now_ns,
            };
            self.seen.insert(header.origin, header.class, header.seq);
            self.send_to_peers(header, None);
        }
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(p)| p.ready_ns <= now_ns)
        {
            // The loop condition saw an element.
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            self.relay(p.from, p.header, now_ns);
        }
    }

    fn received(&mut self, from: u32, header: ObjectHeader, now_ns: u64) {
        let Some(class) = self.plan.classes.get(header.class as usize) else {
            // The recorder names the unknown class; there is nothing to relay.
            self.out.push_back(OutEvent::Delivered {
                from,
                header,
                now_ns,
            });
            return;
        };
        // Backlog objects are per link: never relayed, never deduplicated.
        if class.arrival.is_backlog() {
            self.out.push_back(OutEvent::Delivered {
                from,
                header,
                now_ns,
            });
            return;
        }
        let first = header.origin as u32 != self.index
            && self.seen.insert(header.origin, header.class, header.seq);
        if !first {
            self.out.push_back(OutEvent::Duplicate {
                from,
                header,
                now_ns,
            });
            return;
        }
        self.out.push_back(OutEvent::Delivered {
            from,
            header,
            now_ns,
        });
        if !self.plan.fanout.relay {
            return;
        }
        match class.validate {
            d if d.is_zero() => self.relay(from, header, now_ns),
            d => self.pending.push(Reverse(PendingRelay {
                ready_ns: now_ns + d.as_nanos() as u64,
                from,
                header,
            })),
        }
    }

    /// Passes on an object that came from `from`: one hop further, same priority.
    fn relay(&mut self, from: u32, header: ObjectHeader, now_ns: u64) {
        let header = ObjectHeader {
            hops: header.hops.saturating_add(1),
            sent_ns: now_ns,
            ..header
        };
        self.send_to_peers(header, Some(from));
    }

    /// Sends to every connected neighbour except the one it came from and its origin.
    fn send_to_peers(&mut self, header: ObjectHeader, from: Option<u32>) {
        let priority = self.plan.classes[header.class as usize].priority;
        for &peer in &self.neighbours {
            if Some(peer) == from || peer == header.origin as u32 || !self.up.contains(&peer) {
                continue;
            }
            self.out.push_back(OutEvent::Send {
                peer,
                header,
                priority,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{example_plan, FanoutPlan};

    /// A 1000 B object of class 0 from node 0, sent (by its last hop) when it was meant to be.
    fn block_from_0(seq: u64, at: u64, hops: u8) -> ObjectHeader {
        ObjectHeader {
            origin: 0,
            class: 0,
            len: 1000,
            seq,
            intended_ns: at,
            hops,
            sent_ns: at,
        }
    }

    fn drain(core: &mut NodeCore) -> Vec<OutEvent> {
        std::iter::from_fn(|| core.poll()).collect()
    }

    fn sends(out: &[OutEvent]) -> Vec<u32> {
        out.iter()
            .filter_map(|e| match e {
                OutEvent::Send { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn direct_origin_sends_each_object_to_every_connected_peer() {
        let plan = example_plan();
        let mut core = NodeCore::new(&plan, 0, 1_000);
        core.handle(InEvent::PeerUp(1));
        core.handle(InEvent::PeerUp(2));
        let due = core.next_wakeup().expect("node 0 originates");
        core.handle(InEvent::Tick { now_ns: due });
        let out = drain(&mut core);
        let targets = sends(&out);
        assert!(!targets.is_empty());
        assert!(targets.iter().all(|p| [1, 2].contains(p)));
        assert!(out
            .iter()
            .any(|e| matches!(e, OutEvent::Scheduled { receivers, .. } if *receivers == 2)));
    }

    #[test]
    fn direct_receivers_do_not_relay() {
        let plan = example_plan();
        let mut core = NodeCore::new(&plan, 1, 0);
        core.handle(InEvent::PeerUp(0));
        core.handle(InEvent::PeerUp(2));
        let header = block_from_0(/* seq */ 4, /* at */ 5, /* hops */ 1);
        core.handle(InEvent::Received {
            from: 0,
            header,
            now_ns: 9,
        });
        let out = drain(&mut core);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], OutEvent::Delivered { .. }));
    }

    fn gossip_plan(validate: Duration) -> WorkloadPlan {
        let mut plan = example_plan();
        plan.nodes = 4;
        plan.fanout = FanoutPlan {
            graph: crate::graph::PeerGraph::full_mesh(4),
            relay: true,
        };
        plan.classes[0].validate = validate;
        plan
    }

    #[test]
    fn gossip_relays_first_copies_once_and_counts_duplicates() {
        let mut core = NodeCore::new(&gossip_plan(Duration::ZERO), 1, 0);
        for p in [0, 2, 3] {
            core.handle(InEvent::PeerUp(p));
        }
        let header = block_from_0(/* seq */ 1, /* at */ 10, /* hops */ 1);
        core.handle(InEvent::Received {
            from: 0,
            header,
            now_ns: 50,
        });
        let out = drain(&mut core);
        assert_eq!(
            sends(&out),
            vec![2, 3],
            "not back to the sender (the origin)"
        );
        for e in &out {
            if let OutEvent::Send {
                header: h,
                priority,
                ..
            } = e
            {
                assert_eq!(h.hops, 2);
                assert_eq!(h.sent_ns, 50);
                assert_eq!(h.intended_ns, 10, "latency stays measured from the origin");
                assert_eq!(*priority, 10, "each hop keeps the class's priority");
            }
        }
        core.handle(InEvent::Received {
            from: 2,
            header: ObjectHeader { hops: 2, ..header },
            now_ns: 60,
        });
        let out = drain(&mut core);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], OutEvent::Duplicate { from: 2, .. }));
    }

    #[test]
    fn gossip_waits_out_validation_before_relaying() {
        let mut core = NodeCore::new(&gossip_plan(Duration::from_millis(5)), 2, 0);
        for p in [0, 1, 3] {
            core.handle(InEvent::PeerUp(p));
        }
        let header = block_from_0(/* seq */ 1, /* at */ 0, /* hops */ 1);
        core.handle(InEvent::Received {
            from: 1,
            header,
            now_ns: 1_000_000,
        });
        let out = drain(&mut core);
        assert!(matches!(out[..], [OutEvent::Delivered { .. }]), "{out:?}");
        assert_eq!(core.next_wakeup(), Some(6_000_000));
        core.handle(InEvent::Tick { now_ns: 5_999_999 });
        assert!(sends(&drain(&mut core)).is_empty());
        core.handle(InEvent::Tick { now_ns: 6_000_000 });
        assert_eq!(
            sends(&drain(&mut core)),
            vec![3],
            "not to node 1 (sender) or 0 (origin)"
        );
    }

    #[test]
    fn a_node_never_delivers_its_own_objects() {
        let mut core = NodeCore::new(&gossip_plan(Duration::ZERO), 0, 0);
        core.handle(InEvent::PeerUp(1));
        let header = block_from_0(/* seq */ 1, /* at */ 0, /* hops */ 2);
        core.handle(InEvent::Received {
            from: 1,
            header,
            now_ns: 1,
        });
        assert!(matches!(drain(&mut core)[..], [OutEvent::Duplicate { .. }]));
    }

    #[test]
    fn churn_steps_take_peers_away() {
        let mut core = NodeCore::new(&example_plan(), 0, 0);
        core.handle(InEvent::PeerUp(1));
        core.handle(InEvent::PeerUp(2));
        let step = |action| Step {
            at: Duration::ZERO,
            node: 0,
            firing: 0,
            action,
        };
        core.handle(InEvent::Step(step(Action::RemovePeer { peer: 1 })));
        let due = core.next_wakeup().expect("node 0 originates");
        core.handle(InEvent::Tick { now_ns: due });
        let sent = sends(&drain(&mut core));
        assert!(!sent.is_empty() && sent.iter().all(|p| *p == 2), "{sent:?}");
        core.handle(InEvent::Step(step(Action::Restart)));
        let due = core.next_wakeup().expect("more to send");
        core.handle(InEvent::Tick { now_ns: due });
        assert!(
            sends(&drain(&mut core)).is_empty(),
            "no peer is up after a restart"
        );
    }

    #[test]
    fn a_generator_far_behind_drops_in_bulk() {
        let plan = example_plan();
        let mut core = NodeCore::new(&plan, 0, 0);
        core.handle(InEvent::PeerUp(1));
        core.handle(InEvent::Tick {
            now_ns: 3_000_000_000,
        });
        let out = drain(&mut core);
        assert!(out
            .iter()
            .any(|e| matches!(e, OutEvent::NotSentInTime { count, .. } if *count > 0)));
    }
}
