//! Networks whose nodes differ, end to end over real namespaces and stacks: a mix at steady
//! state (dual-stack nodes dial each other on the tunnel and TLS-only nodes on TLS), and a
//! rolling upgrade from quic-tls to quic-null+wg-inproc by each strategy. Dual must lose
//! nothing; a restart leaves nodes that moved cut off from neighbours that have not.

mod common;

use common::{require_namespaces, run_networks, scenario, serial, summary};
use stackbench::controller::Faults;
use stackbench_core::schema::RunStatus;

const NETWORKS: &str = r#"
name = "upgrade-test"
seed = 5
duration = "5s"
warmup = "500ms"
drain = "1500ms"
stacks = []

[topology]
nodes = 8
fanout = "gossip"
degree = 3

[[upgrade]]
name = "up-dual"
from = "quic-tls"
to = "quic-null+wg-inproc"
strategy = "dual"
start = "1500ms"
every = "250ms"
grace = "300ms"

[[upgrade]]
name = "up-restart"
from = "quic-tls"
to = "quic-null+wg-inproc"
strategy = "restart"
start = "1500ms"
every = "250ms"
batch = 2
downtime = "100ms"
order = [7, 6, 5, 4, 3, 2, 1, 0]

[[mix]]
name = "half"
default = ["quic-tls"]
[[mix.assign]]
stacks = ["quic-null+wg-inproc", "quic-tls"]
nodes = [0, 1, 2, 3]

[[class]]
name = "block"
priority = 20
size = "16KiB"
arrival = { process = "constant", rate = "5/s" }
origins = [0]

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "10/s" }
"#;

#[test]
fn upgrades_and_mixes_run_on_real_stacks_and_dual_loses_nothing() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = scenario(NETWORKS);
    let edges = stackbench::workload::WorkloadPlan::from_scenario(&s)
        .expect("a plan")
        .fanout
        .graph
        .edges()
        .count() as u32;
    let out = run_networks(&s, None, dir.path(), Faults::default());
    assert_eq!(
        out.manifest.status,
        RunStatus::Complete,
        "{:?}",
        out.manifest.error
    );
    let names: Vec<&str> = out
        .manifest
        .stacks
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["half", "up-dual", "up-restart"]);

    // The mix: half dual-stack; every object everywhere, over both stacks.
    let mix = summary(&out, "half");
    let net = mix.network.as_ref().expect("a mix describes its network");
    assert!(net.upgrade.is_none());
    assert!(
        net.composition
            .contains("4 × quic-null+wg-inproc + quic-tls"),
        "{}",
        net.composition
    );
    assert_eq!(mix.stack_config.as_object().map(|o| o.len()), Some(2));
    assert_eq!(net.edges.values().sum::<u32>(), edges);
    assert_eq!(net.edges.len(), 2, "edges on both stacks: {:?}", net.edges);
    for c in &mix.classes {
        assert_eq!(c.delivered, c.sent, "{}: mix delivered everything", c.name);
    }

    let dual = summary(&out, "up-dual");
    let u = dual
        .network
        .as_ref()
        .and_then(|n| n.upgrade.as_ref())
        .expect("an upgrade summary");
    assert_eq!(u.strategy, "dual");
    assert_eq!(u.unfinished_nodes, 0, "every node dropped quic-tls");
    assert_eq!(u.connections, edges, "each edge moved once");
    assert_eq!(u.dial_failures, 0);
    assert!(u.began_s >= 1.5 && u.finished_s > u.began_s, "{u:?}");
    for p in &u.phases {
        for c in &p.classes {
            assert!(c.objects > 0, "{} {}", p.phase, c.class);
            assert_eq!(c.lost, 0, "dual loses nothing: {} {}", p.phase, c.class);
            assert_eq!(c.predicted_lost, 0, "and its plan rules nothing out");
        }
    }
    let last = u.timeline.last().expect("progress");
    assert_eq!((last.on_new, last.dual), (1.0, 0.0));
    assert!(u.timeline.iter().any(|p| p.dual > 0.0));
    let during = u.phase("during").expect("during");
    assert!(during.node_cpu_cores > 0.0 && during.wire_bytes_per_s > 0.0);
    for c in &dual.classes {
        assert_eq!(c.delivered, c.sent, "{}", c.name);
    }

    let restart = summary(&out, "up-restart");
    let u = restart
        .network
        .as_ref()
        .and_then(|n| n.upgrade.as_ref())
        .expect("an upgrade summary");
    assert_eq!(u.strategy, "restart");
    assert_eq!(u.connections, edges);
    assert_eq!(u.unfinished_nodes, 0);
    // Nodes 7 and 6 move first (together, down for 100 ms) and reach nobody else until a
    // neighbour follows; a neighbour in the same batch is dialled once its stack is up, not
    // into WireGuard's 5 s handshake retry (which would leave the upgrade unfinished).
    let during = u.phase("during").expect("during");
    assert!(
        during.classes.iter().map(|c| c.lost).sum::<u64>() > 0,
        "a rolling restart cuts nodes off: {during:?}"
    );
    assert!(
        during.classes.iter().map(|c| c.predicted_lost).sum::<u64>() > 0,
        "and the partition model says so too: {during:?}"
    );
    // Before the first restart only what was still in flight to a restarting node (sent in
    // the last 50 ms) can be lost; after the last reconnect, nothing.
    let plan = stackbench::workload::WorkloadPlan::from_scenario(&s).expect("a plan");
    let before = u.phase("before").expect("before");
    for c in &before.classes {
        let in_flight = sent_between(&plan, &c.class, before.to_s - 0.05, before.to_s);
        assert!(
            c.lost <= in_flight * u64::from(plan.receivers_per_object()),
            "{c:?}: {in_flight} objects were in flight at the first restart"
        );
    }
    let after = u.phase("after").expect("after");
    assert!(after.classes.iter().all(|c| c.lost == 0), "{after:?}");

    let loaded = stackbench_report::load_run(dir.path()).expect("readable");
    let md = stackbench_report::summary_markdown(&loaded);
    assert!(md.contains("Mixed stacks and upgrades"), "{md}");
    assert!(md.contains("up-restart rep 0 (restart"), "{md}");
}

