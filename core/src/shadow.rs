//! A scenario's network as a Shadow simulation: the network graph (GML) from the link plan
//! and the configuration (YAML) that runs one node process per host. Text only; running
//! Shadow is the harness's part.
//!
//! Hosts with the same region and node class see the same paths (a path's delay is the
//! base delay, the regions' delay and the sending node's access delay; its loss is the base
//! and the sender's access loss), so each such group is one vertex of a directed graph with
//! an edge between every two vertices, itself included. A 1 000-node network is then a graph
//! of a few vertices rather than a million edges.

use crate::link::plan::{LinkPlan, PathImpairment};
use std::{collections::BTreeMap, fmt::Write, net::Ipv4Addr, time::Duration};

/// Shadow's clock reads this (2000-01-01 00:00:00 UTC) when a simulation starts.
pub const SIMULATION_EPOCH_UNIX_NS: u64 = 946_684_800 * 1_000_000_000;
/// The bandwidth of a direction the scenario does not limit (a veth's, in namespaces).
pub const UNLIMITED_BITS_PER_SEC: u64 = 10_000_000_000;
/// Shadow refuses an edge latency of zero; a LAN path of no delay gets this.
pub const MIN_LATENCY_NS: u64 = 1_000;

/// The network graph and what it leaves out of the scenario's network.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowGraph {
    pub gml: String,
    /// The graph vertex of each node, by index.
    pub vertex_of: Vec<u32>,
    /// What Shadow does not model of this scenario's links, one sentence each.
    pub not_modelled: Vec<String>,
}

/// Builds the graph of `plan`.
pub fn graph(plan: &LinkPlan) -> ShadowGraph {
    let mut groups: BTreeMap<(Option<&str>, Option<&str>), u32> = BTreeMap::new();
    let mut first_of: Vec<usize> = vec![];
    let vertex_of: Vec<u32> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let next = groups.len() as u32;
            *groups
                .entry((n.region.as_deref(), n.class.as_deref()))
                .or_insert_with(|| {
                    first_of.push(i);
                    next
                })
        })
        .collect();
    let mut gml = String::from("graph [\n  directed 1\n");
    for (v, &i) in first_of.iter().enumerate() {
        let n = &plan.nodes[i];
        let up = n.uplink_bits_per_sec.unwrap_or(UNLIMITED_BITS_PER_SEC);
        let label = [n.region.as_deref(), n.class.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        // Writing to a String cannot fail.
        let _ = write!(
            gml,
            "  node [\n    id {v}\n    label \"{label}\"\n    host_bandwidth_up \"{up} bit\"\n    host_bandwidth_down \"{UNLIMITED_BITS_PER_SEC} bit\"\n  ]\n"
        );
    }
    for (a, &i) in first_of.iter().enumerate() {
        for (b, &j) in first_of.iter().enumerate() {
            let p = &plan.paths[i][j];
            let latency = p.delay_ns.max(MIN_LATENCY_NS);
            let _ = write!(
                gml,
                "  edge [\n    source {a}\n    target {b}\n    latency \"{latency} ns\"\n    packet_loss {:?}\n  ]\n",
                // Debug always writes a decimal point: Shadow reads "0" as no float.
                p.loss
            );
        }
    }
    gml.push_str("]\n");
    ShadowGraph {
        gml,
        vertex_of,
        not_modelled: not_modelled(plan),
    }
}

