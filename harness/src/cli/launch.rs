//! Loading a scenario from the command line and running it: the executable nodes start
//! from, `--stacks` and `--repetitions` applied, signals turned into a clean stop, and a
//! finished run's table and report.

use crate::{
    controller::{self, RunOptions},
    reporting::Requirement,
    scenario::{NetworkEngine, Scenario},
    stack,
};
use anyhow::{Context, Result};
use std::{path::PathBuf, process::ExitCode};

/// What nodes and in-binary devices are started from: this process's own image, reached
/// through /proc while it lives, so a binary rebuilt during a run (cargo replaces the file)
/// cannot start a restarted or recovered node from other code than the rest of the run's.
pub(crate) fn node_executable() -> Result<std::path::PathBuf> {
    let own = std::path::PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    if std::fs::metadata(&own).is_ok() {
        return Ok(own);
    }
    std::env::current_exe().context("locating the stackbench executable")
}

/// Loads a run's scenario, checks its `--stacks` and applies `--repetitions`; the error is
/// a usage error.
pub(crate) fn load_run_args(
    scenario: &std::path::Path,
    stacks: Option<&[String]>,
    repetitions: Option<u32>,
) -> Result<Scenario, String> {
    load_args_for(scenario, stacks, repetitions, NetworkEngine::Namespaces)
}

/// [`load_run_args`] for a network on `engine`.
pub(crate) fn load_args_for(
    scenario: &std::path::Path,
    stacks: Option<&[String]>,
    repetitions: Option<u32>,
    engine: NetworkEngine,
) -> Result<Scenario, String> {
    let known = stack::names();
    let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut parsed =
        Scenario::load_for(scenario, &known_refs, engine).map_err(|e| e.to_string())?;
    match repetitions {
        Some(0) => return Err("--repetitions must be at least 1".into()),
        Some(n) => parsed.repetitions = toml::Spanned::new(0..0, n),
        None => {}
    }
    let networks: Vec<&String> = parsed
        .mixes
        .iter()
        .map(|m| m.name.get_ref())
        .chain(parsed.upgrades.iter().map(|u| u.name.get_ref()))
        .collect();
    if let Some(bad) = stacks
        .into_iter()
        .flatten()
        .find(|s| !known.contains(s) && !networks.contains(s))
    {
        let mix = if networks.is_empty() {
            String::new()
        } else {
            format!(
                "; the scenario's mixes and upgrades: {}",
                networks
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(format!(
            "--stacks: unknown stack {bad:?}; known stacks: {}{mix}",
            known.join(", ")
        ));
    }
    Ok(parsed)
}

/// Runs a scenario; `None` when a signal stopped it (everything it made is gone then).
pub(crate) fn run_until_signal(
    scenario: &Scenario,
    opts: &RunOptions,
) -> Result<Option<controller::RunOutcome>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Handlers are installed here, before the run starts: `ctrl_c()` would only install
        // its own when first polled, after the run's synchronous setup had spawned nodes.
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Dropping the run future on a signal runs its guards: nodes are killed, namespaces
        // and sockets removed, and run.json marked interrupted.
        tokio::select! {
            r = controller::run(scenario, opts) => r.map(Some),
            _ = int.recv() => Ok(None),
            _ = term.recv() => Ok(None),
            _ = hup.recv() => Ok(None),
        }
    })
}

/// Runs a scenario, prints its table and writes its report; the exit code and run folder.
pub(crate) fn run_command(
    scenario: &Scenario,
    opts: &RunOptions,
    require: Requirement,
) -> Result<(ExitCode, Option<PathBuf>)> {
    match run_until_signal(scenario, opts)? {
        None => {
            eprintln!("stackbench: interrupted; the run's nodes, namespaces and sockets were removed and its run.json marked interrupted");
            Ok((ExitCode::from(130), None))
        }
        Some(outcome) => show_results(&outcome.dir, require),
    }
}

/// Prints a finished run's table and writes its report; the exit code and run folder.
pub(crate) fn show_results(
    dir: &std::path::Path,
    require: Requirement,
) -> Result<(ExitCode, Option<PathBuf>)> {
    let run = stackbench_report::load_run(dir)?;
    println!("{}", stackbench_report::summary_table(&run));
    let page = crate::reporting::report(&[dir.to_owned()], None)?;
    println!("results: {}  (report.html, summary.md, report.json/csv, plots/, summary.json and HdrHistogram logs per stack and repetition)", dir.display());
    println!("report: {}", page.display());
    let out = Some(dir.to_owned());
    if let Some(e) = &run.manifest.error {
        eprintln!("stackbench: run failed: {e}");
        return Ok((ExitCode::from(1), out));
    }
    let missing = require.shortfalls(&run);
    if let (Some(flag), false) = (require.flag(), missing.is_empty()) {
        eprintln!("stackbench: {flag}: the run falls short:");
        for m in missing {
            eprintln!("  {m}");
        }
        return Ok((ExitCode::from(1), out));
    }
    Ok((ExitCode::SUCCESS, out))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn nodes_start_from_this_process_image_not_a_path_a_rebuild_replaces() {
        let exe = super::node_executable().expect("an executable");
        assert!(exe.starts_with("/proc"), "{exe:?}");
        let (a, b) = (
            std::fs::metadata(&exe).expect("own image"),
            std::fs::metadata(std::env::current_exe().expect("current exe")).expect("file"),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "the same file");
    }
}
