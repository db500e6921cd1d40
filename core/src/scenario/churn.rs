//! Churn as a scenario writes it: events on the workload's timeline (`[[event]]`) and how
//! their cost is measured (`[churn]`). `crate::workload::events` turns the events into what
//! each node does when.

use crate::units::Dur;
use serde::{Deserialize, Serialize};
use std::{ops::Range, time::Duration};
use toml::Spanned;

/// How churn's cost is measured.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// After each event, how long objects leaving the reconfigured node for other peers
    /// count as "during churn" in the disruption table.
    #[serde(default = "default_window")]
    pub window: Dur,
    /// Resolution of the latency timeline (the disruption plot).
    #[serde(default = "default_timeline")]
    pub timeline: Spanned<Dur>,
    /// How TLS stacks dial on reconnects, cycled per peer: every TLS server then issues
    /// tickets and accepts 0-RTT. Stacks without TLS always dial "full".
    #[serde(default = "default_handshakes")]
    pub tls_handshakes: Spanned<Vec<HandshakeMode>>,
    /// Interface lifecycle samples (create, configure, up, destroy) per stack, taken
    /// before the repetitions; 0 takes none.
    #[serde(default)]
    pub lifecycle_samples: u32,
    /// How WireGuard interfaces and peers are driven: from code ("library": netlink for
    /// kernel WireGuard, UAPI and rtnetlink for TUN daemons) or by spawning `ip` and `wg`
    /// ("processes"). Lifecycle samples time both, whichever this says.
    #[serde(default)]
    pub automation: Automation,
    /// What a node that dies without a `node_crash` event does to the run: it is reported
    /// as an unscheduled crash and the run goes on ("report"), or the run fails ("fail").
    #[serde(default)]
    pub on_unscheduled_crash: UnscheduledCrash,
}

/// What a node dying outside the scenario's `node_crash` events does to the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnscheduledCrash {
    /// Reported as a crash, marked unscheduled; the run goes on without the node.
    #[default]
    Report,
    /// The repetition fails, naming the node.
    Fail,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            window: default_window(),
            timeline: default_timeline(),
            tls_handshakes: default_handshakes(),
            lifecycle_samples: 0,
            automation: Automation::default(),
            on_unscheduled_crash: UnscheduledCrash::default(),
        }
    }
}

/// How an operator's automation drives WireGuard interfaces and peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Automation {
    /// From code: netlink for kernel WireGuard, UAPI and rtnetlink for TUN daemons. The
    /// default: it was faster in every measurement (README, "Automation from code").
    #[default]
    Library,
    /// Spawning `ip` and `wg` for each step, as shell automation does.
    Processes,
}

impl Automation {
    pub fn name(self) -> &'static str {
        match self {
            Automation::Library => "library",
            Automation::Processes => "processes",
        }
    }
    /// The other way, for comparison.
    pub fn other(self) -> Automation {
        match self {
            Automation::Library => Automation::Processes,
            Automation::Processes => Automation::Library,
        }
    }
}

fn default_window() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_timeline() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(1)))
}
fn default_handshakes() -> Spanned<Vec<HandshakeMode>> {
    Spanned::new(0..0, vec![HandshakeMode::Full])
}

/// How a dialler opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandshakeMode {
    /// A full handshake: no session resumption.
    Full,
    /// TLS 1.3 resumption with a ticket from an earlier connection to the same peer.
    Resumed,
    /// Resumption with the first object sent as 0-RTT early data.
    #[serde(rename = "0rtt")]
    ZeroRtt,
}

impl HandshakeMode {
    pub fn name(self) -> &'static str {
        match self {
            HandshakeMode::Full => "full",
            HandshakeMode::Resumed => "resumed",
            HandshakeMode::ZeroRtt => "0rtt",
        }
    }
    pub fn from_code(code: u8) -> Option<HandshakeMode> {
        [
            HandshakeMode::Full,
            HandshakeMode::Resumed,
            HandshakeMode::ZeroRtt,
        ]
        .get(code as usize)
        .copied()
    }
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What happens at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `node` and `peer` close their connection and remove each other from the underlay.
    PeerRemove,
    /// `node` and `peer` add each other back; `node` dials (a cold connect).
    PeerAdd,
    /// `node` leaves: every peer of it is removed, on both sides.
    NodeLeave,
    /// `node` comes back: it and every present node add each other; `node` dials them all.
    NodeJoin,
    /// `node` closes every connection, drops its QUIC endpoint (and an in-process tunnel)
    /// and builds it anew, then dials every peer.
    NodeRestart,
    /// `node`'s tunnel interface goes down (stacks without one record "not applicable").
    IfaceDown,
    IfaceUp,
    /// `node` forces a QUIC key update on every connection.
    KeyUpdate,
    /// `node`'s process is killed (SIGKILL: nothing drains, nothing says goodbye). Its
    /// peers find out as their transport does.
    NodeCrash,
    /// A crashed `node`'s process starts again with its keys, dials its peers and rejoins
    /// the workload from now on.
    NodeRecover,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::PeerRemove => "peer_remove",
            EventKind::PeerAdd => "peer_add",
            EventKind::NodeLeave => "node_leave",
            EventKind::NodeJoin => "node_join",
            EventKind::NodeRestart => "node_restart",
            EventKind::IfaceDown => "iface_down",
            EventKind::IfaceUp => "iface_up",
            EventKind::KeyUpdate => "key_update",
            EventKind::NodeCrash => "node_crash",
            EventKind::NodeRecover => "node_recover",
        }
    }
    pub fn needs_peer(self) -> bool {
        matches!(self, EventKind::PeerRemove | EventKind::PeerAdd)
    }
}

