//! Gossip relay end to end: objects cross several hops over real QUIC connections that
//! exist only along the graph's edges, every node gets every object once, duplicates are
//! counted, and the run's own folder holds the simulator's prediction for it.

mod common;

use common::{require_namespaces, run, scenario, serial};
use stackbench::controller::Faults;
use stackbench_core::schema::{RunStatus, Simulation};

const GOSSIP: &str = r#"
name = "gossip-test"
seed = 11
duration = "2s"
warmup = "500ms"
drain = "1500ms"
stacks = ["quic-null"]

[topology]
nodes = 12
fanout = "gossip"
degree = 3

[[class]]
name = "block"
priority = 20
size = "16KiB"
arrival = { process = "constant", rate = "5/s" }
origins = [0]
validate = "1ms"

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "poisson", rate = "5/s" }
"#;

#[test]
fn gossip_reaches_every_node_over_several_hops_and_counts_duplicates() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = scenario(GOSSIP);
    let graph = stackbench::workload::WorkloadPlan::from_scenario(&s)
        .expect("a plan")
        .fanout
        .graph;
    let out = run(&s, "quic-null", dir.path(), Faults::default());
    assert_eq!(
        out.manifest.status,
        RunStatus::Complete,
        "{:?}",
        out.manifest.error
    );
    let summary = common::summary(&out, "quic-null");
    let max_distance = (0..12)
        .flat_map(|a| graph.distances(a))
        .max()
        .expect("nodes");
    assert!(
        max_distance >= 2,
        "a degree-3 graph of 12 nodes needs relays"
    );
    for c in &summary.classes {
        assert!(c.sent > 0, "{}", c.name);
        assert_eq!(
            c.sent % 11,
            0,
            "{}: each object is meant for the 11 others",
            c.name
        );
        assert_eq!(
            c.delivered, c.sent,
            "{}: every node got every object",
            c.name
        );
        assert_eq!(c.unreached["100%"], 0, "{}", c.name);
        assert!(c.nodes_short.is_empty(), "{}: {:?}", c.name, c.nodes_short);
        let deepest = *c.hops.keys().max().expect("deliveries have hops");
        assert!(
            deepest >= 2,
            "{}: relayed objects arrive after 2+ hops",
            c.name
        );
        // A first copy may take a longer path when a relay on the shortest one is busy, but
        // never one that visits a node twice.
        assert!(deepest <= 11, "{}: {:?}", c.name, c.hops);
        assert_eq!(c.hops.values().sum::<u64>(), c.delivered, "{}", c.name);
        assert!(
            c.duplicates > 0,
            "{}: relays along cycles make copies",
            c.name
        );
        assert!(c.hop_latency_us.count > 0);
    }
    // Each node connects to its 3 neighbours only: 12 × 3 / 2 handshakes, not 66.
    assert_eq!(summary.handshake_us.count, 18);
    let sim: Simulation = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("simulation.json")).expect("simulation.json"),
    )
    .expect("simulation.json parses");
    assert_eq!(sim.classes.len(), 2);
    assert!(sim
        .classes
        .iter()
        .all(|c| c.unreached == 0 && c.deliveries > 0));
    let loaded = stackbench_report::load_run(dir.path()).expect("readable");
    let md = stackbench_report::summary_markdown(&loaded);
    assert!(md.contains("Reach across the network"), "{md}");
    assert!(md.contains("predicted"), "{md}");
}
