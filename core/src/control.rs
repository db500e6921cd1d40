//! The control protocol's messages between the controller and its nodes (one JSON message
//! per line; the harness carries them over a Unix socket), and what a node reports.

pub use crate::schema::{InterfaceCounters as NetCounters, TransportCounters};
use crate::workload::WorkloadPlan;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, net::SocketAddr};

/// One other node as this node sees it: where to reach it and which key it must present.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub index: u32,
    pub addr: SocketAddr,
    pub spki: Vec<u8>,
    pub wg_public: [u8; 32],
    /// Where the peer's WireGuard listens (outer UDP address), for in-process tunnels.
    pub wg_endpoint: Option<SocketAddr>,
}

/// A WireGuard daemon's UAPI socket.
pub type WgUapi = std::path::PathBuf;

/// Node → controller.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToController {
    /// The node is up; `spki` and `wg_public` are its fresh TLS and WireGuard public keys.
    Hello {
        index: u32,
        pid: u32,
        spki: Vec<u8>,
        wg_public: [u8; 32],
    },
    /// The endpoint is bound and accepting; waiting for the go to dial.
    Bound,
    /// Connected to every peer; waiting for the start.
    Ready { handshake_us: Vec<u64> },
    /// Measurements of the finished repetition.
    Report(Box<NodeReport>),
    /// The node could not do its part; the message says why.
    Failed { error: String },
}

/// Controller → node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToNode {
    Setup(Box<NodeSetup>),
    /// Every node is bound: dial the peers now (so no Initial is sent to a closed port).
    Connect,
    /// Start sending at this CLOCK_MONOTONIC instant (ns), shared by all nodes of the host.
    Start {
        start_ns: u64,
    },
    /// To a node's process started again after a crash (instead of `Connect`): the run
    /// began at `start_ns`; recover as firing `firing` of the churn plan says, dialling
    /// every peer, and run the workload from there.
    Rejoin {
        start_ns: u64,
        firing: u32,
    },
    Shutdown,
}

/// What a node needs to run its part: the plan (whose `network` says which stacks each
/// node speaks when) and, per stack slot, where it and its neighbours are on that stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSetup {
    pub plan: WorkloadPlan,
    /// One per slot of `plan.network`, whether or not this node speaks it at the start.
    pub slots: Vec<SlotSetup>,
    /// The node runs under a network simulator (Shadow): plain datagram I/O, which is all
    /// a simulator offers, and no busy-waiting (simulated time stands still while a process
    /// spins).
    #[serde(default)]
    pub simulated: bool,
}

/// One stack at one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotSetup {
    pub stack: String,
    pub bind: SocketAddr,
    pub wg_listen: Option<SocketAddr>,
    pub wg_uapi: Option<WgUapi>,
    /// The node's neighbours, as they are reached on this stack.
    pub peers: Vec<PeerInfo>,
}

impl NodeSetup {
    /// A setup with a single stack.
    pub fn single(plan: WorkloadPlan, slot: SlotSetup) -> NodeSetup {
        NodeSetup {
            plan,
            slots: vec![slot],
            simulated: false,
        }
    }

    /// The stack slot this node prefers at the start (the only one of a single-stack run).
    pub fn primary(&self, index: u32) -> &SlotSetup {
        let slot = self
            .plan
            .network
            .speaks
            .get(index as usize)
            .and_then(|s| s.first())
            .copied()
            .unwrap_or_default() as usize;
        &self.slots[slot.min(self.slots.len() - 1)]
    }

    /// The node's neighbours, from the primary slot (every slot lists the same ones).
    pub fn peers(&self, index: u32) -> &[PeerInfo] {
        &self.primary(index).peers
    }
}

/// A node's secret keys, for a node that starts from a file instead of generating them:
/// its TLS certificate and PKCS#8 key (DER) and its WireGuard private key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeKeys {
    pub cert_der: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
    pub wg_secret: [u8; 32],
}

