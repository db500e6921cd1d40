//! The results schema's crash part: nodes that died during a repetition, what their peers
//! saw, and which objects the crashes cost, apart from what the stacks lost.

use crate::schema::Percentiles;
use serde::{Deserialize, Serialize};

/// Every crash of one repetition and what it cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CrashSummary {
    pub crashes: Vec<CrashRecord>,
    /// Per open-loop class: every (object, receiver) pair the schedule asked for, sorted by
    /// what became of it.
    pub classes: Vec<ClassCrashAccount>,
    /// Objects due this long before a crash count as in flight through it.
    #[serde(deserialize_with = "crate::schema::nullable_f64")]
    pub window_ms: f64,
}

/// One node's crash.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CrashRecord {
    pub node: u32,
    /// A `node_crash` event of the scenario; `false` for a node that died on its own or
    /// was killed from outside.
    pub scheduled: bool,
    /// When it died, s from the start of the measured window (negative in the warm-up).
    #[serde(deserialize_with = "crate::schema::nullable_f64")]
    pub at_s: f64,
    /// When its process started again (`node_recover`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at_s: Option<f64>,
    /// Each neighbour that noticed: from the crash until its transport gave the
    /// connection up (idle timeout, keep-alive or reset), and how.
    pub noticed: Vec<PeerNotice>,
    /// The same, over the neighbours that noticed, µs.
    pub noticed_us: Percentiles,
    /// Neighbours (with surviving reports) that never gave the connection up: the
    /// recovered node's new connection replaced it first, or the run ended first.
    pub not_noticed: Vec<u32>,
    /// From the recovery until the recovered node received its first object, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_delivery_ms: Option<f64>,
    /// From the recovery until each neighbour had the recovered node's first object on a
    /// new connection (a cold connect, timed at the neighbour), µs.
    #[serde(default)]
    pub reconnect_us: Percentiles,
}

/// A neighbour giving up its connection to a crashed node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerNotice {
    pub peer: u32,
    #[serde(deserialize_with = "crate::schema::nullable_f64")]
    pub after_ms: f64,
    /// What the transport said ("timed out", "reset by peer", …).
    pub how: String,
}

/// One class's (object, receiver) pairs in a repetition with crashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassCrashAccount {
    pub class: String,
    /// Pairs the schedule asked for: every measured object × every node but its origin.
    pub expected: u64,
    /// Pairs a surviving report shows delivered.
    pub delivered: u64,
    /// Pairs the crashes cost: the receiver was down (from the crash until it had its
    /// first object again), or the origin was down when the object was due.
    pub lost_to_crash: u64,
    /// Pairs whose receiver crashed later: its records died with the process, so whether
    /// they arrived is unknown. Counted neither delivered nor lost.
    pub unobserved: u64,
    /// Other pairs missing that were due within the window before a crash or while a node
    /// was down: in flight through a crashed node, most likely.
    pub lost_near_crash: u64,
    /// Pairs missing with no crash near: what the stack lost.
    pub lost_by_stack: u64,
    /// Reach times (to 90% and 100% of the receivers up and observed: a node down, or
    /// whose records died with it, cannot count) of objects due away from every outage,
    /// and of objects due while a node was down, µs.
    pub steady_reach90_us: Percentiles,
    pub down_reach90_us: Percentiles,
    pub steady_reach100_us: Percentiles,
    pub down_reach100_us: Percentiles,
    /// Objects due while a node was down that never reached 90% of receivers.
    pub down_unreached90: u64,
    /// Median reach-90% time of the objects due in each step of the churn timeline, ms
    /// (`null` where none reached 90%).
    pub reach90_timeline_ms: Vec<Option<f64>>,
    /// The timeline's step, ms.
    #[serde(deserialize_with = "crate::schema::nullable_f64")]
    pub timeline_step_ms: f64,
}
