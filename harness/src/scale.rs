//! `stackbench scale`: one scenario at several network sizes, per stack, to find the largest
//! network this machine carries without saturating its CPU. Each size is an ordinary run
//! folder inside the sweep's folder; `scale.json` is rewritten after every run, so an
//! interrupted sweep keeps what it measured.

use crate::{controller::RunOptions, results::write_atomic, scenario::Scenario, stack};
use anyhow::{Context, Result};
use stackbench_core::schema::{ScalePoint, ScaleSweep, SCHEMA_VERSION};
use stackbench_report::{scale, CPU_SATURATED};
use std::{path::Path, process::ExitCode};

/// The scenario at each of `nodes`, validated as if written so; the error says which size
/// broke what (an origin or region list that names more nodes, say).
pub fn sizes(
    path: &Path,
    nodes: &[u32],
    repetitions: Option<u32>,
) -> Result<Vec<(u32, Scenario)>, String> {
    if nodes.is_empty() || nodes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "--nodes must list node counts smallest first, without repeats, got {nodes:?}"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let known = stack::names();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    // Only the node count's own characters change, so every error still points at the
    // right line and column of the file.
    let at = Scenario::parse(path, &text, &known)
        .map_err(|e| e.to_string())?
        .topology
        .nodes
        .span();
    nodes
        .iter()
        .map(|&n| {
            let mut resized = text.clone();
            resized.replace_range(at.clone(), &n.to_string());
            let mut s = Scenario::parse(path, &resized, &known)
                .map_err(|e| format!("at {n} nodes: {e}"))?;
            if let Some(r) = repetitions {
                s.repetitions = toml::Spanned::new(0..0, r);
            }
            Ok((n, s))
        })
        .collect()
}

/// Runs every stack at every size until it saturates; prints and writes the verdict.
pub fn sweep(path: &Path, sizes: &[(u32, Scenario)], opts: &RunOptions) -> Result<ExitCode> {
    let Some((_, first)) = sizes.first() else {
        return Ok(ExitCode::from(2));
    };
    let dir = opts
        .out
        .join(format!("scale-{}-{}", first.name, crate::runid::unix_now()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stacks = opts.stacks.clone().unwrap_or_else(|| first.stack_names());
    let mut sweep = ScaleSweep {
        schema: SCHEMA_VERSION,
        scenario: path.display().to_string(),
        saturated_at: CPU_SATURATED,
        points: vec![],
    };
    for stack in &stacks {
        for (n, scenario) in sizes {
            eprintln!("stackbench scale: {stack} at {n} nodes");
            let run_opts = RunOptions {
                out: dir.clone(),
                stacks: Some(vec![stack.clone()]),
                ..opts.clone()
            };
            let Some(outcome) = crate::cli::run_until_signal(scenario, &run_opts)? else {
                eprintln!(
                    "stackbench: interrupted; {} keeps what was measured",
                    dir.display()
                );
                return Ok(ExitCode::from(130));
            };
            let point = point_of(stack, *n, &outcome.dir, &dir)?;
            let go_on = scale::unsaturated(&point, CPU_SATURATED);
            sweep.points.push(point);
            write_atomic(&dir.join("scale.json"), &serde_json::to_vec_pretty(&sweep)?)?;
            if !go_on {
                break;
            }
        }
    }
    let md = scale::markdown(&sweep);
    write_atomic(&dir.join("scale.md"), md.as_bytes())?;
    println!("{md}");
    println!("sweep: {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn point_of(stack: &str, nodes: u32, run_dir: &Path, sweep_dir: &Path) -> Result<ScalePoint> {
    let run = stackbench_report::load_run(run_dir)?;
    let reps: Vec<_> = run
        .repetitions
        .iter()
        .filter(|r| r.stack == stack)
        .collect();
    let error = run
        .manifest
        .stacks
        .iter()
        .find(|s| s.name == stack)
        .and_then(|s| s.error.clone().or(s.reason.clone()));
    Ok(ScalePoint {
        stack: stack.to_owned(),
        nodes,
        run: run_dir
            .strip_prefix(sweep_dir)
            .unwrap_or(run_dir)
            .display()
            .to_string(),
        cpu_busy_fraction: (!reps.is_empty())
            .then(|| reps.iter().map(|r| r.cpu_busy_fraction).sum::<f64>() / reps.len() as f64),
        cpu_busy_peak_fraction: reps
            .iter()
            .map(|r| r.cpu_busy_peak_fraction)
            .reduce(f64::max),
        complete: !reps.is_empty()
            && error.is_none()
            && stackbench_report::incompleteness(&run).is_empty(),
        reach_all_p50_us: reps
            .iter()
            .flat_map(|r| &r.classes)
            .find(|c| !c.bulk)
            .and_then(|c| c.reach_us.get("100%"))
            .filter(|p| p.count > 0)
            .map(|p| p.p50),
        max_rss_bytes: reps
            .iter()
            .flat_map(|r| &r.nodes)
            .map(|n| n.max_rss_bytes)
            .max()
            .unwrap_or(0),
        error,
    })
}