/// The scenario's link features Shadow has no model for.
fn not_modelled(plan: &LinkPlan) -> Vec<String> {
    let paths: Vec<&PathImpairment> = plan.directed_paths().map(|(_, _, p)| p).collect();
    let mut out = vec![];
    if paths.iter().any(|p| p.jitter_ns > 0) {
        out.push("jitter: Shadow's edges have none (its jitter attribute is reserved, not implemented); every packet of a path takes the same delay".into());
    }
    if paths.iter().any(|p| p.burst_loss.is_some()) {
        out.push("bursty (Gilbert-Elliott) loss: Shadow drops packets independently, so only the independent loss is simulated".into());
    }
    if paths.iter().any(|p| p.reorder > 0.0) {
        out.push("reordering: Shadow delivers each path's packets in order".into());
    }
    if plan.nodes.iter().any(|n| n.uplink_bits_per_sec.is_some()) {
        out.push("the uplink queue's length: Shadow's own interface queue (CoDel) stands in for the scenario's".into());
    }
    if paths.iter().any(|p| p.delay_ns < MIN_LATENCY_NS) {
        out.push(format!(
            "paths of no delay take {} µs: Shadow refuses a latency of zero",
            MIN_LATENCY_NS / 1000
        ));
    }
    out
}

/// Node `index`'s address in the simulation: 10.0.0.1 upward, never a .0 or .255.
pub fn node_ip(index: u32) -> Ipv4Addr {
    let (hi, lo) = (index / 250, index % 250);
    Ipv4Addr::new(10, (hi / 250) as u8, (hi % 250) as u8, (lo + 1) as u8)
}

/// One simulated host: the node it runs and the command line of its process.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowHost {
    pub index: u32,
    pub args: Vec<String>,
}

/// Everything the configuration says beyond the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRun {
    /// The node binary, by absolute path (Shadow runs dynamically linked binaries only).
    pub node_exe: String,
    pub hosts: Vec<ShadowHost>,
    /// When the node processes start, in simulated time.
    pub start: Duration,
    /// When the simulation ends; processes must have exited by then.
    pub stop: Duration,
    pub seed: u64,
    /// Worker threads.
    pub parallelism: usize,
    /// Shadow's output folder.
    pub data_directory: String,
}

/// The configuration file that runs `run` on `graph`.
pub fn config(graph: &ShadowGraph, run: &ShadowRun) -> String {
    let mut y = String::new();
    let _ = write!(
        y,
        "# Written by stackbench: one host per node, each running the node binary.\n\
         general:\n  stop_time: {stop} ms\n  seed: {seed}\n  parallelism: {par}\n  \
         data_directory: {data}\n  model_unblocked_syscall_latency: true\n  progress: false\n\
         network:\n  use_shortest_path: false\n  graph:\n    type: gml\n    inline: |\n",
        stop = run.stop.as_millis(),
        seed = run.seed,
        par = run.parallelism.max(1),
        data = yaml_string(&run.data_directory),
    );
    for line in graph.gml.lines() {
        let _ = writeln!(y, "      {line}");
    }
    y.push_str("hosts:\n");
    for h in &run.hosts {
        let args: Vec<String> = h.args.iter().map(|a| yaml_string(a)).collect();
        let _ = write!(
            y,
            "  node{i}:\n    network_node_id: {v}\n    ip_addr: {ip}\n    processes:\n    - path: {exe}\n      args: [{args}]\n      start_time: {start} ms\n      expected_final_state: {{exited: 0}}\n",
            i = h.index,
            v = graph.vertex_of[h.index as usize],
            ip = node_ip(h.index),
            exe = yaml_string(&run.node_exe),
            args = args.join(", "),
            start = run.start.as_millis(),
        );
    }
    y
}

/// `s` as a double-quoted YAML scalar.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::path::Path;

    fn plan(text: &str) -> LinkPlan {
        let s = Scenario::parse(Path::new("t.toml"), text, &["quic-tls"]).expect("parses");
        LinkPlan::from_scenario(&s)
    }

    const REGIONS: &str = r#"
