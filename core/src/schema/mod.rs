//! The on-disk results schema. The harness writes it; reports, comparisons and outside tools
//! read it. Every file describes itself: units are in the field names.

pub mod churn;
pub mod crash;
pub mod network;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of this schema, written into every file.
pub const SCHEMA_VERSION: u32 = 1;
/// The oldest version readers still accept (fields added since have defaults).
pub const OLDEST_READABLE_SCHEMA: u32 = 1;

/// `run.json`: what was asked, what ran, what could not and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunManifest {
    pub schema: u32,
    pub run_id: String,
    pub scenario: String,
    pub status: RunStatus,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    pub stacks: Vec<StackOutcome>,
    /// Why the run stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when the run's CPU was emulated (a VM without KVM): its timings compare only
    /// with each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulated_cpu: Option<String>,
    /// Set when the run did not hold its links to the scenario (`--unchecked-links`): what
    /// the self-check found. Every output of the run carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_not_verified: Option<String>,
    /// Set when the network was simulated (Shadow) rather than emulated in namespaces:
    /// what the simulation leaves out. Every output of the run carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated_network: Option<String>,
}

/// Where a run stands; "running" on disk after the run ended means it was cut short.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Running,
    Complete,
    Failed,
    Interrupted,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        })
    }
}

/// Whether a stack could run on the machine (the reason sits beside it when not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StackStatus {
    Available,
    Unavailable,
}

/// One stack's fate in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackOutcome {
    pub name: String,
    /// Plain QUIC over UDP without crypto: a control, never a candidate.
    pub insecure: bool,
    pub status: StackStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub repetitions_done: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the operator must grant or install to run the stack (`stackbench list`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub privileges: String,
}

/// `<stack>/<rep>/summary.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepetitionSummary {
    pub schema: u32,
    pub stack: String,
    pub repetition: u32,
    pub insecure: bool,
    #[serde(deserialize_with = "nullable_f64")]
    pub measured_seconds: f64,
    pub classes: Vec<ClassSummary>,
    pub nodes: Vec<NodeSummary>,
    /// Host-wide softirq CPU seconds during the repetition (all namespaces share the kernel).
    #[serde(deserialize_with = "nullable_f64")]
    pub host_softirq_seconds: f64,
    /// CPU seconds of processes the underlay runs (userspace WireGuard daemons) during the
    /// repetition: part of the stack's cost, not of any node's.
    #[serde(deserialize_with = "nullable_f64")]
    pub underlay_cpu_seconds: f64,
    /// Share of all host CPUs busy with the nodes, the underlay's processes and softirq. Near 1,
    /// latencies include waiting for a CPU, not only the stack's own cost.
    #[serde(deserialize_with = "nullable_f64")]
    pub cpu_busy_fraction: f64,
    /// The host's busiest second during the repetition (whoever kept it busy), as a share
    /// of its CPUs: saturation that the average over the whole repetition dilutes.
    #[serde(default, deserialize_with = "nullable_f64")]
    pub cpu_busy_peak_fraction: f64,
    /// Share of all host CPUs the harness itself used: the controller, the nodes' generator
    /// busy-wait and the userspace link emulator. Shown beside `cpu_busy_fraction`, it says
    /// how much of the machine measuring took from what was measured.
    #[serde(default)]
    #[serde(deserialize_with = "nullable_f64")]
    pub harness_cpu_fraction: f64,
    /// Bytes the nodes put on their veths (every header, handshake and ACK) per byte of
    /// object delivered over the same span (warm-up to drain): the stack's wire overhead.
    #[serde(deserialize_with = "nullable_f64")]
    pub wire_bytes_per_delivered_byte: f64,
    /// Share of all host CPUs busy with work that was not this run's (other processes on a
    /// shared machine, the controller, CPU time the hypervisor stole from a virtual machine).
    /// Well above zero, the latencies are disturbed.
    #[serde(default)]
    #[serde(deserialize_with = "nullable_f64")]
    pub other_load_fraction: f64,
    /// Full QUIC+TLS handshakes at setup, µs: the first handshake of each freshly started
    /// node process (cold code paths), not a warm reconnect.
    pub handshake_us: Percentiles,
    /// How late nodes sent against their schedule, µs: the harness's own delay.
    pub send_lag_us: Percentiles,
    pub stack_config: serde_json::Value,
    pub runtime: String,
    pub node_errors: Vec<String>,
    /// The userspace link emulator during the repetition, when the run had one: the network's
    /// cost, not the stack's, but it competes for the same CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_emulator: Option<LinkEmulatorCost>,
    /// What churn cost, when the scenario has events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<crate::schema::churn::ChurnSummary>,
    /// The stack's interface lifecycle, when the scenario asks for samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::schema::churn::Lifecycle>,
    /// The same lifecycle driven the other way (processes against library), for stacks
    /// where the choice exists: what the scenario's `automation` saves or costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_other: Option<crate::schema::churn::Lifecycle>,
    /// Which stacks ran where (a mix or an upgrade), and what the upgrade did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<network::NetworkSummary>,
    /// Nodes that crashed (scheduled or not), and what the crashes cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashes: Option<crash::CrashSummary>,
    /// Resident memory and open descriptors of the controller and each node, sampled
    /// through the repetition: a leak shows as a slope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSummary>,
}

