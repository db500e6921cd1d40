//! stackbench: measures what transport-security stacks cost a prioritized broadcast.
//!
//! Flow: a [`scenario`] is parsed and validated; the [`controller`] builds a [`topology`] of
//! network namespaces, and for each [`stack`] × repetition runs one [`node`] process per
//! namespace. Nodes follow the seeded, I/O-free [`workload`] schedule and report
//! [`metrics`]; [`aggregate`] and [`results`] turn those into self-describing result folders. [`vm`] runs all of this
//! inside a virtual machine where the host kernel lacks WireGuard.

pub mod aggregate;
pub mod check;
pub mod churn_summary;
pub mod cli;
pub mod control;
pub mod controller;
pub mod faults;
pub mod floor;
pub mod link;
pub mod metrics;
pub mod node;
pub mod process;
pub mod reporting;
pub mod results;
pub mod review;
pub mod rootless;
pub mod runid;
pub mod scale;
pub mod shadow;
pub mod stack;
pub mod standalone;
pub mod topology;
pub mod vm;

// The I/O-free core, at the paths the harness has always used.
pub use stackbench_core::{scenario, units, workload};
