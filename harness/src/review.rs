//! `stackbench review`: runs the design review's suite (every part the runs passed with
//! `--from` do not already fill), writing each run as it finishes and `review.json` after
//! every part, then writes review.md and review.html over all of them. A review stopped
//! midway resumes: a part whose folder holds a complete run is not measured again.

use crate::{
    check::HostCaps,
    cli::{load_args_for, run_until_signal},
    controller::{Faults, RunOptions},
    scenario::NetworkEngine,
};
use anyhow::{Context, Result};
use serde::Serialize;
use stackbench_core::schema::RunStatus;
use stackbench_report::review::Role;
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

/// Where a part of the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Namespaces,
    /// Shadow's simulated network (skipped, with the reason, where Shadow is missing).
    Shadow,
    /// A VM whose kernel has WireGuard (skipped, with the reason, where it cannot boot).
    Vm,
}

/// One part of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    /// The part of the review it fills; its scenario is the role's (scenarios/<name>.toml).
    pub role: Role,
    pub engine: Engine,
    /// Repetitions in the full review (error bars need two).
    pub repetitions: u32,
    /// Stacks instead of the scenario's, where all of them would take too long.
    pub stacks: Option<&'static [&'static str]>,
    /// In `--quick`: its repetitions and stacks, or not at all.
    pub quick: Option<(u32, Option<&'static [&'static str]>)>,
}

/// The stacks `--quick` measures: QUIC+TLS, and QUIC with and without TLS over the
/// in-process and the TUN WireGuard.
const QUICK_STACKS: &[&str] = &[
    "quic-tls",
    "quic-tls+wg-inproc",
    "quic-null+wg-inproc",
    "quic-null+wg-boringtun",
];

/// The stacks of the full review's WAN, loss and congestion parts: QUIC+TLS, TLS inside and
/// null crypto over the in-process WireGuard, null crypto over a TUN WireGuard and over the
/// kernel's. The LAN and churn parts measure every stack, and the VM part kernel WireGuard
/// against wireguard-go; five here (four in the 64-node networks) keep the full review under
/// 45 minutes on two cores.
const PATH_STACKS: &[&str] = &[
    "quic-tls",
    "quic-tls+wg-inproc",
    "quic-null+wg-inproc",
    "quic-null+wg-boringtun",
    "quic-null+wg-kernel",
];

/// The stacks of the 64-node networks: QUIC+TLS against QUIC with and without TLS over the
/// in-process WireGuard and null crypto over the TUN one.
const NETWORK_STACKS: &[&str] = &[
    "quic-tls",
    "quic-tls+wg-inproc",
    "quic-null+wg-inproc",
    "quic-null+wg-boringtun",
];

/// The suite, in [`Role::SUITE`]'s order.
pub const SUITE: [Part; 13] = [
    Part {
        role: Role::Lan,
        engine: Engine::Namespaces,
        repetitions: 2,
        stacks: None,
        quick: Some((2, Some(QUICK_STACKS))),
    },
    Part {
        role: Role::WanContinental,
        engine: Engine::Namespaces,
        repetitions: 2,
        stacks: Some(PATH_STACKS),
        quick: Some((2, Some(&["quic-tls", "quic-null+wg-inproc"]))),
    },
    Part {
        role: Role::WanIntercontinental,
        engine: Engine::Namespaces,
        repetitions: 2,
        stacks: Some(PATH_STACKS),
        quick: None,
    },
    Part {
        role: Role::Lossy,
        engine: Engine::Namespaces,
        repetitions: 2,
        stacks: Some(PATH_STACKS),
        quick: None,
    },
    Part {
        role: Role::Congested,
        engine: Engine::Namespaces,
        repetitions: 2,
        stacks: Some(PATH_STACKS),
        quick: None,
    },
    Part {
        role: Role::Gossip64,
        engine: Engine::Namespaces,
        repetitions: 1,
        stacks: Some(NETWORK_STACKS),
        quick: None,
    },
    Part {
        role: Role::Regions64,
        engine: Engine::Namespaces,
        repetitions: 1,
        stacks: Some(NETWORK_STACKS),
        quick: None,
    },
    Part {
        role: Role::Gossip1000,
        engine: Engine::Shadow,
        repetitions: 1,
        // About 15 minutes a stack on 2 cores; others' runs join with --from.
        stacks: Some(&["quic-tls"]),
        quick: None,
    },
    Part {
        role: Role::Churn,
        engine: Engine::Namespaces,
        repetitions: 1,
        stacks: None,
        quick: None,
    },
    Part {
        role: Role::Crash,
        engine: Engine::Namespaces,
        repetitions: 1,
        stacks: None,
        quick: None,
    },
    Part {
        role: Role::Upgrade,
        engine: Engine::Namespaces,
        repetitions: 1,
        stacks: None,
        quick: None,
    },
    Part {
        role: Role::Bulk,
        engine: Engine::Namespaces,
        repetitions: 2,
        stacks: None,
        quick: None,
    },
    Part {
        role: Role::KernelVm,
        engine: Engine::Vm,
        repetitions: 1,
        stacks: None,
        quick: None,
    },
];