/// How often processes sample their memory and descriptors.
pub const RESOURCE_INTERVAL_S: f64 = 10.0;

/// One process's resident memory and open file descriptors at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// s from the start of sending.
    #[serde(deserialize_with = "nullable_f64")]
    pub t_s: f64,
    pub rss_bytes: u64,
    pub fds: u32,
}

/// The samples of one repetition. A crashed node's samples die with it; a recovered one's
/// start again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceSummary {
    pub controller: Vec<ResourceSample>,
    /// Per node that reported: (index, samples).
    pub nodes: Vec<(u32, Vec<ResourceSample>)>,
}

/// What the userspace link emulator did and cost during one repetition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LinkEmulatorCost {
    #[serde(deserialize_with = "nullable_f64")]
    pub cpu_seconds: f64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub reordered_packets: u64,
    /// Frames a destination port refused (queue full): losses the scenario did not ask for.
    pub send_errors: u64,
    /// How late frames left against their release time, µs: the emulator's own error.
    pub lateness_us: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassSummary {
    pub name: String,
    pub priority: i32,
    /// Closed-loop background load; its latency is queueing by design.
    pub bulk: bool,
    /// Measured (object, receiver) pairs scheduled.
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    /// (object, receiver) pairs the generators dropped because they had fallen more than
    /// a second behind their schedule: offered load the nodes could not generate.
    #[serde(default)]
    pub not_sent_in_time: u64,
    pub delivered_bytes: u64,
    /// `delivered_bytes` (objects scheduled in the measured window, delivered before the
    /// drain ended) over the window's length.
    #[serde(deserialize_with = "nullable_f64")]
    pub goodput_bytes_per_sec: f64,
    pub inversions: u64,
    /// Delivery latency from intended send to full receipt, per (object, receiver), µs.
    pub latency_us: Percentiles,
    /// Time for an object to reach N% of receivers, µs (open-loop classes only).
    pub reach_us: BTreeMap<String, Percentiles>,
    /// Objects that never reached N% of receivers.
    pub unreached: BTreeMap<String, u64>,
    /// Copies received of objects a node already had (gossip), dropped: with `delivered`,
    /// the bandwidth amplification.
    #[serde(default)]
    pub duplicates: u64,
    /// First deliveries by the hops they took (1 is straight from the origin).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hops: BTreeMap<u32, u64>,
    /// The last hop's share of each first delivery, µs: from the relaying node's send to
    /// full receipt.
    #[serde(default)]
    pub hop_latency_us: Percentiles,
    /// Open-loop classes: the nodes that missed measured objects, most first, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes_short: Vec<NodeShortfall>,
}

/// A node that some objects of a class never reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShortfall {
    pub node: u32,
    /// Measured objects meant for it that it never received.
    pub missed: u64,
    /// The likeliest reason, from what the node reported.
    pub why: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    #[serde(deserialize_with = "nullable_f64")]
    pub mean: f64,
}

impl Percentiles {
    /// Exact order statistics of `samples` (sorted in place); all zero when empty.
    pub fn from_samples(samples: &mut [u64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Percentiles {
            count: samples.len() as u64,
            min: samples[0],
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
            mean: samples.iter().sum::<u64>() as f64 / samples.len() as f64,
        }
    }
}

/// `scale.json`: one scenario run at several network sizes, per stack, to find the largest
/// network the machine carries without saturating its CPU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleSweep {
    pub schema: u32,
    pub scenario: String,
    /// The share of CPU at or above which a run counts as saturated.
    #[serde(deserialize_with = "nullable_f64")]
    pub saturated_at: f64,
    pub points: Vec<ScalePoint>,
}

