//! Churn events, free of I/O: which node does what when, and which deliveries fall in an
//! event's disruption window. Built from the scenario's firings by replaying them in time
//! order, so that both sides of a peer change act on it and no event acts on state that
//! is not there.

use crate::scenario::churn::{EventKind, Firing, HandshakeMode};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeSet, time::Duration};

/// How far ahead of a connecting node its counterpart adds it: the counterpart must know
/// the peer before the first handshake packet arrives, or WireGuard drops it and retries
/// only after 5 s. A UAPI request takes about a millisecond, but `wg set` is a process
/// (tens of ms under a VM's emulated CPU). Cold connects are measured from the dialler's
/// instant, so the lead does not count in them.
pub const PASSIVE_ADD_LEAD: Duration = Duration::from_millis(100);

/// WireGuard's REKEY_AFTER_TIME: runs longer than this see rekeys.
pub const WG_REKEY_AFTER: Duration = Duration::from_secs(120);

/// Whether a run watches WireGuard handshakes: it has churn, or it is long enough for
/// WireGuard to rekey.
pub fn watches_handshakes(plan: &super::WorkloadPlan) -> bool {
    plan.churn.is_active() || plan.send_end() > WG_REKEY_AFTER
}

/// One thing one node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Close the connection to `peer` and remove it from the underlay.
    RemovePeer {
        peer: u32,
    },
    /// Add `peer` to the underlay; the dialling side then connects to it.
    AddPeer {
        peer: u32,
        dial: bool,
    },
    /// Rebuild the QUIC endpoint and dial every present peer.
    Restart,
    /// Set the tunnel interface down or up.
    Iface {
        up: bool,
    },
    KeyUpdate,
    /// The node's process kills itself (SIGKILL): a crash.
    Crash,
    /// The node's process has just started again after a crash: it dials every peer.
    Recover,
}

/// `action` by `node` at `at` (from the start), on behalf of firing number `firing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub at: Duration,
    pub node: u32,
    pub firing: u32,
    pub action: Action,
}

/// A `node_crash` firing and the `node_recover` that ends it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledCrash {
    pub firing: u32,
    pub node: u32,
    pub at: Duration,
    /// The recovering firing and when it fires.
    pub recover: Option<(u32, Duration)>,
}

/// Everything churn asks of the nodes during one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnPlan {
    pub firings: Vec<Firing>,
    /// In time order.
    pub steps: Vec<Step>,
    pub window: Duration,
    pub timeline: Duration,
    pub handshakes: Vec<HandshakeMode>,
    /// How WireGuard peers and interfaces are driven.
    #[serde(default)]
    pub automation: crate::scenario::churn::Automation,
    /// What a node dying outside the scheduled crashes does to the run.
    #[serde(default)]
    pub on_unscheduled_crash: crate::scenario::churn::UnscheduledCrash,
}

impl Default for ChurnPlan {
    /// No events, with the scenario defaults.
    fn default() -> Self {
        ChurnPlan {
            firings: vec![],
            steps: vec![],
            window: Duration::from_millis(500),
            timeline: Duration::from_secs(1),
            handshakes: vec![HandshakeMode::Full],
            automation: Default::default(),
            on_unscheduled_crash: Default::default(),
        }
    }
}

/// The steps of a set of firings; see [`ChurnSteps::build`].
pub struct ChurnSteps;

