//! The prioritized broadcast workload, free of I/O: what each node sends and when, the
//! object header on the wire, and the bookkeeping the receivers derive from deliveries.
//! Time is always passed in (`now` as an offset from the run's start), and every random
//! choice comes from the scenario's seed, so a schedule is reproducible and testable.

pub mod events;
mod header;
mod inversions;
mod reach;
mod schedule;

pub use header::{HeaderError, ObjectHeader, HEADER_LEN, PROBE_CLASS};
pub use inversions::InversionTracker;
pub use reach::{reach_times, REACH_PERCENTS};
pub use schedule::{Emit, Schedule};

use crate::scenario::{Arrival, Scenario};
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
}

impl WorkloadPlan {
    pub fn from_scenario(s: &Scenario) -> Self {
        let nodes = s.node_count();
        WorkloadPlan {
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
                })
                .collect(),
            churn: events::ChurnPlan::from_scenario(s),
        }
    }

    /// End of the sending period (warm-up plus measured duration), from the start.
    pub fn send_end(&self) -> Duration {
        self.warmup + self.duration
    }

    /// Whether an object intended at `intended` (offset from the start) is measured.
    pub fn is_measured(&self, intended: Duration) -> bool {
        intended >= self.warmup && intended < self.send_end()
    }

    /// Receivers of each object under direct fanout.
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
            },
            ClassPlan {
                name: "bulk".into(),
                priority: -1,
                size_min: 65536,
                size_max: 65536,
                arrival: Arrival::Backlog { outstanding: 2 },
                origins: vec![1],
            },
        ],
        churn: events::ChurnPlan::default(),
    }
}