/// One stack at one network size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScalePoint {
    pub stack: String,
    pub nodes: u32,
    /// The run folder, relative to the sweep's folder.
    pub run: String,
    /// `None` when the stack did not run (unavailable or failed); `error` says why.
    pub cpu_busy_fraction: Option<f64>,
    /// The busiest second's share of the CPUs.
    #[serde(default)]
    pub cpu_busy_peak_fraction: Option<f64>,
    /// Every object of every class reached every node it was meant for, and every node
    /// generated its whole schedule.
    pub complete: bool,
    /// The first open-loop class's reach-100% p50, µs.
    pub reach_all_p50_us: Option<u64>,
    pub max_rss_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `simulation.json`: what the in-memory simulator of the run's node logic predicts,
/// before any stack's costs (see `stackbench_core::sim`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Simulation {
    pub schema: u32,
    /// The fixed processing cost the simulator charged per object sent and received, µs.
    #[serde(deserialize_with = "nullable_f64")]
    pub per_object_us: f64,
    /// Wall time the simulation took, s.
    #[serde(deserialize_with = "nullable_f64")]
    pub wall_seconds: f64,
    pub classes: Vec<SimulatedClass>,
}

/// One open-loop class as the simulator saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SimulatedClass {
    pub class: String,
    /// Measured objects originated.
    pub objects: u64,
    /// Time to reach N% of receivers, µs, one sample per object that did.
    pub reach_us: BTreeMap<String, Percentiles>,
    /// First deliveries by the hops they took.
    pub hops: BTreeMap<u32, u64>,
    pub deliveries: u64,
    pub duplicates: u64,
    /// (object, receiver) pairs never reached.
    pub unreached: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeSummary {
    pub index: u32,
    /// User CPU of the node process, net of `generator_spin_seconds`.
    #[serde(deserialize_with = "nullable_f64")]
    pub cpu_user_seconds: f64,
    /// Time the load generator busy-waited before scheduled sends (harness cost, excluded
    /// from `cpu_user_seconds`) so that its wake-up delay is not charged to the stack.
    #[serde(deserialize_with = "nullable_f64")]
    pub generator_spin_seconds: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub cpu_sys_seconds: f64,
    /// Peak resident memory of the node process, bytes.
    #[serde(default)]
    pub max_rss_bytes: u64,
    pub interfaces: BTreeMap<String, InterfaceCounters>,
    pub transport: TransportCounters,
}

/// Transport-level counters of one node, summed over its connections: where latency tails
/// come from (losses, socket drops).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportCounters {
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
    pub udp_tx_datagrams: u64,
    pub udp_rx_datagrams: u64,
    /// Datagrams the kernel dropped because the node's socket buffer was full.
    pub udp_rcvbuf_errors: u64,
    /// IP fragments created in the node's namespace (tunnel daemons included); tunnel MTUs
    /// are sized so that this stays zero.
    #[serde(default)]
    pub ip_fragments_created: u64,
    pub min_rtt_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// `links.json`: the network the run asked for and what the self-check measured on it
/// before the run started. The run refuses to start when a value is out of tolerance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LinkCheck {
    pub schema: u32,
    /// What applied delay, jitter, loss and reordering.
    pub mechanism: String,
    /// How the emulator was scheduled, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_scheduling: Option<String>,
    /// The rule a measured value is held to.
    pub tolerance: String,
    pub nodes: Vec<LinkNode>,
    /// Every directed path between two nodes.
    pub paths: Vec<PathCheck>,
    /// Every rate-limited node uplink.
    pub uplinks: Vec<UplinkCheck>,
    /// Idle RTT between two nodes by `ping`, beside the probe's own figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingCheck>,
    /// Values out of tolerance (empty when the check passed).
    pub failures: Vec<String>,
    /// What the check could not verify, and why (a rate the probe's sender could not reach).
    /// The run goes on; every output carries these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The run was started with `--unchecked-links`: `failures` were recorded, not enforced.
    #[serde(default)]
    pub unchecked: bool,
    /// What the check probed, when it could not probe everything, and how long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<ProbeCoverage>,
    /// The probe's own timing noise on this machine, measured on loopback paths inside node
    /// namespaces during the check; the delay and jitter allowances include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_noise: Option<ProbeNoise>,
    /// Earlier probes of the same links that found values off and were discarded: what each
    /// found, and the CPU time the hypervisor took meanwhile (a virtual machine that loses
    /// its CPUs for milliseconds delays every held frame; the links did not change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discarded_attempts: Vec<String>,
}