/// Everything a node needs to run without a controller: the setup a controller would send
/// (resolved plan, peers with their keys and addresses), its own keys, and when to start.
/// Written by `stackbench node-inputs`; read by `stackbench node --inputs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInputs {
    pub index: u32,
    pub keys: NodeKeys,
    pub setup: NodeSetup,
    /// The shared start instant, CLOCK_REALTIME ns: hosts (or a simulator's hosts) share
    /// wall time, not a monotonic clock.
    pub start_unix_ns: u64,
}

/// The longest control message a controller reads: a long run's report with every
/// delivery fits many times over; a node that sends more is refused, not buffered.
pub const MAX_MESSAGE: usize = 256 << 20;

/// One control message from its line.
pub fn decode<M: serde::de::DeserializeOwned>(line: &str) -> Result<M, serde_json::Error> {
    serde_json::from_str(line)
}

impl NodeReport {
    /// Checks what the controller relies on in a report from node `from` of `plan`: that
    /// it names its sender, has one entry per class, reports deliveries of objects that can
    /// exist and histograms this build can read. A misbehaving node's report is refused
    /// with the reason, rather than summarised into nonsense.
    pub fn check(&self, plan: &WorkloadPlan, from: u32) -> Result<(), String> {
        if self.index != from {
            return Err(format!(
                "a report naming node {} came from node {from}",
                self.index
            ));
        }
        if self.classes.len() != plan.classes.len() {
            return Err(format!(
                "{} classes reported, the plan has {}",
                self.classes.len(),
                plan.classes.len()
            ));
        }
        if let Some(&(origin, class, ..)) = self
            .deliveries
            .iter()
            .find(|&&(o, c, ..)| u32::from(o) >= plan.nodes || usize::from(c) >= plan.classes.len())
        {
            return Err(format!(
                "a delivery from node {origin} of class {class}: no such node or class"
            ));
        }
        let hist = |what: &str, s: &str| {
            crate::histogram::decode_histogram(s)
                .map(|_| ())
                .map_err(|e| format!("{what}: {e}"))
        };
        hist("send lag", &self.send_lag_hist)?;
        for (c, cc) in plan.classes.iter().zip(&self.classes) {
            hist(&c.name, &cc.latency_hist)?;
            if let Some((step, _)) = cc
                .timeline_sealed
                .iter()
                .find(|(step, _)| *step as usize >= cc.timeline_hists.len())
            {
                return Err(format!(
                    "{}: a sealed timeline step {step} beyond the {} steps reported",
                    c.name,
                    cc.timeline_hists.len()
                ));
            }
            for h in cc
                .timeline_parts()
                .map(|(_, h)| h)
                .chain(cc.disrupted_hists.values().map(String::as_str))
                .chain([cc.hop_latency_hist.as_str(), cc.steady_hist.as_str()])
                .filter(|h| !h.is_empty())
            {
                hist(&c.name, h)?;
            }
        }
        Ok(())
    }
}

/// What one node measured during a repetition.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NodeReport {
    pub index: u32,
    /// The shared start instant (CLOCK_MONOTONIC ns), for placing churn on the timeline.
    #[serde(default)]
    pub start_ns: u64,
    /// Indexed by class.
    pub classes: Vec<ClassCounters>,
    /// Measured deliveries of open-loop classes, for reach times: (origin, class, seq, µs).
    /// Not in the message when the node wrote them to its record log instead; the
    /// controller puts them back from there.
    pub deliveries: Vec<crate::record_log::Delivery>,
    /// How many records the node wrote to its record log, when it kept one
    /// ([`crate::record_log`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<crate::record_log::Logged>,
    /// How late the node's sender was against the schedule, µs (base64 HdrHistogram V2).
    pub send_lag_hist: String,
    /// User CPU net of the generator's busy-wait, which is reported apart.
    pub cpu_user_us: u64,
    pub generator_spin_us: u64,
    pub cpu_sys_us: u64,
    /// The node process's peak resident memory (VmHWM), bytes.
    #[serde(default)]
    pub max_rss_bytes: u64,
    /// Interface counters over the repetition, by interface name.
    pub net: BTreeMap<String, NetCounters>,
    /// QUIC and socket counters summed over this node's connections.
    pub transport: TransportCounters,
    /// Bytes of every object received, warm-up and drain included (the same span as `net`).
    pub all_received_bytes: u64,
    pub error_count: u64,
    /// The first few stream errors, verbatim.
    pub errors: Vec<String>,
    /// What churn did at this node and what it cost.
    #[serde(default)]
    pub churn: NodeChurn,
    /// What an upgrade did at this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<NodeUpgrade>,
    /// The node's CPU and bytes on the wire, sampled during an upgrade run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<UsageSample>,
    /// A dual-stack node's setup dials that failed on the preferred stack and fell back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// The node's memory and descriptors, every [`crate::schema::RESOURCE_INTERVAL_S`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<crate::schema::ResourceSample>,
}