pub struct ReviewOptions {
    /// The review's folder: runs/<scenario>/ for each part, review.json, review.md/.html.
    pub out: PathBuf,
    /// Finished runs that fill parts of the suite.
    pub from: Vec<PathBuf>,
    pub quick: bool,
    /// Measure nothing: write the review over `from` (and earlier parts in `out`) only.
    pub no_run: bool,
    pub scenarios_dir: PathBuf,
    pub node_exe: PathBuf,
    pub progress: bool,
    pub verbose: bool,
}

/// What became of a part, as review.json records it.
#[derive(Debug, Clone, Serialize)]
pub struct PartOutcome {
    pub scenario: String,
    pub engine: Engine,
    /// "measured", "resumed" (a complete run from before), "given" (--from), "skipped"
    /// (not in --quick) or "failed".
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub wall_seconds: f64,
}

/// The newest complete run under `dir`, if any.
fn complete_run(dir: &Path) -> Option<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            stackbench_report::load_run(p).is_ok_and(|r| r.manifest.status == RunStatus::Complete)
        })
        .collect();
    runs.sort();
    runs.pop()
}

/// How many of `stacks` the part can run: on the namespaces, those this host has what they
/// need for (the others are recorded as unavailable in no time); elsewhere all of them.
fn runnable(part: &Part, stacks: &[String], host: Option<&HostCaps>) -> usize {
    let runs = |name: &String| match (part.engine, host) {
        (Engine::Namespaces, Some(host)) => crate::stack::by_name(name)
            .is_some_and(|s| s.availability(host) == crate::stack::Availability::Available),
        _ => true,
    };
    stacks.iter().filter(|s| runs(s)).count()
}

/// Roughly how long a part takes here, s, with `stacks` runnable: each stack and repetition's
/// warm-up, measured time and drain, plus setup that grows with the nodes; on Shadow about 15
/// minutes a stack. For the progress line only.
fn estimate_s(part: &Part, scenario: &crate::scenario::Scenario, stacks: usize) -> f64 {
    if part.engine == Engine::Shadow {
        return 900.0 * stacks as f64;
    }
    let per = scenario.warmup.get_ref().0.as_secs_f64()
        + scenario.duration.get_ref().0.as_secs_f64()
        + scenario.drain.0.as_secs_f64()
        + 3.0
        + 0.3 * scenario.node_count() as f64;
    per * stacks as f64 * *scenario.repetitions.get_ref() as f64
        + if part.engine == Engine::Vm { 20.0 } else { 0.0 }
}