/// One `[[event]]`: `kind` at `at` (from the start of sending), repeated `count` times
/// `every` apart.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub kind: Spanned<EventKind>,
    pub at: Spanned<Dur>,
    pub node: Spanned<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Spanned<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Spanned<Dur>>,
    #[serde(default = "one")]
    pub count: Spanned<u32>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// One firing of an event, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub at: Duration,
    pub kind: EventKind,
    pub node: u32,
    pub peer: Option<u32>,
}

/// Every firing of `events` in time order (ties keep file order), with the span of its
/// `kind` for messages.
pub fn firings(events: &[Event]) -> Vec<(Firing, Range<usize>)> {
    let mut out = vec![];
    for e in events {
        let every = e.every.as_ref().map_or(Duration::ZERO, |d| d.get_ref().0);
        for k in 0..*e.count.get_ref() {
            out.push((
                Firing {
                    at: e.at.get_ref().0 + every * k,
                    kind: *e.kind.get_ref(),
                    node: *e.node.get_ref(),
                    peer: e.peer.as_ref().map(|p| *p.get_ref()),
                },
                e.kind.span(),
            ));
        }
    }
    out.sort_by_key(|(f, _)| f.at);
    out
}

type Invalid = (Range<usize>, String);

/// Checks each event on its own, then replays them all in time order so that an event
/// that cannot happen (adding a peer that is present, bringing up an interface that is
/// up) is refused with its place in the file.
pub fn validate(
    events: &[Event],
    churn: &Churn,
    nodes: u32,
    send_end: Duration,
) -> Result<(), Invalid> {
    let timeline = &churn.timeline;
    if timeline.get_ref().0 < Duration::from_millis(10) {
        return Err((
            timeline.span(),
            format!(
                "churn.timeline must be at least 10ms, got {}",
                timeline.get_ref()
            ),
        ));
    }
    if churn.tls_handshakes.get_ref().is_empty() {
        return Err((
            churn.tls_handshakes.span(),
            "churn.tls_handshakes must name at least one of \"full\", \"resumed\", \"0rtt\"".into(),
        ));
    }
    let node_ok = |n: &Spanned<u32>, what: &str| {
        if *n.get_ref() >= nodes {
            Err((
                n.span(),
                format!(
                    "event {what} {} does not exist; nodes are numbered 0..{}",
                    n.get_ref(),
                    nodes - 1
                ),
            ))
        } else {
            Ok(())
        }
    };
    for e in events {
        let kind = *e.kind.get_ref();
        node_ok(&e.node, "node")?;
        match (&e.peer, kind.needs_peer()) {
            (None, true) => {
                return Err((e.kind.span(), format!("{} needs a peer", kind.name())));
            }
            (Some(p), false) => {
                return Err((p.span(), format!("{} takes no peer", kind.name())));
            }
            (Some(p), true) => {
                node_ok(p, "peer")?;
                if p.get_ref() == e.node.get_ref() {
                    return Err((p.span(), "an event's peer must differ from its node".into()));
                }
            }
            (None, false) => {}
        }
        if *e.count.get_ref() == 0 {
            return Err((e.count.span(), "count must be at least 1".into()));
        }
        match &e.every {
            Some(every) if every.get_ref().0.is_zero() => {
                return Err((every.span(), "every must be above zero".into()));
            }
            None if *e.count.get_ref() > 1 => {
                return Err((e.count.span(), "count above 1 needs `every`".into()));
            }
            _ => {}
        }
        let every = e.every.as_ref().map_or(Duration::ZERO, |d| d.get_ref().0);
        let last = e.at.get_ref().0 + every * (*e.count.get_ref() - 1);
        if last >= send_end {
            return Err((
                e.at.span(),
                format!(
                    "the event's last firing, at {}, is not before sending ends ({})",
                    Dur(last),
                    Dur(send_end)
                ),
            ));
        }
    }
    let fired = firings(events);
    let list: Vec<Firing> = fired.iter().map(|(f, _)| *f).collect();
    crate::workload::events::ChurnSteps::build(&list, nodes)
        .map(|_| ())
        .map_err(|(i, msg)| (fired[i].1.clone(), msg))
}