impl LinkCheck {
    /// What `run.json` says of a run started with `--unchecked-links`.
    pub fn unchecked_note(&self) -> String {
        if self.failures.is_empty() {
            "started with --unchecked-links; the self-check found nothing off".into()
        } else {
            format!(
                "started with --unchecked-links, and the self-check found {} value(s) off: {}",
                self.failures.len(),
                self.failures.join("; ")
            )
        }
    }
}

/// `floor.json`: what the machine itself costs, measured once per run before any stack on
/// the run's own namespaces: raw UDP on the scenario's schedule, and the idle wake-up cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MachineFloor {
    pub schema: u32,
    /// The two nodes measured between.
    pub from: u32,
    pub to: u32,
    /// How it was measured.
    pub method: String,
    /// One per class of at most one datagram (none where every class is larger).
    pub classes: Vec<FloorClass>,
    pub wakeup: WakeupCost,
    /// What WireGuard's crypto costs per byte on this machine, for the run's in-process
    /// WireGuard stacks: what bounds their goodput (see [`crate::ceiling`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WgCryptoCosts>,
}

/// Each in-process WireGuard library's per-packet cost, measured in the run on one core.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WgCryptoCosts {
    /// How it was measured.
    pub method: String,
    /// CPUs the host has: the budget a saturated run spends.
    pub cores: u32,
    /// Inner IP packet measured: a full tunnel MTU.
    pub inner_packet_bytes: u32,
    /// QUIC bytes that packet carries (less the synthetic IPv4+UDP header).
    pub quic_bytes_per_packet: u32,
    pub libraries: Vec<WgLibraryCost>,
}

/// One library's cost for one full tunnel packet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WgLibraryCost {
    /// The stack-name suffix of the stacks that use it, e.g. "+wg-inproc".
    pub underlay: String,
    /// The library, its version and its crypto backend.
    pub library: String,
    #[serde(deserialize_with = "nullable_f64")]
    pub seal_ns: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub open_ns: f64,
    /// Seal plus open per QUIC byte carried.
    #[serde(deserialize_with = "nullable_f64")]
    pub ns_per_quic_byte: f64,
}

/// Raw UDP one-way latency at one class's rate and sizes, from the intended send time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FloorClass {
    pub class: String,
    #[serde(deserialize_with = "nullable_f64")]
    pub rate_per_sec: f64,
    /// Smallest and largest object.
    pub size_bytes: [u32; 2],
    pub one_way_us: Percentiles,
}

/// What waking an idle thread costs: one-way latency (half a ping-pong's RTT) when both
/// sides sleep between rounds against back to back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WakeupCost {
    /// The gap between sparse rounds, µs.
    pub sparse_gap_us: u64,
    pub sparse_one_way_us: Percentiles,
    pub back_to_back_one_way_us: Percentiles,
    /// Sparse p50 less back-to-back p50, µs: what going idle costs each delivery.
    #[serde(deserialize_with = "nullable_f64")]
    pub cost_us: f64,
}

/// What the self-check probed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeCoverage {
    /// One sentence: which paths and uplinks were probed.
    pub summary: String,
    pub paths_total: u64,
    pub paths_probed: u64,
    pub uplinks_total: u64,
    pub uplinks_probed: u64,
    /// Probes sent on each probed path.
    pub probes_per_path: u64,
    /// Wall time of the whole check, ms.
    pub wall_ms: u64,
}

/// The probe's own one-way delay on a zero-delay path (loopback within one namespace).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeNoise {
    pub samples: u64,
    #[serde(deserialize_with = "nullable_f64")]
    pub median_us: f64,
    /// Standard deviation from the interquartile range.
    #[serde(deserialize_with = "nullable_f64")]
    pub sd_us: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub p99_us: f64,
}

/// Whether an uplink's rate was shown to be what the scenario asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateVerdict {
    /// Measured within tolerance.
    #[default]
    Verified,
    /// The probe could not tell (its sender could not reach the rate, or its receiver
    /// dropped datagrams); the link was not shown to be off.
    NotVerified,
    /// The link was shown to be off.
    Off,
}

/// An `f64` that may have been written as `null` (serde_json writes NaN so): read as NaN, so
/// that a results folder the harness wrote stays readable.
pub fn nullable_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One node's place in the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkNode {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Egress rate limit; none is line rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_bits_per_sec: Option<u64>,
    /// The rate limiter's queue, as time at the uplink rate.
    #[serde(default)]
    pub queue_us: u64,
}

/// A configured value, what was measured, and how far apart they may be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    #[serde(deserialize_with = "nullable_f64")]
    pub configured: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub measured: f64,
    /// Largest allowed |measured - configured|.
    #[serde(deserialize_with = "nullable_f64")]
    pub allowed: f64,
    pub ok: bool,
}

