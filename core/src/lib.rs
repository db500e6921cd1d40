//! stackbench's core, free of I/O: what an experiment is ([`scenario`], [`units`]), what each
//! node sends and when ([`workload`]), what the network does to a packet ([`link`]), every
//! decision a node makes ([`node`]: schedule, fanout, gossip relay, dedup), a seeded
//! simulator of many nodes ([`sim`]), and the shapes of what nodes report and results
//! folders hold ([`control`], [`schema`]).
//!
//! Time is always passed in, and every random choice comes from the scenario's seed, so
//! everything here is reproducible and testable without sockets or clocks.

pub mod ceiling;
pub mod control;
pub mod crash;
pub mod graph;
pub mod histogram;
pub mod link;
pub mod node;
pub mod record_log;
pub mod scenario;
pub mod schema;
pub mod seen;
pub mod setup;
pub mod shadow;
pub mod shortfall;
pub mod sim;
pub mod transport;
pub mod units;
pub mod upgrade;
pub mod workload;
