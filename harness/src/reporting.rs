//! The report-side commands: `report` (regenerate or combine reports), `compare` (a run
//! against a baseline, with a verdict) and the A/A run's noise floor.

use anyhow::{Context, Result};
use stackbench_report::compare::{self, Thresholds};
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

/// Exit code of `compare` when something regressed (1 stays "the command failed").
pub const REGRESSED: u8 = 3;
/// Where `compare` looks for thresholds when none are given.
pub const DEFAULT_THRESHOLDS: &str = "results/baselines/thresholds.toml";

/// What a finished run must show for its command to exit 0 (the CI flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requirement {
    /// Nothing beyond having run: shortfalls are warnings.
    #[default]
    Nothing,
    /// Every stack ran and delivered every object it sent (`--require-delivery`). The
    /// nodes may fall behind a load the machine cannot generate (an emulated CPU's speed
    /// differs from boot to boot); that stays a warning.
    Delivery,
    /// Every stack ran and delivered every object the scenario offered, in time
    /// (`--require-complete`).
    Complete,
}

impl Requirement {
    /// From the two flags, which clap keeps from being given together.
    pub fn from_flags(complete: bool, delivery: bool) -> Self {
        match (complete, delivery) {
            (true, _) => Requirement::Complete,
            (false, true) => Requirement::Delivery,
            (false, false) => Requirement::Nothing,
        }
    }

    /// The flag that asks for this requirement, if any.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Requirement::Nothing => None,
            Requirement::Delivery => Some("--require-delivery"),
            Requirement::Complete => Some("--require-complete"),
        }
    }

    /// What in `run` falls short of this requirement; empty when it is met.
    pub fn shortfalls(self, run: &stackbench_report::LoadedRun) -> Vec<String> {
        match self {
            Requirement::Nothing => vec![],
            Requirement::Delivery => stackbench_report::undelivered(run),
            Requirement::Complete => stackbench_report::incompleteness(run),
        }
    }
}