/// How many objects of `class` every origin together intends in [a, b) seconds.
fn sent_between(plan: &stackbench::workload::WorkloadPlan, class: &str, a: f64, b: f64) -> u64 {
    let ci = plan.classes.iter().position(|c| c.name == class);
    stackbench_core::upgrade::intended_times(plan)
        .iter()
        .filter(|((_, c, _), t)| Some(*c as usize) == ci && (a..b).contains(&t.as_secs_f64()))
        .count() as u64
}

const MIX_BASE: &str = r#"
name = "fallback-test"
seed = 9
duration = "2s"
warmup = "500ms"
drain = "1500ms"
stacks = []

[topology]
nodes = 6
fanout = "gossip"
degree = 3

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "10/s" }
"#;

#[test]
fn a_dual_stack_dial_that_fails_on_the_tunnel_falls_back_to_tls() {
    let _g = serial();
    require_namespaces();
    // Two neighbours speak both stacks and prefer the tunnel; the lower one, which dials,
    // is given a wrong WireGuard key for the other, so the tunnel never answers.
    let graph = stackbench::workload::WorkloadPlan::from_scenario(&scenario(&format!(
        "{MIX_BASE}[[mix]]\nname = \"m\"\ndefault = [\"quic-tls\"]\n"
    )))
    .expect("a plan")
    .fanout
    .graph;
    let (u, v) = graph.edges().next().expect("an edge");
    let (u, v) = (u.min(v), u.max(v));
    let s = scenario(&format!(
        "{MIX_BASE}[[mix]]\nname = \"m\"\ndefault = [\"quic-tls\"]\n\
         [[mix.assign]]\nstacks = [\"quic-null+wg-inproc\", \"quic-tls\"]\nnodes = [{u}, {v}]\n"
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults {
        wrong_peer_key: Some((u, v)),
        only_on: Some("quic-null+wg-inproc".into()),
        ..Faults::default()
    };
    let out = run_networks(&s, None, dir.path(), faults);
    assert_eq!(
        out.manifest.status,
        RunStatus::Complete,
        "{:?}",
        out.manifest.error
    );
    let m = summary(&out, "m");
    let net = m.network.as_ref().expect("a mix");
    assert_eq!(net.fallbacks.len(), 1, "{:?}", net.fallbacks);
    let f = &net.fallbacks[0];
    assert!(
        f.contains(&format!("node {u}: connecting to node {v}"))
            && f.contains("fell back to quic-tls"),
        "{f}"
    );
    for c in &m.classes {
        assert_eq!(c.delivered, c.sent, "{}", c.name);
    }
}