name = "r"
seed = 1
duration = "2s"
stacks = ["quic-tls"]
[topology]
nodes = 10
uplink = "50Mbit"
[links]
jitter = "1ms"
[regions]
names = ["a", "b"]
delay = [["1ms", "40ms"], ["40ms", "2ms"]]
[[node_class]]
name = "dc"
share = "20%"
uplink = "1Gbit"
delay = "3ms"
[[node_class]]
name = "home"
share = "80%"
[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "10/s" }
"#;

    /// Every directed path of the plan is the edge between its ends' vertices: the graph
    /// holds the scenario's delays and losses, grouped.
    #[test]
    fn every_path_is_its_groups_edge() {
        let p = plan(REGIONS);
        let g = graph(&p);
        let vertices = *g.vertex_of.iter().max().expect("nodes") as usize + 1;
        assert!(vertices <= 4, "2 regions × 2 classes: {vertices}");
        let mut edges: BTreeMap<(u32, u32), (u64, f64)> = BTreeMap::new();
        let mut rest = g.gml.as_str();
        while let Some(at) = rest.find("edge [") {
            let block = &rest[at..rest[at..].find(']').map_or(rest.len(), |e| at + e)];
            let field = |k: &str| -> String {
                let l = block
                    .lines()
                    .find(|l| l.trim_start().starts_with(k))
                    .expect(k);
                l.trim_start()[k.len()..]
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            };
            let latency: u64 = field("latency")
                .trim_end_matches(" ns")
                .parse()
                .expect("ns");
            edges.insert(
                (
                    field("source").parse().expect("id"),
                    field("target").parse().expect("id"),
                ),
                (latency, field("packet_loss").parse().expect("loss")),
            );
            rest = &rest[at + 6..];
        }
        assert_eq!(
            edges.len(),
            vertices * vertices,
            "an edge between every two"
        );
        for (from, to, path) in p.directed_paths() {
            let e = edges[&(g.vertex_of[from as usize], g.vertex_of[to as usize])];
            assert_eq!(e, (path.delay_ns, path.loss), "path {from} -> {to}");
        }
        // A datacenter node in region b sends with 40 + 3 ms to region a.
        let dc_b = (0..10)
            .find(|&i| {
                p.nodes[i].class.as_deref() == Some("dc")
                    && p.nodes[i].region.as_deref() == Some("b")
            })
            .expect("a dc node in b");
        assert_eq!(p.path(dc_b as u32, 0).delay_ns, 43_000_000);
        assert!(g.not_modelled.iter().any(|n| n.starts_with("jitter")));
        assert!(g.gml.contains("host_bandwidth_up \"1000000000 bit\""));
        assert!(g.gml.contains("host_bandwidth_up \"50000000 bit\""));
        assert!(g.gml.contains("packet_loss 0.0\n"), "Shadow wants a float");
    }

    #[test]
    fn the_configuration_runs_one_process_per_node() {
        let p = plan(REGIONS);
        let g = graph(&p);
        let run = ShadowRun {
            node_exe: "/opt/stack bench/stackbench".into(),
            hosts: (0..10)
                .map(|i| ShadowHost {
                    index: i,
                    args: vec![
                        "node".into(),
                        "--inputs".into(),
                        format!("/in/node-{i}.json"),
                    ],
                })
                .collect(),
            start: Duration::from_secs(1),
            stop: Duration::from_millis(20_500),
            seed: 7,
            parallelism: 2,
            data_directory: "/out/shadow.data".into(),
        };
        let y = config(&g, &run);
        assert!(y.contains("stop_time: 20500 ms"));
        assert_eq!(
            y.matches("- path: \"/opt/stack bench/stackbench\"").count(),
            10
        );
        assert!(y.contains("  node9:\n    network_node_id: "));
        assert!(y.contains("ip_addr: 10.0.0.10\n"));
        assert!(y.contains("args: [\"node\", \"--inputs\", \"/in/node-3.json\"]"));
        // The graph is inline, indented under its key.
        assert!(y.contains("    inline: |\n      graph [\n        directed 1\n"));
    }

    #[test]
    fn addresses_are_distinct_and_never_end_in_0_or_255() {
        let ips: std::collections::BTreeSet<Ipv4Addr> = (0..70_000).map(node_ip).collect();
        assert_eq!(ips.len(), 70_000);
        assert!(ips.iter().all(|ip| !matches!(ip.octets()[3], 0 | 255)));
        assert_eq!(node_ip(0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(node_ip(250), Ipv4Addr::new(10, 0, 1, 1));
    }
}