/// Writes the report of `dirs` into `out` (the run folder itself for one run).
pub fn report(dirs: &[PathBuf], out: Option<PathBuf>) -> Result<PathBuf> {
    let out = match (out, dirs) {
        (Some(o), _) => o,
        (None, [one]) => one.clone(),
        (None, _) => {
            PathBuf::from("results/reports").join(crate::runid::utc_stamp(crate::runid::unix_now()))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    stackbench_report::write_report(dirs, &out)
        .with_context(|| format!("writing the report into {}", out.display()))
}

/// Run folders as one comma-separated string.
fn show(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn thresholds(path: Option<&Path>) -> Result<Thresholds> {
    let p = path.unwrap_or(Path::new(DEFAULT_THRESHOLDS));
    Thresholds::load(p).with_context(|| format!("reading thresholds {}", p.display()))
}

/// Two runs that no comparison can judge (one on a simulated network, one in namespaces):
/// a usage error, not a failed comparison.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Incomparable(String);

/// Compares `run` with `baseline`. On the same machine (by their environment
/// fingerprints, or when `same_machine` forces it) absolute figures are judged; on different
/// machines only each stack's ratio to the reference stack measured in the same run, and the
/// verdict says so at the top.
pub fn compare_runs(
    baseline: &[PathBuf],
    run: &[PathBuf],
    th: &Thresholds,
    same_machine: bool,
) -> Result<(Vec<compare::Comparison>, String)> {
    let b = stackbench_report::load_pooled(baseline)
        .with_context(|| format!("reading baseline {}", show(baseline)))?;
    let r = stackbench_report::load_pooled(run)
        .with_context(|| format!("reading run {}", show(run)))?;
    let engines = compare::engines(&b, &r);
    if engines == compare::Engines::Mixed {
        let simulated = |x: &stackbench_report::LoadedRun| {
            x.manifest
                .simulated_network
                .as_ref()
                .map_or("in namespaces", |_| "on a simulated network")
        };
        return Err(Incomparable(format!(
            "the baseline ran {} and the run {}: their timings measure different things (a simulated network's CPU is free), so no verdict can be drawn; `stackbench report {} {}` sets them side by side",
            simulated(&b),
            simulated(&r),
            show(baseline),
            show(run)
        ))
        .into());
    }
    let fingerprint = |dirs: &[PathBuf]| dirs.first().and_then(|d| compare::Fingerprint::load(d));
    let (fb, fr) = (fingerprint(baseline), fingerprint(run));
    let differences: Vec<String> = match (&fb, &fr) {
        (Some(a), Some(b)) => a.differences(b).into_iter().map(str::to_owned).collect(),
        _ => vec!["an environment fingerprint (env.json) is missing".into()],
    };
    let machines = |fb: &Option<compare::Fingerprint>, fr: &Option<compare::Fingerprint>| {
        let d = |f: &Option<compare::Fingerprint>| {
            f.as_ref()
                .map_or("unknown".to_owned(), compare::Fingerprint::describe)
        };
        format!("baseline on {}; run on {}", d(fb), d(fr))
    };
    let (c, note) = if engines == compare::Engines::Simulated {
        (
            compare::compare_simulated(&b, &r, th),
            Some("**Simulated networks: timings are compared in absolute figures (they do not depend on the machine), CPU is not (the simulator's CPU is free).**".to_owned()),
        )
    } else if differences.is_empty() {
        (compare::compare(&b, &r, th), None)
    } else if same_machine {
        (
            compare::compare(&b, &r, th),
            Some(format!(
                "**Different machines ({}), compared in absolute figures because --same-machine was given.** {}.",
                differences.join(", "),
                machines(&fb, &fr)
            )),
        )
    } else {
        let reference = compare::reference_stack(&r).unwrap_or_default();
        let c = compare::compare_within_run(&b, &r, &reference, th);
        let what = if c.is_empty() {
            format!("this run has no stack besides {reference}, so there is nothing it can judge")
        } else {
            format!("so only each stack's ratio to {reference} measured in the same run is judged")
        };
        (
            c,
            Some(format!(
                "**Different machines ({}): absolute figures are not compared, {what}.** {}. Pass --same-machine to compare absolute figures anyway.",
                differences.join(", "),
                machines(&fb, &fr)
            )),
        )
    };
    let mut md = compare::markdown(&b.manifest.run_id, &r.manifest.run_id, &c);
    if let Some(note) = note {
        eprintln!("stackbench: {}", note.replace("**", ""));
        let at = md.find("\n\n").map_or(md.len(), |i| i + 2);
        md.insert_str(at, &format!("> {note}\n\n"));
    }
    if b.manifest.scenario != r.manifest.scenario {
        let warning = format!(
            "\n**Warning:** the baseline ran scenario `{}` and this run `{}`; the comparison may be meaningless.\n",
            b.manifest.scenario, r.manifest.scenario
        );
        eprintln!("stackbench: {}", warning.trim().replace("**", ""));
        md.push_str(&warning);
    }
    Ok((c, md))
}

/// `stackbench compare`: prints the table, saves it in the run, and exits [`REGRESSED`]
/// when a metric regressed.
pub fn compare_command(
    baseline: &[PathBuf],
    run: &[PathBuf],
    th_path: Option<&Path>,
    same_machine: bool,
) -> Result<ExitCode> {
    let th = thresholds(th_path)?;
    let (c, md) = match compare_runs(baseline, run, &th, same_machine) {
        Err(e) if e.downcast_ref::<Incomparable>().is_some() => {
            eprintln!("stackbench: {e}");
            return Ok(ExitCode::from(2));
        }
        other => other?,
    };
    // Saved in the (last) run folder.
    let Some(out) = run.last() else {
        anyhow::bail!("no run folder to compare");
    };
    crate::results::write_atomic(&out.join("compare.md"), md.as_bytes())?;
    crate::results::write_atomic(
        &out.join("compare.json"),
        &serde_json::to_vec_pretty(
            &serde_json::json!({ "baseline": baseline, "thresholds": th, "comparisons": c }),
        )?,
    )?;
    println!("{md}");
    if compare::has_regression(&c) {
        eprintln!("stackbench: regression against {}", show(baseline));
        return Ok(ExitCode::from(REGRESSED));
    }
    Ok(ExitCode::SUCCESS)
}

/// After an A/A pair of runs: the second compared with the first is the noise floor. Saved
/// as `aa.json`/`aa.md` in the second run, whose report then shows it.
pub fn record_noise_floor(first: &Path, second: &Path, th_path: Option<&Path>) -> Result<String> {
    let th = thresholds(th_path)?;
    // An A/A pair runs back to back on one machine.
    let (c, md) = compare_runs(&[first.to_owned()], &[second.to_owned()], &th, true)?;
    let md = md.replacen(
        "## stackbench compare:",
        "## stackbench A/A (noise floor):",
        1,
    );
    crate::results::write_atomic(&second.join("aa.md"), md.as_bytes())?;
    crate::results::write_atomic(
        &second.join("aa.json"),
        &serde_json::to_vec_pretty(&serde_json::json!({ "first": first, "comparisons": c }))?,
    )?;
    report(&[second.to_owned()], None)?;
    Ok(md)
}
