//! Nodes without namespaces or a controller beside them: started from inputs files on
//! loopback addresses, they connect, run the workload and write their reports; and a node
//! reaches a controller over TCP.

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

fn stackbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stackbench"))
}

const SCENARIO: &str = r#"
name = "standalone"
seed = 5
duration = "2s"
warmup = "500ms"
drain = "1s"
stacks = ["quic-null"]

[topology]
nodes = 4
fanout = "gossip"
degree = 2

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "10/s" }
"#;

/// Loopback addresses with ports free right now.
fn free_addresses(n: usize) -> Vec<String> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("bound").to_string())
        .collect()
}

#[test]
fn nodes_run_from_inputs_files_without_a_controller() {
    run_standalone("quic-null");
}

/// The in-process WireGuard needs nothing outside the node either: each node's tunnel
/// listens on its own address and carries QUIC between tunnel addresses.
#[test]
fn nodes_over_in_process_wireguard_run_without_a_controller() {
    run_standalone("quic-null+wg-inproc");
}

/// usrsctp's associations ride the node's own UDP socket, so plain SCTP needs nothing
/// outside the node.
#[test]
fn sctp_nodes_run_without_a_controller() {
    run_standalone("sctp");
}

fn run_standalone(stack: &str) {
    // A node's first WireGuard handshake may reach a peer that is not listening yet; its
    // retry comes 5 s later (REKEY_TIMEOUT), and the start must leave room for it.
    let start_in = if stack.contains("+wg-") { "8s" } else { "3s" };
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("standalone.toml");
    std::fs::write(&scenario, SCENARIO).expect("writing the scenario");
    let inputs = dir.path().join("inputs");
    let results = dir.path().join("results");
    let out = stackbench()
        .arg("node-inputs")
        .arg(&scenario)
        .args(["--stack", stack, "--start-in", start_in, "--addresses"])
        .arg(free_addresses(4).join(","))
        .arg("--out")
        .arg(&inputs)
        .output()
        .expect("node-inputs runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Vec<_> = (0..4)
        .map(|i| {
            stackbench()
                .arg("node")
                .arg("--inputs")
                .arg(inputs.join(format!("node-{i}.inputs.json")))
                .arg("--results")
                .arg(&results)
                .stderr(Stdio::piped())
                .spawn()
                .expect("a node starts")
        })
        .collect();
    for (i, n) in nodes.into_iter().enumerate() {
        let out = n.wait_with_output().expect("the node ends");
        assert!(
            out.status.success(),
            "node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut received = 0;
    let mut sent = 0;
    for i in 0..4 {
        let path: PathBuf = results.join(format!("node-{i}.report.json"));
        let report: stackbench_core::control::NodeReport =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("a report"))
                .expect("the report parses");
        assert_eq!(report.index, i);
        assert!(report.errors.is_empty(), "node {i}: {:?}", report.errors);
        sent += report.classes[0].sent;
        received += report.classes[0].received;
    }
    // 4 origins × 10/s × 2 s, each meant for the 3 others, over a ring: all relayed.
    assert_eq!(sent, 4 * 20 * 3);
    assert_eq!(received, sent);
}

#[test]
fn a_node_reaches_its_controller_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("bound");
    let mut node = stackbench()
        .args(["node", "--index", "3", "--control"])
        .arg(format!("tcp:{addr}"))
        .spawn()
        .expect("a node starts");
    listener.set_nonblocking(false).expect("blocking accept");
    let (stream, _) = listener.accept().expect("the node connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut hello = String::new();
    BufReader::new(&stream)
        .read_line(&mut hello)
        .expect("the node says hello");
    let hello: serde_json::Value = serde_json::from_str(&hello).expect("one JSON message");
    assert_eq!(hello["msg"], "hello");
    assert_eq!(hello["index"], 3);
    assert!(hello["spki"].as_array().is_some_and(|k| !k.is_empty()));
    // A controller that goes away before setup lets the node leave cleanly.
    drop(stream);
    assert!(node.wait().expect("the node ends").success());
}

#[test]
fn node_inputs_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("standalone.toml");
    std::fs::write(&scenario, SCENARIO).expect("writing the scenario");
    for (args, needle) in [
        (
            vec!["--stack", "quic-null", "--addresses", "127.0.0.1:1"],
            "4 nodes, got 1",
        ),
        (
            vec![
                "--stack",
                "quic-tls+wg-boringtun",
                "--addresses",
                "127.0.0.1:1",
            ],
            "only quic-tls, quic-null, sctp, quic-tls+wg-inproc",
        ),
    ] {
        let out = stackbench()
            .arg("node-inputs")
            .arg(&scenario)
            .args(&args)
            .arg("--out")
            .arg(dir.path().join("x"))
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!dir.path().join("x").exists(), "nothing half-written");
    }
}
