//! The kernel WireGuard stack either runs and delivers everything, or the run names why it
//! could not run, in its exit code, its run.json and its summary. Where the host kernel lacks
//! WireGuard (as on the development machine), `stackbench vm run` proves the stack in a VM;
//! CI does that in `.ci/run`.

mod common;

use common::{require_namespaces, serial, votes_toml};
use stackbench::stack::{by_name, Availability};
use std::process::Command;

#[test]
fn kernel_stack_delivers_everything_or_names_why_it_did_not_run() {
    let _g = serial();
    let host = require_namespaces();
    let stack = "quic-tls+wg-kernel";
    let availability = by_name(stack).expect("designed stack").availability(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("kernel.toml");
    // This test also runs inside a VM under qemu's CPU emulation, where the namespaces' own
    // latency (130-185 us measured) is too close to the self-check's default 200 us.
    let text = format!(
        "{}\n[links]\ntolerance = {{ relative = \"10%\", absolute = \"1ms\" }}\n",
        votes_toml("kernel", 3, "2s", "500ms", "1s", 50)
    );
    std::fs::write(&scenario, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_stackbench"))
        .arg("run")
        .arg(&scenario)
        .args(["--stacks", stack, "--require-complete", "--out"])
        .arg(dir.path().join("runs"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    let run_dir = std::fs::read_dir(dir.path().join("runs"))
        .expect("a run folder")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).expect("run.json"))
            .expect("JSON");
    let summary = std::fs::read_to_string(run_dir.join("summary.md")).expect("summary.md");
    match availability {
        Availability::Available => {
            assert_eq!(out.status.code(), Some(0), "{err}");
            assert_eq!(manifest["stacks"][0]["repetitions_done"], 1);
        }
        Availability::Unavailable(reason) => {
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains(&reason), "{err}");
            assert_eq!(manifest["stacks"][0]["status"], "unavailable");
            assert_eq!(manifest["stacks"][0]["reason"], reason.as_str());
            assert!(
                summary.contains(&format!("{stack}: unavailable: {reason}")),
                "{summary}"
            );
            if host.kernel_wireguard.is_err() {
                assert!(
                    reason.contains("kernel has no WireGuard support"),
                    "{reason}"
                );
            }
        }
    }
}
