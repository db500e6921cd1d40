//! The scenario parser and validator, and the plans a valid scenario turns into: any text
//! must give a scenario or an error with a place in the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stackbench_core::{
    link::plan::LinkPlan,
    scenario::Scenario,
    workload::{network::NetworkPlan, WorkloadPlan},
};
use std::path::PathBuf;

const STACKS: &[&str] = &[
    "quic-tls",
    "quic-null",
    "quic-tls+wg-inproc",
    "sctp+wg-inproc",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = Scenario::parse(&PathBuf::from("fuzz.toml"), text, STACKS) else {
        return;
    };
    // Networks of thousands of nodes are valid but slow to plan; the parser is the target.
    if scenario.node_count() > 256 {
        return;
    }
    let Ok(plan) = WorkloadPlan::from_scenario(&scenario) else {
        return;
    };
    let _ = NetworkPlan::variants(&scenario, &plan);
    let _ = LinkPlan::from_scenario(&scenario);
});