/// One node's upgrade as it happened; times are µs from the start of sending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUpgrade {
    pub began_us: u64,
    /// Until the new stack's endpoint was up (restart: closing the old one and any downtime
    /// included).
    pub endpoint_us: u64,
    /// Connections on the new stack: dialled by this node, and accepted from later nodes.
    pub dialled: u32,
    pub accepted: u32,
    pub dial_failures: u32,
    /// Handshakes of this node's own dials on the new stack, µs.
    pub handshake_us: Vec<u64>,
    /// When the last connection on the new stack came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_connected_us: Option<u64>,
    /// Dual: when the old stack's endpoint closed (every neighbour spoke the new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_dropped_us: Option<u64>,
}

/// A node's cumulative CPU and interface bytes at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageSample {
    /// µs from the start of sending.
    pub t_us: u64,
    /// User + system CPU of the node process so far, µs.
    pub cpu_us: u64,
    /// Bytes sent and received on the node's interfaces so far.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// One node's share of churn: the steps it took, the cold connects it received, and the
/// WireGuard handshakes it saw complete.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NodeChurn {
    pub steps: Vec<StepRecord>,
    pub cold_connects: Vec<ColdConnect>,
    /// (peer, CLOCK_MONOTONIC ns) of each WireGuard handshake seen completing.
    pub wg_handshakes: Vec<(u32, u64)>,
    /// Connections to peers that ended other than by churn's own close: how the node
    /// finds out that a peer crashed.
    #[serde(default)]
    pub peers_lost: Vec<PeerLost>,
}

/// A connection to `peer` given up by the transport at `at_ns` (CLOCK_MONOTONIC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerLost {
    pub peer: u32,
    pub at_ns: u64,
    /// What the transport said.
    pub how: String,
}

/// A step as it happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub firing: u32,
    pub node: u32,
    pub action: crate::workload::events::Action,
    /// When the step began, µs from the start of sending.
    pub began_us: u64,
    /// How long the underlay took to apply it (a UAPI request, `wg`, `ip`, a new `Tunn`).
    pub apply_us: u64,
    pub outcome: StepOutcome,
    /// For dials: until the handshake completed, at the dialler, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_us: Option<u64>,
    /// The peer dialled, for a dial's own record (the step that led to it has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialled: Option<u32>,
}

/// How a churn step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum StepOutcome {
    Ok,
    /// The step means nothing for this stack (no tunnel interface to bring down, say).
    NotApplicable(String),
    Failed(String),
}

impl std::fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepOutcome::Ok => f.write_str("ok"),
            StepOutcome::NotApplicable(why) => write!(f, "not applicable: {why}"),
            StepOutcome::Failed(e) => f.write_str(e),
        }
    }
}

