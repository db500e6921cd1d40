//! The results schema's churn part: what events cost, per repetition.

use crate::schema::Percentiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What churn cost in one repetition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnSummary {
    /// Every firing: when (s from the start of the measured window; negative in the
    /// warm-up), what and who.
    pub events: Vec<EventMark>,
    /// From "peer known on both sides" to the first object's receipt, µs, by what the
    /// handshake turned out to be ("full", "resumed", "0rtt"); after a restart (which
    /// includes closing and rebuilding the endpoint) as "restart, full" and so on.
    pub cold_connect_us: BTreeMap<String, Percentiles>,
    /// Dials that never delivered their first object.
    pub cold_connect_failures: u64,
    /// The dialler's view: until its handshake completed, µs.
    pub dial_handshake_us: Percentiles,
    /// How long the underlay took to apply each kind of step, µs ("remove_peer",
    /// "add_peer" at the acceptor, "add_peer_dialler", "iface_down", "iface_up",
    /// "restart", "key_update").
    pub apply_us: BTreeMap<String, Percentiles>,
    /// Steps the stack could not take, and why ("not applicable: …" included).
    pub step_notes: Vec<String>,
    /// Per class: latency of objects a reconfigured node sent to other peers within an
    /// event's window, beside latency outside every window.
    pub disruption: Vec<ClassDisruption>,
    /// WireGuard handshakes seen completing away from any churn step (rekeys), s from the
    /// start of the measured window.
    pub wg_rekeys_s: Vec<f64>,
    /// WireGuard handshakes that followed a churn step.
    pub wg_handshakes_after_churn: u64,
    /// The disruption window, ms.
    #[serde(deserialize_with = "crate::schema::nullable_f64")]
    pub window_ms: f64,
}

/// One firing on the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMark {
    #[serde(deserialize_with = "crate::schema::nullable_f64")]
    pub at_s: f64,
    pub kind: String,
    pub node: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassDisruption {
    pub class: String,
    /// Outside every event's window.
    pub steady_us: Percentiles,
    /// Within any event's window, from a reconfigured node to its other peers.
    pub disrupted_us: Percentiles,
    /// The same, by the event's kind.
    pub by_event_us: BTreeMap<String, Percentiles>,
    /// Every node's latency within 0.5 s of a WireGuard rekey, and away from all of them
    /// (empty without rekeys).
    #[serde(default)]
    pub near_rekey_us: Percentiles,
    #[serde(default)]
    pub away_from_rekeys_us: Percentiles,
}

/// One interface lifecycle, timed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LifecycleTimes {
    pub create_us: u64,
    pub configure_us: u64,
    pub up_us: u64,
    pub destroy_us: u64,
    /// Removing one peer from the live interface and adding it back (0 where the stack has
    /// no interface).
    #[serde(default)]
    pub peer_change_us: u64,
}

/// A stack's interface lifecycle over several samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lifecycle {
    /// What the phases are for this stack, or why it has none.
    pub what: String,
    pub samples: u32,
    pub create_us: Percentiles,
    pub configure_us: Percentiles,
    pub up_us: Percentiles,
    pub destroy_us: Percentiles,
    pub total_us: Percentiles,
    /// Remove one peer and add it back, on the live interface.
    #[serde(default)]
    pub peer_change_us: Percentiles,
    /// How the steps were driven: "library" or "processes" ("" for stacks without an
    /// interface, and in runs from before automation was a choice).
    #[serde(default)]
    pub automation: String,
}
