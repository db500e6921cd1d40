//! Helpers shared by the integration tests that build real namespaces.
#![allow(dead_code)]

use stackbench::{
    check::HostCaps,
    controller::{self, Faults, RunOptions, RunOutcome},
    scenario::Scenario,
    stack::{self, Availability, Stack},
};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

static NETNS: Mutex<()> = Mutex::new(());

/// Serializes tests that build namespaces: they measure latency and must not share the CPU.
pub fn serial() -> MutexGuard<'static, ()> {
    NETNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails loudly (never skips) when this host cannot build namespaces.
pub fn require_namespaces() -> HostCaps {
    let host = HostCaps::probe(&format!("sbt{:05x}", rand::random::<u32>() & 0xf_ffff));
    if let Some(why) = host.namespaces_unavailable() {
        panic!("these tests build network namespaces and need root: {why}");
    }
    host
}

/// The stacks this host can run; prints the others with their reason.
pub fn available_stacks(host: &HostCaps) -> Vec<Arc<dyn Stack>> {
    let mut out = vec![];
    for s in stack::registry() {
        match s.availability(host) {
            Availability::Available => out.push(s),
            Availability::Unavailable(r) => {
                eprintln!("conformance: {} unavailable here: {r}", s.id())
            }
        }
    }
    assert!(!out.is_empty(), "no stack is available on this host");
    out
}

/// TOML of a one-class scenario: `nodes` nodes all sending 200 B votes at `rate`/s.
pub fn votes_toml(
    name: &str,
    nodes: u32,
    duration: &str,
    warmup: &str,
    drain: &str,
    rate: u32,
) -> String {
    format!(
        r#"
name = "{name}"
seed = 3
duration = "{duration}"
warmup = "{warmup}"
drain = "{drain}"
stacks = ["quic-tls"]

[topology]
nodes = {nodes}

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = {{ process = "poisson", rate = "{rate}/s" }}
"#
    )
}

pub fn scenario(text: &str) -> Scenario {
    let known = stack::names();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    Scenario::parse(&PathBuf::from("test.toml"), text, &known).unwrap_or_else(|e| panic!("{e}"))
}

pub fn run(scenario: &Scenario, stack: &str, out: &std::path::Path, faults: Faults) -> RunOutcome {
    run_networks(scenario, Some(vec![stack.to_owned()]), out, faults)
}

/// Runs `stacks`, or every network the scenario names (stacks, mixes, upgrades) when `None`.
#[allow(dead_code)] // Not every test binary runs whole scenarios.
pub fn run_networks(
    scenario: &Scenario,
    stacks: Option<Vec<String>>,
    out: &std::path::Path,
    faults: Faults,
) -> RunOutcome {
    let opts = RunOptions {
        out: out.to_owned(),
        exact_dir: true,
        stacks,
        node_exe: PathBuf::from(env!("CARGO_BIN_EXE_stackbench")),
        progress: false,
        progress_context: String::new(),
        verbose: false,
        unchecked_links: false,
        faults,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A link self-check that fails refuses the run before any node starts. On a shared
    // machine a probe is sometimes starved for a moment (20 Mbit measured as 17.9): the
    // test is of the stack, so a refused start is tried again, twice, and said so.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match rt.block_on(controller::run(scenario, &opts)) {
            Ok(outcome) => return outcome,
            Err(e) if attempts < 3 && format!("{e}").contains(LINKS_REFUSED) => {
                eprintln!("link self-check refused the run (attempt {attempts} of 3): {e:#}");
            }
            Err(e) => panic!("run failed to start: {e:#}"),
        }
    }
}

/// How the controller refuses a run whose links it measured off.
const LINKS_REFUSED: &str = "the links are not what the scenario asks";

pub fn summary(outcome: &RunOutcome, stack: &str) -> stackbench_core::schema::RepetitionSummary {
    let p = outcome.dir.join(stack).join("0").join("summary.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("summary.json parses")
}
