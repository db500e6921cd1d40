//! What the scenario asks of the network ([`plan`]) and how a path treats each packet
//! ([`model`]). The harness's emulator is this model plus sockets.

pub mod model;
pub mod plan;

pub use plan::{LinkNode, LinkPlan, PathImpairment};
