//! `stackbench shadow`: a scenario on Shadow's simulated network. The runs need Shadow
//! (scripts/setup-shadow.sh); where it is missing they say so and are skipped. What needs
//! no Shadow (the refusal when it is missing, the node limits) runs everywhere.

use std::{path::PathBuf, process::Command};

fn stackbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stackbench"))
}

/// Whether Shadow runs here; says so when it does not.
fn shadow_present(test: &str) -> bool {
    let bin = std::env::var_os("SHADOW_BIN").unwrap_or_else(|| "shadow".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("{test}: SKIPPED: Shadow is not installed (scripts/setup-shadow.sh installs it)");
    }
    ok
}

/// Eight nodes in two regions 30 ms apart, one a 1 Gbit datacenter class; votes from
/// everyone, a block from node 0.
const WAN: &str = r#"
name = "shadow-wan"
seed = 8
duration = "3s"
warmup = "500ms"
drain = "2s"
stacks = ["quic-tls", "quic-null", "sctp", "quic-tls+wg-inproc", "sctp+wg-inproc", "quic-null+wg-boringtun"]

[topology]
nodes = 8
fanout = "gossip"
degree = 3
uplink = "50Mbit"

[regions]
names = ["near", "far"]
delay = [["2ms", "30ms"], ["30ms", "2ms"]]

[[class]]
name = "block"
priority = 20
size = "16KiB"
arrival = { process = "constant", rate = "2/s" }
origins = [0]

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "4/s" }
"#;

fn summary(run: &std::path::Path, stack: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join(stack).join("0/summary.json")).expect("a summary");
    serde_json::from_str(&text).expect("it parses")
}

#[test]
fn a_scenario_runs_on_shadows_network_with_its_delays() {
    if !shadow_present("a_scenario_runs_on_shadows_network_with_its_delays") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("wan.toml");
    std::fs::write(&scenario, WAN).expect("writes");
    let out = stackbench()
        .arg("shadow")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path())
        .arg("--no-progress")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("*** SIMULATED NETWORK: Shadow"), "{stdout}");
    let run: PathBuf = std::fs::read_dir(dir.path())
        .expect("the out folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.join("run.json").exists())
        .expect("a run folder");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).expect("run.json"))
            .expect("parses");
    let note = manifest["simulated_network"]
        .as_str()
        .expect("marked simulated");
    assert!(note.contains("infinitely fast"), "{note}");
    let tun = manifest["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .find(|s| s["name"] == "quic-null+wg-boringtun")
        .expect("the TUN stack is listed");
    assert_eq!(tun["status"], "unavailable");
    assert!(
        tun["reason"].as_str().expect("a reason").contains("TUN"),
        "{tun}"
    );
    // QUIC and SCTP on UDP, and through WireGuard inside the node: all on plain sockets.
    for stack in [
        "quic-tls",
        "quic-null",
        "sctp",
        "quic-tls+wg-inproc",
        "sctp+wg-inproc",
    ] {
        let s = summary(&run, stack);
        assert!(
            s["node_errors"].as_array().expect("errors").is_empty(),
            "{stack}: {s}"
        );
        for class in s["classes"].as_array().expect("classes") {
            let (sent, delivered) = (&class["sent"], &class["delivered"]);
            assert_eq!(
                sent, delivered,
                "{stack} {}: every object arrives",
                class["name"]
            );
            assert!(sent.as_u64().expect("a count") > 0);
        }
        // Half the receivers are a 30 ms region away: a vote cannot reach them all sooner,
        // and with CPU free it reaches them little later than the path.
        let vote = &s["classes"][1];
        let p50_us = vote["reach_us"]["100%"]["p50"]
            .as_f64()
            .expect("reach 100% p50");
        assert!(
            (30_000.0..80_000.0).contains(&p50_us),
            "{stack}: vote reach 100% p50 {p50_us} µs"
        );
    }
    let md = std::fs::read_to_string(run.join("summary.md")).expect("summary.md");
    assert!(md.contains("SIMULATED NETWORK"), "{md}");
    assert!(
        !run.join("quic-tls/shadow-0/shadow.data").exists(),
        "Shadow's data is removed after success"
    );
    assert!(
        !run.join("quic-tls/shadow-0/inputs").exists(),
        "the nodes' inputs, with their keys, are removed after success"
    );
    assert!(run
        .join("quic-tls/shadow-0/reports/node-0.report.json")
        .exists());
    // A simulated run compares with a simulated run: timings, never the (free) CPU.
    let out = stackbench()
        // Where the default thresholds are.
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .arg("compare")
        .args([&run, &run])
        .output()
        .expect("compare runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("Simulated networks"), "{table}");
    assert!(table.contains("| quic-tls | vote | p50 |"), "{table}");
    assert!(!table.contains("CPU per MB"), "{table}");
}

#[test]
fn without_shadow_the_command_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("wan.toml");
    std::fs::write(&scenario, WAN).expect("writes");
    let out = stackbench()
        .env("SHADOW_BIN", dir.path().join("no-shadow-here"))
        .arg("shadow")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("runs"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scripts/setup-shadow.sh"), "{stderr}");
    assert!(
        !dir.path().join("runs").exists(),
        "nothing is written: {stderr}"
    );
}

/// 1 000 nodes are a usage error in namespaces, pointing at the line and at `shadow`; the
/// same file validates as a simulated network.
#[test]
fn a_network_too_large_for_namespaces_points_at_shadow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("big.toml");
    std::fs::write(&scenario, WAN.replace("nodes = 8", "nodes = 1000")).expect("writes");
    let out = stackbench()
        .arg("run")
        .arg(&scenario)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("big.toml:10:9"), "{stderr}");
    assert!(stderr.contains("stackbench shadow"), "{stderr}");
    let out = stackbench()
        .arg("validate")
        .arg(&scenario)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("simulated network only"), "{stdout}");
}
