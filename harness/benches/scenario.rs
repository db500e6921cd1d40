//! Scenarios end to end, as `cargo bench` runs them: real processes in real network
//! namespaces, results and summary written to `results/runs/`. Micro-benchmarks
//! (`benches/costs.rs`) explain the costs; these show them in the workload.
//!
//! - `scenario/quick`: the quick scenario over its default stacks.
//! - `scenario/inproc-ceiling`: bulk goodput of each in-process WireGuard stack beside its
//!   QUIC control; the summary states each stack's share of its crypto-bound ceiling.
//!
//! Runs the release `stackbench` binary, which needs root or unprivileged user namespaces
//! (it re-executes itself rootless). A name filter that matches none of them skips them,
//! so `cargo bench -- wg/` runs only micro-benchmarks.

use std::process::{Command, ExitCode};

const BENCHES: [(&str, &str); 2] = [
    ("scenario/quick", "scenarios/quick.toml"),
    ("scenario/inproc-ceiling", "scenarios/inproc-ceiling.toml"),
];

fn main() -> ExitCode {
    // cargo passes `--bench`; anything else not starting with '-' is a name filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let chosen = BENCHES.iter().filter(|(name, _)| {
        filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
    });
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in chosen {
            println!("{name}: benchmark");
        }
        return ExitCode::SUCCESS;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (name, file) in chosen {
        println!("{name}: stackbench run {file}");
        let status = Command::new(env!("CARGO_BIN_EXE_stackbench"))
            .args(["run", file])
            .current_dir(root)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("{name}: stackbench exited with {s}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{name}: cannot start stackbench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