impl Checked {
    pub fn new(configured: f64, measured: f64, allowed: f64) -> Checked {
        Checked {
            configured,
            measured,
            allowed,
            ok: (measured - configured).abs() <= allowed,
        }
    }
}

/// One direction of one path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathCheck {
    pub from: u32,
    pub to: u32,
    pub probes_sent: u64,
    pub probes_received: u64,
    /// Median one-way delay, µs (all namespaces share one monotonic clock).
    pub delay_us: Checked,
    /// Standard deviation of the one-way delay, µs, from the interquartile range (robust to
    /// the odd probe a busy CPU delays).
    pub jitter_us: Checked,
    /// Share of probes lost. Checked over all paths configured alike (see `loss_group`).
    pub loss: Checked,
    /// Share of probes that overtook an earlier one. Checked like `loss`. Its `configured`
    /// is the share expected to overtake: 0 where the path's delay is shorter than the probe
    /// gap, since a packet sent at once then has nothing to overtake.
    pub reorder: Checked,
    /// Paths configured alike share a group; loss and reordering are judged per group,
    /// where there are enough samples.
    pub loss_group: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UplinkCheck {
    pub node: u32,
    /// Rate the receiver saw, in link-layer bits per second, corrected for configured loss.
    pub rate_bits_per_sec: Checked,
    /// Whether the probe's sender had to wait for the link (its socket buffer filled): then
    /// the link, not the sender, set the rate.
    pub sender_held_back: bool,
    /// Link-layer bits per second the probe's sender offered.
    #[serde(default, deserialize_with = "nullable_f64")]
    pub offered_bits_per_sec: f64,
    #[serde(default)]
    pub verdict: RateVerdict,
    /// Why the rate is off or not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PingCheck {
    pub from: u32,
    pub to: u32,
    /// `ping`'s min/avg/max/mdev, µs, or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_rtt_us: Option<[f64; 4]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_error: Option<String>,
    /// The probe's RTT: median one-way delay there plus back, µs.
    #[serde(deserialize_with = "nullable_f64")]
    pub probe_rtt_us: f64,
    /// The configured RTT, µs.
    #[serde(deserialize_with = "nullable_f64")]
    pub configured_rtt_us: f64,
}

#[cfg(test)]
mod readable {
    //! Whatever the harness writes, a reader reads: serde_json writes a NaN as `null`, so
    //! every float of every file must read `null` back.
    use super::*;

    /// `value` with every float in it replaced by `null`.
    fn floats_to_null(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => *value = serde_json::Value::Null,
            serde_json::Value::Array(a) => a.iter_mut().for_each(floats_to_null),
            serde_json::Value::Object(o) => o.values_mut().for_each(floats_to_null),
            _ => {}
        }
    }

    fn reads_back_with_nan<T: Serialize + serde::de::DeserializeOwned>(v: &T) {
        let mut json = serde_json::to_value(v).expect("plain data serializes");
        floats_to_null(&mut json);
        if let Err(e) = serde_json::from_value::<T>(json.clone()) {
            panic!(
                "{} with NaN floats does not read back: {e}\n{json}",
                std::any::type_name::<T>()
            );
        }
    }

    #[test]
    fn every_results_file_reads_back_with_nan_floats() {
        let p = Percentiles::default();
        reads_back_with_nan(&RunManifest::default());
        reads_back_with_nan(&RepetitionSummary {
            classes: vec![ClassSummary {
                reach_us: [("90%".to_string(), p.clone())].into_iter().collect(),
                ..Default::default()
            }],
            nodes: vec![NodeSummary::default()],
            link_emulator: Some(LinkEmulatorCost::default()),
            churn: Some(churn::ChurnSummary {
                disruption: vec![churn::ClassDisruption::default()],
                ..Default::default()
            }),
            lifecycle: Some(churn::Lifecycle::default()),
            ..Default::default()
        });
        reads_back_with_nan(&MachineFloor {
            classes: vec![FloorClass::default()],
            ..Default::default()
        });
        reads_back_with_nan(&Simulation {
            classes: vec![SimulatedClass::default()],
            ..Default::default()
        });
        reads_back_with_nan(&ScaleSweep {
            points: vec![ScalePoint {
                cpu_busy_fraction: Some(0.5),
                ..Default::default()
            }],
            ..Default::default()
        });
        reads_back_with_nan(&LinkCheck::default());
    }
}
