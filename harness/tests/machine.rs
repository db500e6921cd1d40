//! What the machine itself costs and cannot do: the floor measured before every run, and a
//! load the nodes cannot generate named as such instead of a node reported as hung.

mod common;

use common::{require_namespaces, run, scenario, serial, votes_toml};
use stackbench::controller::Faults;
use stackbench_core::schema::MachineFloor;

#[test]
fn every_run_records_the_floor_beside_the_stacks_latency() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = scenario(&votes_toml("floor", 2, "1s", "500ms", "500ms", 200));
    let out = run(&s, "quic-tls", dir.path(), Faults::default());
    assert_eq!(
        out.manifest.status,
        stackbench_core::schema::RunStatus::Complete,
        "{:?}",
        out.manifest.error
    );
    let floor: MachineFloor = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("floor.json")).expect("floor.json"),
    )
    .expect("floor.json parses");
    assert_eq!(floor.classes.len(), 1);
    let vote = &floor.classes[0];
    assert_eq!(vote.class, "vote");
    assert_eq!(vote.rate_per_sec, 200.0);
    // 200/s for 1 s at least: about 200 datagrams, all of them timed.
    assert!(vote.one_way_us.count >= 150, "{:?}", vote.one_way_us);
    assert!(vote.one_way_us.p50 > 0 && vote.one_way_us.p50 <= vote.one_way_us.p99);
    let w = &floor.wakeup;
    assert!(w.sparse_one_way_us.count >= 150 && w.back_to_back_one_way_us.count >= 1500);
    assert_eq!(
        w.cost_us,
        w.sparse_one_way_us.p50 as f64 - w.back_to_back_one_way_us.p50 as f64
    );
    let run = stackbench_report::load_run(dir.path()).expect("readable");
    let md = stackbench_report::summary_markdown(&run);
    assert!(
        md.contains("### Machine floor") && md.contains("above floor p50"),
        "{md}"
    );
}

#[test]
fn a_load_the_nodes_cannot_generate_is_named_not_reported_as_a_hung_node() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    // 2 000 000 objects a second from each of two nodes: far past what a node can generate.
    let s = scenario(&votes_toml(
        "overload", 2, "2s", "500ms", "500ms", 2_000_000,
    ));
    let out = run(&s, "quic-tls", dir.path(), Faults::default());
    assert_eq!(
        out.manifest.status,
        stackbench_core::schema::RunStatus::Complete,
        "{:?}",
        out.manifest.error
    );
    let run = stackbench_report::load_run(dir.path()).expect("readable");
    let vote = &run.repetitions[0].classes[0];
    assert!(vote.not_sent_in_time > 0, "{vote:?}");
    let warnings = stackbench_report::warnings(&run).join("\n");
    assert!(
        warnings.contains("the offered load is more than the nodes could generate")
            && warnings.contains("class vote"),
        "{warnings}"
    );
    assert!(stackbench_report::incompleteness(&run)
        .iter()
        .any(|m| m.contains("not sent in time")));
    // What `--require-delivery` judges: the load the machine could not offer is not there.
    assert!(!stackbench_report::undelivered(&run)
        .iter()
        .any(|m| m.contains("not sent in time")));
}