fn write_status(out: &Path, outcomes: &[PartOutcome]) -> Result<()> {
    let path = out.join("review.json");
    stackbench_report::write_atomic(&path, &serde_json::to_vec_pretty(outcomes)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs one part into `dir`; its run folder, or why not, or `None` on a signal.
fn measure(
    part: &Part,
    scenario: &crate::scenario::Scenario,
    stacks: Option<Vec<String>>,
    dir: &Path,
    opts: &ReviewOptions,
    progress_context: String,
) -> Result<Option<std::result::Result<PathBuf, String>>> {
    let file = opts
        .scenarios_dir
        .join(format!("{}.toml", part.role.scenario()));
    match part.engine {
        Engine::Namespaces => {
            let run_opts = RunOptions {
                out: dir.to_owned(),
                exact_dir: false,
                stacks,
                unchecked_links: false,
                node_exe: opts.node_exe.clone(),
                progress: opts.progress,
                progress_context,
                verbose: opts.verbose,
                faults: Faults::default(),
            };
            Ok(run_until_signal(scenario, &run_opts)?.map(|o| Ok(o.dir)))
        }
        Engine::Shadow => {
            if let Err(why) = crate::shadow::installed() {
                return Ok(Some(Err(why)));
            }
            let shadow_opts = crate::shadow::ShadowOptions {
                out: dir.to_owned(),
                stacks,
                node_exe: opts.node_exe.clone(),
                progress: opts.progress,
                keep_data: false,
            };
            Ok(crate::shadow::run(scenario, &shadow_opts)?.map(Ok))
        }
        Engine::Vm => {
            let code = crate::vm::run(crate::vm::VmOptions {
                scenario: file,
                stacks,
                out: dir.to_owned(),
                repetitions: Some(*scenario.repetitions.get_ref()),
                unchecked_links: false,
                accel: crate::vm::Accel::Auto,
                kernel: None,
                memory: "1G".into(),
                cpus: 2,
                require: crate::reporting::Requirement::Nothing,
            });
            Ok(Some(match (code, complete_run(dir)) {
                (Ok(_), Some(run)) => Ok(run),
                (Ok(c), None) => Err(format!("the VM run ended ({c:?}) without a complete run")),
                (Err(e), _) => Err(format!("{e:#}")),
            }))
        }
    }
}

/// What the review does with a part.
enum Action {
    /// A run passed with --from fills it.
    Given(PathBuf),
    Skip(&'static str),
    /// A complete run of an earlier review in the same folder.
    Resume(PathBuf),
    Measure {
        scenario: Box<crate::scenario::Scenario>,
        stacks: Option<Vec<String>>,
        /// How many of the stacks can run here, of how many.
        runnable: (usize, usize),
        estimate_s: f64,
    },
}

/// What to do with each part. Every scenario to be measured is loaded first, so that a
/// bad one is a usage error before anything runs.
fn plan(
    opts: &ReviewOptions,
    given: &[(PathBuf, Role)],
    host: Option<&HostCaps>,
) -> Result<Vec<Action>, String> {
    let mut actions = vec![];
    for part in &SUITE {
        if let Some((d, _)) = given.iter().find(|(_, r)| *r == part.role) {
            actions.push(Action::Given(d.clone()));
            continue;
        }
        let (reps, stacks) = match (opts.quick, part.quick) {
            (true, None) => {
                actions.push(Action::Skip("not in --quick"));
                continue;
            }
            (true, Some((r, s))) => (r, s),
            (false, _) => (part.repetitions, part.stacks),
        };
        if let Some(done) = complete_run(&opts.out.join("runs").join(part.role.scenario())) {
            actions.push(Action::Resume(done));
            continue;
        }
        if opts.no_run {
            actions.push(Action::Skip("--no-run"));
            continue;
        }
        let stacks: Option<Vec<String>> = stacks.map(|s| s.iter().map(|x| x.to_string()).collect());
        let engine = match part.engine {
            Engine::Shadow => NetworkEngine::Simulated,
            _ => NetworkEngine::Namespaces,
        };
        let file = opts
            .scenarios_dir
            .join(format!("{}.toml", part.role.scenario()));
        let scenario = load_args_for(&file, stacks.as_deref(), Some(reps), engine)?;
        let names = stacks.clone().unwrap_or_else(|| scenario.stack_names());
        let can = runnable(part, &names, host);
        actions.push(Action::Measure {
            runnable: (can, names.len()),
            estimate_s: estimate_s(part, &scenario, can),
            scenario: Box::new(scenario),
            stacks,
        });
    }
    Ok(actions)
}

/// The review: measures what is missing, then writes it. Exit 2 for a bad --from or
/// scenario (before anything runs), 130 on a signal (what finished stays, and the next
/// review in the same folder resumes from it).
pub fn run(opts: &ReviewOptions) -> Result<ExitCode> {
    let mut given: Vec<(PathBuf, Role)> = vec![];
    for d in &opts.from {
        match stackbench_report::load_run(d) {
            Ok(run) => given.push((d.clone(), Role::of(&run))),
            Err(e) => {
                eprintln!("stackbench: --from {}: {e}", d.display());
                return Ok(ExitCode::from(2));
            }
        }
    }
    // What this host can run, for the time estimate (the runs probe again for themselves).
    let host = (!opts.no_run)
        .then(|| HostCaps::probe(&format!("sbv{:05x}", rand::random::<u32>() & 0xf_ffff)));
    let actions = match plan(opts, &given, host.as_ref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stackbench: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let started = Instant::now();
    let mut left_s: f64 = actions
        .iter()
        .map(|a| match a {
            Action::Measure { estimate_s, .. } => *estimate_s,
            _ => 0.0,
        })
        .sum();
    let mut outcomes: Vec<PartOutcome> = vec![];
    let mut runs: Vec<PathBuf> = opts.from.clone();
    let total = SUITE.len();
    for (k, (part, action)) in SUITE.iter().zip(actions).enumerate() {
        let t0 = Instant::now();
        let outcome = |status: &str, run: Option<PathBuf>, reason: Option<String>| PartOutcome {
            scenario: part.role.scenario().into(),
            engine: part.engine,
            status: status.into(),
            run,
            reason,
            wall_seconds: t0.elapsed().as_secs_f64(),
        };
        let (scenario, stacks, (can, of), estimate) = match action {
            Action::Given(d) => {
                outcomes.push(outcome("given", Some(d), None));
                continue;
            }
            Action::Skip(why) => {
                outcomes.push(outcome("skipped", None, Some(why.into())));
                continue;
            }
            Action::Resume(done) => {
                runs.push(done.clone());
                outcomes.push(outcome("resumed", Some(done), None));
                continue;
            }
            Action::Measure {
                scenario,
                stacks,
                runnable,
                estimate_s,
            } => (scenario, stacks, runnable, estimate_s),
        };
        eprintln!(
            "stackbench review: part {}/{total}: {} ({:?}, {can} of {of} stacks runnable here × {} repetition(s)): about {:.0} s of the {:.0} s left; {:.0} s so far",
            k + 1,
            part.role.scenario(),
            part.engine,
            scenario.repetitions.get_ref(),
            estimate,
            left_s,
            started.elapsed().as_secs_f64()
        );
        let context = format!(
            "review {}/{total} {} (~{:.0} min left) · ",
            k + 1,
            part.role.scenario(),
            left_s / 60.0
        );
        left_s -= estimate;
        let dir = opts.out.join("runs").join(part.role.scenario());
        match measure(part, &scenario, stacks, &dir, opts, context) {
            Ok(None) => {
                write_status(&opts.out, &outcomes)?;
                eprintln!("stackbench review: interrupted; the parts that finished are kept, and `stackbench review` with the same --out resumes after them");
                return Ok(ExitCode::from(130));
            }
            Ok(Some(Ok(run))) => {
                runs.push(run.clone());
                outcomes.push(outcome("measured", Some(run), None));
            }
            Ok(Some(Err(why))) => {
                eprintln!(
                    "stackbench review: {}: not measured: {why}",
                    part.role.scenario()
                );
                outcomes.push(outcome("failed", None, Some(why)));
            }
            Err(e) => {
                // The part's own output said what went wrong; the review goes on without it.
                let why = format!("{e:#}");
                eprintln!("stackbench review: {}: failed: {why}", part.role.scenario());
                outcomes.push(outcome("failed", None, Some(why)));
            }
        }
        write_status(&opts.out, &outcomes)?;
    }
    write_status(&opts.out, &outcomes)?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == "failed")
        .map(|o| o.scenario.as_str())
        .collect();
    if !failed.is_empty() {
        eprintln!(
            "stackbench review: not measured: {} (reasons in {}); the same command again measures only what is missing",
            failed.join(", "),
            opts.out.join("review.json").display()
        );
    }
    if runs.is_empty() {
        anyhow::bail!(
            "nothing to review: no part was measured or given (see {})",
            opts.out.join("review.json").display()
        );
    }
    let page = stackbench_report::review::write_review(&runs, &opts.out)?;
    println!(
        "{}",
        std::fs::read_to_string(opts.out.join("review.md"))
            .unwrap_or_default()
            .split("\n<a id=")
            .next()
            .unwrap_or_default()
    );
    println!(
        "review: {} (and review.md, review.json, plots/); {:.0} s",
        page.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{runnable, Role, SUITE};
    use crate::check::HostCaps;

    #[test]
    fn the_suite_fills_every_role_of_the_review_in_its_order() {
        let parts: Vec<Role> = SUITE.iter().map(|p| p.role).collect();
        let roles: Vec<Role> = Role::SUITE.iter().map(|(r, _)| *r).collect();
        assert_eq!(parts, roles);
    }

    /// The time estimate leaves out what the host cannot run on the namespaces (kernel
    /// WireGuard here), and counts everything in the VM, whose kernel has it.
    #[test]
    fn the_estimate_counts_only_the_stacks_this_host_can_run() {
        let mut host = HostCaps::none_for_tests();
        host.netns = Ok("test".into());
        let stacks: Vec<String> = ["quic-tls", "quic-null+wg-kernel"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let lan = &SUITE[0];
        let vm = SUITE.last().expect("the suite is not empty");
        assert_eq!(runnable(lan, &stacks, Some(&host)), 1);
        assert_eq!(runnable(vm, &stacks, Some(&host)), 2);
        assert_eq!(
            runnable(lan, &stacks, None),
            2,
            "unprobed: every stack counts"
        );
    }
}