impl ChurnSteps {
    /// The steps of `firings` (in time order) on `nodes` nodes, or the index of the first
    /// firing that cannot happen and why.
    pub fn build(firings: &[Firing], nodes: u32) -> Result<Vec<Step>, (usize, String)> {
        let pair = |a: u32, b: u32| (a.min(b), a.max(b));
        let mut absent: BTreeSet<(u32, u32)> = BTreeSet::new();
        let mut away: BTreeSet<u32> = BTreeSet::new();
        let mut down: BTreeSet<u32> = BTreeSet::new();
        let mut crashed: BTreeSet<u32> = BTreeSet::new();
        let mut steps = vec![];
        for (i, f) in firings.iter().enumerate() {
            let n = f.node;
            let fail = |msg: String| {
                Err((
                    i,
                    format!("{} at {}: {msg}", f.kind.name(), crate::units::Dur(f.at)),
                ))
            };
            let step = |node, at, action| Step {
                at,
                node,
                firing: i as u32,
                action,
            };
            let early = f.at.saturating_sub(PASSIVE_ADD_LEAD);
            // The acceptor adds the dialler first; the dialler adds it and dials.
            let add_pair = |steps: &mut Vec<Step>, acceptor: u32, dialler: u32| {
                let add = |peer, dial| Action::AddPeer { peer, dial };
                steps.push(step(acceptor, early, add(dialler, false)));
                steps.push(step(dialler, f.at, add(acceptor, true)));
            };
            if away.contains(&n) && f.kind != EventKind::NodeJoin {
                return fail(format!("node {n} has left"));
            }
            if crashed.contains(&n) && f.kind != EventKind::NodeRecover {
                return fail(format!("node {n} has crashed and not recovered"));
            }
            // Peer changes reach every side's process; a crashed one has none to reach.
            let involves_crashed = match f.kind {
                EventKind::PeerRemove | EventKind::PeerAdd => {
                    f.peer.filter(|p| crashed.contains(p))
                }
                EventKind::NodeLeave | EventKind::NodeJoin => crashed.iter().next().copied(),
                _ => None,
            };
            if let Some(c) = involves_crashed {
                return fail(format!("node {c} has crashed and not recovered"));
            }
            let present = |x: u32, absent: &BTreeSet<(u32, u32)>, away: &BTreeSet<u32>| {
                x != n && !away.contains(&x) && !absent.contains(&pair(n, x))
            };
            match f.kind {
                EventKind::PeerRemove | EventKind::PeerAdd => {
                    let p = f.peer.unwrap_or(n); // Validated: peer events name a peer.
                    if away.contains(&p) {
                        return fail(format!("node {p} has left"));
                    }
                    let removing = f.kind == EventKind::PeerRemove;
                    if removing == absent.contains(&pair(n, p)) {
                        return fail(format!(
                            "nodes {n} and {p} are already {}",
                            if removing { "apart" } else { "peers" }
                        ));
                    }
                    if removing {
                        absent.insert(pair(n, p));
                        steps.push(step(n, f.at, Action::RemovePeer { peer: p }));
                        steps.push(step(p, f.at, Action::RemovePeer { peer: n }));
                    } else {
                        absent.remove(&pair(n, p));
                        add_pair(&mut steps, p, n);
                    }
                }
                EventKind::NodeLeave => {
                    for x in (0..nodes).filter(|&x| present(x, &absent, &away)) {
                        steps.push(step(n, f.at, Action::RemovePeer { peer: x }));
                        steps.push(step(x, f.at, Action::RemovePeer { peer: n }));
                    }
                    away.insert(n);
                }
                EventKind::NodeJoin => {
                    if !away.remove(&n) {
                        return fail(format!("node {n} has not left"));
                    }
                    absent.retain(|&(a, b)| a != n && b != n);
                    for x in (0..nodes).filter(|&x| present(x, &absent, &away)) {
                        add_pair(&mut steps, x, n);
                    }
                }
                EventKind::IfaceDown | EventKind::IfaceUp => {
                    let up = f.kind == EventKind::IfaceUp;
                    if up != down.contains(&n) {
                        return fail(format!(
                            "node {n}'s interface is already {}",
                            if up { "up" } else { "down" }
                        ));
                    }
                    if up {
                        down.remove(&n);
                    } else {
                        down.insert(n);
                    }
                    steps.push(step(n, f.at, Action::Iface { up }));
                }
                EventKind::NodeRestart => steps.push(step(n, f.at, Action::Restart)),
                EventKind::KeyUpdate => steps.push(step(n, f.at, Action::KeyUpdate)),
                EventKind::NodeCrash => {
                    // A recovered node dials every peer of the plan's graph: it must have
                    // had them all when it crashed.
                    if let Some(&(a, b)) = absent.iter().find(|&&(a, b)| a == n || b == n) {
                        let other = if a == n { b } else { a };
                        return fail(format!(
                            "node {n} has removed peer {other}; a node crashes with all its peers"
                        ));
                    }
                    if down.contains(&n) {
                        return fail(format!(
                            "node {n}'s interface is down; a node crashes with it up"
                        ));
                    }
                    crashed.insert(n);
                    steps.push(step(n, f.at, Action::Crash));
                }
                EventKind::NodeRecover => {
                    if !crashed.remove(&n) {
                        return fail(format!("node {n} has not crashed"));
                    }
                    steps.push(step(n, f.at, Action::Recover));
                }
            }
            if (away.len() + crashed.len()) as u32 + 1 >= nodes {
                return fail("fewer than two nodes would be left".into());
            }
        }
        steps.sort_by_key(|s| s.at);
        Ok(steps)
    }
}

