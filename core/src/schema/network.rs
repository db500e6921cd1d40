//! What a network of mixed stacks, or an upgrade from one stack to another, did: in
//! `summary.json` beside the ordinary per-class figures.

use super::{nullable_f64, Percentiles};
use serde::{Deserialize, Serialize};

/// Which stacks ran where, for an entry that is not one stack on every node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// Every stack some node ran.
    pub stacks: Vec<String>,
    /// At the start, e.g. "8 × quic-tls, 8 × quic-null+wg-inproc + quic-tls".
    pub composition: String,
    /// The graph's edges by the stack they start on (the dialler's first shared stack).
    #[serde(default)]
    pub edges: std::collections::BTreeMap<String, u32>,
    /// Setup dials that failed on a node's preferred stack and fell back to the next one
    /// both ends speak, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSummary>,
}

/// A rolling upgrade, measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeSummary {
    pub from: String,
    pub to: String,
    /// "dual" or "restart".
    pub strategy: String,
    pub nodes: u32,
    /// When the first node began, s from the start of sending.
    #[serde(deserialize_with = "nullable_f64")]
    pub began_s: f64,
    /// When the last node was done: dual, its old stack dropped; restart, its last
    /// connection on the new stack up.
    #[serde(deserialize_with = "nullable_f64")]
    pub finished_s: f64,
    /// Nodes that never finished (a dial that failed, an old stack never dropped).
    pub unfinished_nodes: u32,
    /// Connections made on the new stack.
    pub connections: u32,
    pub dial_failures: u32,
    /// Handshakes on the new stack, at the dialler.
    pub handshake_us: Percentiles,
    /// Per node, until its new stack's endpoint was up (restart: downtime included).
    pub endpoint_us: Percentiles,
    /// Before, during and after the upgrade, by each object's intended send time.
    pub phases: Vec<PhaseSummary>,
    /// Share of nodes on the new stack over time.
    pub timeline: Vec<UpgradePoint>,
}

impl UpgradeSummary {
    pub fn duration_s(&self) -> f64 {
        self.finished_s - self.began_s
    }

    pub fn phase(&self, name: &str) -> Option<&PhaseSummary> {
        self.phases.iter().find(|p| p.phase == name)
    }
}

/// One phase of an upgrade: steady state before it, the transition, steady state after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// "before", "during" or "after".
    pub phase: String,
    /// The phase's span, s from the start of sending.
    #[serde(deserialize_with = "nullable_f64")]
    pub from_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub to_s: f64,
    /// The host's busy CPU as a share of its cores (every process on it).
    #[serde(deserialize_with = "nullable_f64")]
    pub host_cpu_fraction: f64,
    /// The node processes' CPU, cores (seconds per second, summed over nodes).
    #[serde(deserialize_with = "nullable_f64")]
    pub node_cpu_cores: f64,
    /// Bytes the nodes sent on their interfaces, per second, summed over nodes.
    #[serde(deserialize_with = "nullable_f64")]
    pub wire_bytes_per_s: f64,
    pub classes: Vec<PhaseClass>,
}

/// One open-loop class in one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseClass {
    pub class: String,
    /// Objects intended in the phase (measured window only).
    pub objects: u64,
    /// Deliveries they should have made (objects × receivers) and made.
    pub expected: u64,
    pub delivered: u64,
    /// Deliveries that never happened: lost, or never sent because the sender fell behind.
    pub lost: u64,
    /// Deliveries the plan itself rules out: receivers cut off from the origin because no
    /// path of neighbours sharing a stack joined them when the object was due (restart
    /// partitions the network; dual never does).
    #[serde(default)]
    pub predicted_lost: u64,
    pub latency_us: Percentiles,
    pub reach_90_us: Percentiles,
    pub reach_100_us: Percentiles,
    /// Objects that never reached 90% / 100% of the nodes.
    pub unreached_90: u64,
    pub unreached_100: u64,
}

/// The upgrade's progress at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradePoint {
    #[serde(deserialize_with = "nullable_f64")]
    pub t_s: f64,
    /// Share of nodes whose new stack is up (dual ones included).
    #[serde(deserialize_with = "nullable_f64")]
    pub on_new: f64,
    /// Share of nodes running both stacks.
    #[serde(deserialize_with = "nullable_f64")]
    pub dual: f64,
}
