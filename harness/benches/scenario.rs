//! The quick scenario end to end, as `cargo bench` runs it: real processes in real network
//! namespaces, the default stacks, results and summary written to `results/runs/`. Micro-
//! benchmarks (`benches/costs.rs`) explain the costs; this shows them in the workload.
//!
//! Runs the release `stackbench` binary, which needs root or unprivileged user namespaces
//! (it re-executes itself rootless). A name filter that does not match `scenario/quick`
//! skips it, so `cargo bench -- wg/` runs only micro-benchmarks.

use std::process::{Command, ExitCode};

const NAME: &str = "scenario/quick";

fn main() -> ExitCode {
    // cargo passes `--bench`; anything else not starting with '-' is a name filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("{NAME}: benchmark");
        return ExitCode::SUCCESS;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    println!("{NAME}: stackbench run scenarios/quick.toml");
    let status = Command::new(env!("CARGO_BIN_EXE_stackbench"))
        .args(["run", "scenarios/quick.toml"])
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("{NAME}: stackbench exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{NAME}: cannot start stackbench: {e}");
            ExitCode::FAILURE
        }
    }
}