impl ChurnPlan {
    /// The plan of a validated scenario.
    pub fn from_scenario(s: &crate::scenario::Scenario) -> ChurnPlan {
        let firings: Vec<Firing> = crate::scenario::churn::firings(&s.events)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        // Validation replayed these same firings, so they build.
        let steps = ChurnSteps::build(&firings, s.node_count()).unwrap_or_default();
        ChurnPlan {
            firings,
            steps,
            window: s.churn.window.0,
            timeline: s.churn.timeline.get_ref().0,
            handshakes: s.churn.tls_handshakes.get_ref().clone(),
            automation: s.churn.automation,
            on_unscheduled_crash: s.churn.on_unscheduled_crash,
        }
    }

    /// Whether the run has any events.
    pub fn is_active(&self) -> bool {
        !self.firings.is_empty()
    }

    /// The scheduled crashes, in time order: (firing, node, when, when it recovers).
    pub fn crashes(&self) -> Vec<ScheduledCrash> {
        self.firings
            .iter()
            .enumerate()
            .filter(|(_, f)| f.kind == EventKind::NodeCrash)
            .map(|(i, f)| ScheduledCrash {
                firing: i as u32,
                node: f.node,
                at: f.at,
                recover: self.firings[i + 1..]
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.kind == EventKind::NodeRecover && r.node == f.node)
                    .map(|(k, r)| ((i + 1 + k) as u32, r.at)),
            })
            .collect()
    }

    /// Whether `node` is scheduled to crash at some point of the run.
    pub fn crashes_node(&self, node: u32) -> bool {
        self.firings
            .iter()
            .any(|f| f.kind == EventKind::NodeCrash && f.node == node)
    }

    /// Whether the plan separates nodes `a` and `b` within the window of `elapsed` (from
    /// the start): a `peer_remove` of the pair, or either of them leaving. Both sides take
    /// such a step at the same instant, so one side's close can reach the other before the
    /// other's own step runs; a transport whose close carries no reason (SCTP aborts an
    /// association that still holds unread data) then shows the planned separation as a
    /// lost connection.
    pub fn separates(&self, a: u32, b: u32, elapsed: Duration) -> bool {
        self.firings.iter().any(|f| {
            let parties = match f.kind {
                EventKind::PeerRemove => f
                    .peer
                    .is_some_and(|p| [f.node, p] == [a, b] || [p, f.node] == [a, b]),
                EventKind::NodeLeave => f.node == a || f.node == b,
                _ => false,
            };
            parties && elapsed + self.window >= f.at && elapsed < f.at + self.window
        })
    }

    /// Whether TLS servers must issue tickets and accept 0-RTT for the dial modes.
    pub fn resumes(&self) -> bool {
        self.handshakes.iter().any(|m| *m != HandshakeMode::Full)
    }

    /// Node `index`'s steps, in time order.
    pub fn steps_of(&self, index: u32) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.node == index)
    }

    /// The event whose window an object from `origin` to `receiver`, due at `intended`
    /// (from the start), falls in, if it left a node that the event was reconfiguring for
    /// a node it was not: the traffic that shows whether reconfiguration stalls a node's
    /// other connections.
    pub fn window_of(&self, origin: u32, receiver: u32, intended: Duration) -> Option<&Firing> {
        self.firings.iter().find(|f| {
            let parties = [Some(f.node), f.peer];
            intended >= f.at
                && intended < f.at + self.window
                && parties.contains(&Some(origin))
                && !parties.contains(&Some(receiver))
        })
    }

    /// Whether `intended` falls in any event's window at all (neither steady nor disrupted
    /// traffic, when the pair is not the one the window is about).
    pub fn near_event(&self, intended: Duration) -> bool {
        self.firings
            .iter()
            .any(|f| intended >= f.at && intended < f.at + self.window)
    }

    /// The dial mode of the `k`-th reconnect from one node to one peer.
    pub fn handshake(&self, k: u32) -> HandshakeMode {
        match self.handshakes.as_slice() {
            [] => HandshakeMode::Full,
            modes => modes[k as usize % modes.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(at_ms: u64, kind: EventKind, node: u32, peer: Option<u32>) -> Firing {
        Firing {
            at: Duration::from_millis(at_ms),
            kind,
            node,
            peer,
        }
    }

    #[test]
    fn peer_changes_act_on_both_sides_with_the_passive_side_first() {
        let steps = ChurnSteps::build(
            &[
                f(100, EventKind::PeerRemove, 0, Some(2)),
                f(300, EventKind::PeerAdd, 0, Some(2)),
            ],
            3,
        )
        .expect("valid");
        let ms = |s: &Step| s.at.as_millis();
        assert_eq!(steps.len(), 4);
        assert_eq!(
            (ms(&steps[0]), steps[0].action),
            (100, Action::RemovePeer { peer: 2 })
        );
        assert_eq!((ms(&steps[1]), steps[1].node), (100, 2));
        assert_eq!(
            (ms(&steps[2]), steps[2].node, steps[2].action),
            (
                300 - PASSIVE_ADD_LEAD.as_millis(),
                2,
                Action::AddPeer {
                    peer: 0,
                    dial: false
                }
            )
        );
        assert_eq!(
            (ms(&steps[3]), steps[3].node, steps[3].action),
            (
                300,
                0,
                Action::AddPeer {
                    peer: 2,
                    dial: true
                }
            )
        );
    }

    #[test]
    fn a_pair_is_separated_only_near_its_own_removal_or_a_leave() {
        let plan = ChurnPlan {
            firings: vec![
                f(1000, EventKind::PeerRemove, 0, Some(2)),
                f(3000, EventKind::NodeLeave, 3, None),
                f(4000, EventKind::IfaceDown, 1, None),
            ],
            window: Duration::from_millis(200),
            ..ChurnPlan::default()
        };
        let at = Duration::from_millis;
        assert!(plan.separates(2, 0, at(1000)) && plan.separates(0, 2, at(1150)));
        assert!(
            plan.separates(0, 2, at(900)),
            "the peer's step may run first"
        );
        assert!(!plan.separates(0, 2, at(1200)) && !plan.separates(0, 2, at(700)));
        assert!(!plan.separates(0, 1, at(1000)), "not the removed pair");
        assert!(plan.separates(1, 3, at(3010)) && plan.separates(3, 0, at(3010)));
        assert!(!plan.separates(1, 2, at(3010)), "neither is leaving");
        assert!(
            !plan.separates(1, 0, at(4000)),
            "an interface bounce separates no one"
        );
    }

    #[test]
    fn leave_and_join_touch_only_present_peers() {
        let steps = ChurnSteps::build(
            &[
                f(100, EventKind::PeerRemove, 1, Some(3)),
                f(200, EventKind::NodeLeave, 1, None),
                f(400, EventKind::NodeJoin, 1, None),
            ],
            4,
        )
        .expect("valid");
        let leave: Vec<_> = steps.iter().filter(|s| s.firing == 1).collect();
        assert_eq!(
            leave.len(),
            4,
            "1 leaves 0 and 2, both sides; 3 is already apart"
        );
        let dials: Vec<u32> = steps
            .iter()
            .filter_map(|s| match s.action {
                Action::AddPeer { peer, dial: true } if s.firing == 2 => Some(peer),
                _ => None,
            })
            .collect();
        assert_eq!(
            dials,
            vec![0, 2, 3],
            "joining reconnects to every present node"
        );
    }

    #[test]
    fn a_crash_and_its_recovery_are_the_crashed_nodes_own_steps() {
        let firings = [
            f(100, EventKind::NodeCrash, 2, None),
            f(200, EventKind::KeyUpdate, 0, None),
            f(900, EventKind::NodeRecover, 2, None),
            f(1000, EventKind::NodeCrash, 1, None),
        ];
        let steps = ChurnSteps::build(&firings, 4).expect("valid");
        let of = |n: u32| -> Vec<Action> {
            steps
                .iter()
                .filter(|s| s.node == n)
                .map(|s| s.action)
                .collect()
        };
        assert_eq!(of(2), vec![Action::Crash, Action::Recover]);
        assert_eq!(of(1), vec![Action::Crash]);
        let plan = ChurnPlan {
            firings: firings.to_vec(),
            steps,
            ..ChurnPlan::default()
        };
        let crashes = plan.crashes();
        assert_eq!(crashes.len(), 2);
        assert_eq!(
            (crashes[0].node, crashes[0].recover),
            (2, Some((2, Duration::from_millis(900))))
        );
        assert_eq!((crashes[1].node, crashes[1].recover), (1, None));
        assert!(plan.crashes_node(1) && !plan.crashes_node(0));
    }

    #[test]
    fn a_crashed_node_takes_part_in_nothing_until_it_recovers() {
        let refused = |firings: &[Firing]| ChurnSteps::build(firings, 4).err();
        let crash = f(100, EventKind::NodeCrash, 1, None);
        for (second, why) in [
            (f(200, EventKind::KeyUpdate, 1, None), "node 1 has crashed"),
            (
                f(200, EventKind::PeerRemove, 0, Some(1)),
                "node 1 has crashed",
            ),
            (f(200, EventKind::NodeCrash, 1, None), "node 1 has crashed"),
            (f(200, EventKind::NodeLeave, 3, None), "node 1 has crashed"),
            (
                f(200, EventKind::NodeRecover, 0, None),
                "node 0 has not crashed",
            ),
        ] {
            let (i, msg) = refused(&[crash, second]).expect("refused");
            assert_eq!(i, 1, "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
        let (i, msg) = refused(&[
            f(50, EventKind::PeerRemove, 1, Some(2)),
            f(100, EventKind::NodeCrash, 1, None),
        ])
        .expect("refused");
        assert_eq!(i, 1);
        assert!(msg.contains("has removed peer 2"), "{msg}");
        let (i, msg) = refused(&[
            f(100, EventKind::NodeCrash, 1, None),
            f(110, EventKind::NodeCrash, 2, None),
            f(120, EventKind::NodeCrash, 3, None),
        ])
        .expect("refused");
        assert_eq!(i, 2);
        assert!(msg.contains("fewer than two"), "{msg}");
    }

    #[test]
    fn impossible_sequences_name_the_firing() {
        let twice = [
            f(100, EventKind::PeerRemove, 0, Some(1)),
            f(200, EventKind::PeerRemove, 1, Some(0)),
        ];
        let (i, why) = ChurnSteps::build(&twice, 3).expect_err("already apart");
        assert_eq!(i, 1);
        assert!(
            why.contains("already apart") && why.contains("200ms"),
            "{why}"
        );
        let up = [f(100, EventKind::IfaceUp, 0, None)];
        assert!(ChurnSteps::build(&up, 2)
            .expect_err("an impossible sequence")
            .1
            .contains("already up"));
        let gone = [
            f(100, EventKind::NodeLeave, 0, None),
            f(200, EventKind::KeyUpdate, 0, None),
        ];
        assert!(ChurnSteps::build(&gone, 3)
            .expect_err("an impossible sequence")
            .1
            .contains("has left"));
        let empty = [f(100, EventKind::NodeLeave, 0, None)];
        assert!(ChurnSteps::build(&empty, 2)
            .expect_err("an impossible sequence")
            .1
            .contains("fewer than two"));
    }

    #[test]
    fn the_window_covers_the_reconfigured_nodes_traffic_to_others() {
        let plan = ChurnPlan {
            firings: vec![f(1000, EventKind::PeerAdd, 0, Some(1))],
            window: Duration::from_millis(200),
            ..Default::default()
        };
        let at = Duration::from_millis;
        let hit = |o, r, t| plan.window_of(o, r, at(t)).map(|f| f.kind);
        assert_eq!(hit(0, 2, 1100), Some(EventKind::PeerAdd));
        assert_eq!(hit(1, 2, 1000), Some(EventKind::PeerAdd));
        assert_eq!(hit(0, 1, 1100), None, "the pair itself is the cold connect");
        assert_eq!(hit(2, 3, 1100), None, "uninvolved origins");
        assert_eq!(hit(0, 2, 1200), None, "after the window");
        assert_eq!(hit(0, 2, 999), None, "before the event");
        assert!(plan.near_event(at(1100)) && !plan.near_event(at(1300)));
    }

    #[test]
    fn handshake_modes_cycle() {
        let plan = ChurnPlan {
            handshakes: vec![HandshakeMode::Full, HandshakeMode::ZeroRtt],
            ..Default::default()
        };
        let got: Vec<_> = (0..4).map(|k| plan.handshake(k)).collect();
        assert_eq!(
            got,
            [
                HandshakeMode::Full,
                HandshakeMode::ZeroRtt,
                HandshakeMode::Full,
                HandshakeMode::ZeroRtt
            ]
        );
    }
}
