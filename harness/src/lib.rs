//! stackbench: measures what transport-security stacks cost a prioritized broadcast.

pub mod scenario;
pub mod units;
pub mod workload;
