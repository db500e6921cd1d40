//! The prioritized broadcast workload, free of I/O: what each node sends and when, the
//! object header on the wire, and the bookkeeping the receivers derive from deliveries.
//! Time is always passed in (`now` as an offset from the run's start), and every random
//! choice comes from the scenario's seed, so a schedule is reproducible and testable.

pub mod events;
mod header;
mod inversions;
pub mod network;
mod reach;
mod schedule;

pub use header::{HeaderError, ObjectHeader, HEADER_LEN, PROBE_CLASS};
pub use inversions::InversionTracker;
pub use reach::{reach_times, REACH_PERCENTS};
pub use schedule::{Emit, Schedule};

use crate::{
    graph::{GraphError, PeerGraph},
    scenario::{Arrival, Fanout, Scenario},
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything a node needs to know about the workload, derived from a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadPlan {
    pub seed: u64,
    pub nodes: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub classes: Vec<ClassPlan>,
    /// Events during the run and how their cost is measured.
    pub churn: events::ChurnPlan,
    /// QUIC settings every stack shares.
    #[serde(default)]
    pub transport: crate::transport::TransportPlan,
    /// Who connects to whom, and whether nodes relay what they receive.
    pub fanout: FanoutPlan,
    /// Which stacks each node speaks, and when that changes.
    #[serde(default)]
    pub network: network::NetworkPlan,
}

/// How objects spread: the graph of connections, and whether nodes relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutPlan {
    pub graph: PeerGraph,
    /// Gossip: each node relays an object the first time it sees it. Direct: only origins
    /// send, to every peer of a full mesh.
    pub relay: bool,
}

impl FanoutPlan {
    pub fn direct(nodes: u32) -> FanoutPlan {
        FanoutPlan {
            graph: PeerGraph::full_mesh(nodes),
            relay: false,
        }
    }
}

/// One traffic class, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPlan {
    pub name: String,
    pub priority: i32,
    pub size_min: u32,
    pub size_max: u32,
    pub arrival: Arrival,
    /// Origin node indices.
    pub origins: Vec<u32>,
    /// Under gossip, how long a node checks an object before relaying it.
    #[serde(default)]
    pub validate: Duration,
}

impl WorkloadPlan {
    /// The plan of a validated scenario; fails only where no gossip graph of the asked
    /// shape exists.
    pub fn from_scenario(s: &Scenario) -> Result<Self, GraphError> {
        let nodes = s.node_count();
        let fanout = match (s.topology.fanout, &s.topology.degree) {
            (Fanout::Gossip, Some(d)) => {
                let regions = s.topology.outside_region.as_ref().map(|o| {
                    let link = crate::link::LinkPlan::from_scenario(s);
                    let names: Vec<&str> = s
                        .regions
                        .as_ref()
                        .map(|r| {
                            r.names
                                .get_ref()
                                .iter()
                                .map(|n| n.get_ref().as_str())
                                .collect()
                        })
                        .unwrap_or_default();
                    let of: Vec<u32> = link
                        .nodes
                        .iter()
                        .map(|n| {
                            n.region
                                .as_deref()
                                .and_then(|r| names.iter().position(|x| *x == r))
                                .unwrap_or(0) as u32
                        })
                        .collect();
                    (of, o.get_ref().0)
                });
                FanoutPlan {
                    graph: PeerGraph::random_regular(
                        nodes,
                        *d.get_ref(),
                        regions.as_ref().map(|(of, share)| (of.as_slice(), *share)),
                        s.seed,
                    )?,
                    relay: true,
                }
            }
            _ => FanoutPlan::direct(nodes),
        };
        Ok(WorkloadPlan {
            seed: s.seed,
            nodes,
            warmup: s.warmup.get_ref().0,
            duration: s.duration.get_ref().0,
            drain: s.drain.0,
            classes: s
                .classes
                .iter()
                .map(|c| ClassPlan {
                    name: c.name.get_ref().clone(),
                    priority: c.priority,
                    // Validation bounds sizes to u32.
                    size_min: c.size.get_ref().min.0 as u32,
                    size_max: c.size.get_ref().max.0 as u32,
                    arrival: c.arrival,
                    origins: (0..nodes).filter(|n| c.originates_at(*n)).collect(),
                    validate: c.validate.map(|d| d.0).unwrap_or_default(),
                })
                .collect(),
            churn: events::ChurnPlan::from_scenario(s),
            transport: s.transport.plan(),
            fanout,
            network: network::NetworkPlan::single(
                s.stack_names().first().map_or("", String::as_str),
                nodes,
            ),
        })
    }

    /// End of the sending period (warm-up plus measured duration), from the start.
    pub fn send_end(&self) -> Duration {
        self.warmup + self.duration
    }

    /// Whether an object intended at `intended` (offset from the start) is measured.
    pub fn is_measured(&self, intended: Duration) -> bool {
        intended >= self.warmup && intended < self.send_end()
    }

    /// Nodes each object should reach: every node but its origin, directly or by relay.
    pub fn receivers_per_object(&self) -> u32 {
        self.nodes - 1
    }
}

/// A small plan with one class of each kind (constant, Poisson, backlog), for tests here
/// and in the harness.
pub fn example_plan() -> WorkloadPlan {
    use crate::units::EventRate;
    WorkloadPlan {
        seed: 7,
        nodes: 3,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(4),
        drain: Duration::from_secs(1),
        classes: vec![
            ClassPlan {
                name: "block".into(),
                priority: 10,
                size_min: 1000,
                size_max: 1000,
                arrival: Arrival::Constant {
                    rate: EventRate(10.0),
                },
                origins: vec![0],
                validate: Duration::ZERO,
            },
            ClassPlan {
                name: "tx".into(),
                priority: 0,
                size_min: 100,
                size_max: 400,
                arrival: Arrival::Poisson {
                    rate: EventRate(200.0),
                },
                origins: vec![0, 1, 2],
                validate: Duration::ZERO,
            },
            ClassPlan {
                name: "bulk".into(),
                priority: -1,
                size_min: 65536,
                size_max: 65536,
                arrival: Arrival::Backlog { outstanding: 2 },
                origins: vec![1],
                validate: Duration::ZERO,
            },
        ],
        churn: events::ChurnPlan::default(),
        transport: Default::default(),
        fanout: FanoutPlan::direct(3),
        network: network::NetworkPlan::single("quic-tls", 3),
    }
}