/// A cold connect, measured where its first object arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdConnect {
    pub firing: u32,
    pub dialler: u32,
    pub acceptor: u32,
    /// What the handshake turned out to be.
    pub how: crate::scenario::churn::HandshakeMode,
    /// The event that led to it.
    pub cause: crate::scenario::churn::EventKind,
    /// From the dialler's step (the peer known on both sides) to the first object's full
    /// receipt, µs.
    pub us: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClassCounters {
    /// Measured objects this node scheduled, counted once per receiving peer.
    pub sent: u64,
    /// Objects (× receiving peers) this node's generator dropped because it had fallen more
    /// than the node's lag limit behind its schedule: load it could not generate.
    #[serde(default)]
    pub not_sent_in_time: u64,
    pub sent_bytes: u64,
    pub received: u64,
    pub received_bytes: u64,
    pub inversions: u64,
    /// Delivery latency of measured objects received here, µs (base64 HdrHistogram V2).
    pub latency_hist: String,
    /// Copies of objects this node already had (gossip), dropped.
    #[serde(default)]
    pub duplicates: u64,
    /// First deliveries by the hops they took: `hops[h - 1]` took h hops. (A list, not a
    /// map: messages are internally tagged, and serde cannot read integer map keys there.)
    #[serde(default)]
    pub hops: Vec<u64>,
    /// The last hop's latency of first deliveries, µs (base64 HdrHistogram V2).
    #[serde(default)]
    pub hop_latency_hist: String,
    /// The same latencies split by the second of the measured window in which each object
    /// was due to be sent: the latency timeline.
    /// One entry per step, an empty histogram where every sample of the step is in
    /// `timeline_sealed`.
    #[serde(default)]
    pub timeline_hists: Vec<String>,
    /// Steps sealed while the run went on, as (step, histogram); a step may have several
    /// (a late delivery opened it again). A step's latencies are the sum of its entry in
    /// `timeline_hists` and these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline_sealed: Vec<(u32, String)>,
    /// With churn: latency of objects a reconfigured node sent to other peers within an
    /// event's window, by the event's kind, and of objects outside every window.
    #[serde(default)]
    pub disrupted_hists: BTreeMap<String, String>,
    #[serde(default)]
    pub steady_hist: String,
}

impl ClassCounters {
    /// Every part of the latency timeline as (step, histogram): each step's entry, then
    /// the steps sealed during the run. A step's latencies are the sum of its parts.
    pub fn timeline_parts(&self) -> impl Iterator<Item = (usize, &str)> {
        self.timeline_hists
            .iter()
            .map(String::as_str)
            .enumerate()
            .chain(
                self.timeline_sealed
                    .iter()
                    .map(|(step, h)| (*step as usize, h.as_str())),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{encode_histogram, new_histogram};

    fn report(plan: &WorkloadPlan, index: u32) -> NodeReport {
        let h = encode_histogram(&new_histogram()).expect("encodes");
        NodeReport {
            index,
            classes: plan
                .classes
                .iter()
                .map(|_| ClassCounters {
                    latency_hist: h.clone(),
                    ..Default::default()
                })
                .collect(),
            send_lag_hist: h,
            deliveries: vec![(1, 0, 0, 100)],
            ..Default::default()
        }
    }

    #[test]
    fn a_misbehaving_nodes_report_is_refused_with_the_reason() {
        let plan = crate::workload::example_plan();
        assert_eq!(report(&plan, 2).check(&plan, 2), Ok(()));
        let refused = |r: NodeReport, why: &str| {
            let e = r.check(&plan, 2).expect_err(why);
            assert!(e.contains(why), "{e}");
        };
        refused(report(&plan, 1), "naming node 1 came from node 2");
        let mut r = report(&plan, 2);
        r.classes.pop();
        refused(r, "2 classes reported, the plan has 3");
        let mut r = report(&plan, 2);
        r.deliveries.push((9, 0, 0, 1));
        refused(r, "from node 9");
        let mut r = report(&plan, 2);
        r.classes[0]
            .timeline_sealed
            .push((0, r.send_lag_hist.clone()));
        refused(
            r,
            "block: a sealed timeline step 0 beyond the 0 steps reported",
        );
        let mut r = report(&plan, 2);
        r.classes[1].latency_hist = "garbage".into();
        refused(r, "tx: histogram decoding failed");
        // A half-dead node's last line, cut off.
        let line = serde_json::to_string(&ToController::Report(Box::new(report(&plan, 2))))
            .expect("serializes");
        assert!(decode::<ToController>(&line[..line.len() / 2]).is_err());
        assert!(decode::<ToController>(&line).is_ok());
    }
}
