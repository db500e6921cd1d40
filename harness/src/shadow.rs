//! `stackbench shadow`: a scenario on Shadow's simulated network, every node the real node
//! binary (its inputs from a file, no controller), gathered into an ordinary results folder
//! that `report`, `compare` and `review` read. The folder says prominently that the network
//! was simulated and that Shadow models the CPU as infinitely fast: its timings show
//! protocol and network effects, not CPU cost.

use crate::{
    aggregate::{self, RepetitionContext},
    check::{Capability, HostCaps},
    results::{Environment, RunWriter},
    scenario::Scenario,
    standalone,
    workload::WorkloadPlan,
};
use anyhow::{anyhow, bail, Context, Result};
use stackbench_core::{
    control::NodeReport,
    link::plan::LinkPlan,
    schema::{RunStatus, StackOutcome, StackStatus},
    shadow,
};
use std::{
    net::{SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

/// Stacks that run on plain UDP sockets, which is all Shadow offers: those whose nodes
/// need nothing prepared outside their process.
pub const SHADOW_STACKS: [&str; 8] = standalone::STANDALONE_STACKS;
/// The port every node's QUIC endpoint listens on.
const PORT: u16 = 9000;
/// When the node processes start, in simulated time.
const PROCESS_START: Duration = Duration::from_secs(1);
/// From the processes' start to the workload's: time to connect over the slowest path.
const CONNECT_ALLOWANCE: Duration = Duration::from_secs(4);
/// After the drain: time for every node to write its report and exit.
const REPORT_ALLOWANCE: Duration = Duration::from_secs(5);
/// How to install Shadow, for every message that finds it missing.
pub const INSTALL: &str =
    "scripts/setup-shadow.sh (builds Shadow 3.3.0 from its sources; about 16 minutes on 2 cores)";

/// The Shadow binary: `$SHADOW_BIN`, else `shadow` on the PATH.
pub fn binary() -> PathBuf {
    std::env::var_os("SHADOW_BIN").map_or_else(|| PathBuf::from("shadow"), PathBuf::from)
}

/// Shadow's version line, or why it cannot be used and how to install it.
pub fn installed() -> Capability {
    crate::check::tool_version(&binary().to_string_lossy(), &["--version"], INSTALL)
}

/// Whether `stack` is an insecure control (null crypto).
fn insecure(stack: &str) -> bool {
    crate::stack::by_name(stack).is_some_and(|s| s.id().is_insecure())
}

/// Why `stack` cannot run under Shadow, if it cannot.
pub fn unavailable(stack: &str) -> Option<String> {
    if SHADOW_STACKS.contains(&stack) {
        return None;
    }
    Some(if stack.contains("wg-kernel") {
        "it needs kernel WireGuard, and Shadow has no netlink or namespaces".into()
    } else {
        "it needs a TUN device for its WireGuard daemon, and Shadow has none".into()
    })
}

pub struct ShadowOptions {
    /// Parent folder of the run folder.
    pub out: PathBuf,
    pub stacks: Option<Vec<String>>,
    pub node_exe: PathBuf,
    /// Shadow's own progress line on stderr.
    pub progress: bool,
    /// Keep Shadow's data folder (every host's stdout and stderr) and the nodes' inputs
    /// after a repetition that succeeded; a failed one keeps them always. The inputs hold
    /// every node's private key and the whole peer list (about 260 KB a node at 1 000
    /// nodes), so a results folder does not keep them by default.
    pub keep_data: bool,
}

/// What one simulation cost on this machine.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SimulationCost {
    pub wall_seconds: f64,
    /// Shadow and every process it ran, at their largest together (proportional set sizes,
    /// sampled every 500 ms).
    pub peak_pss_mib: f64,
    pub simulated_seconds: f64,
}

/// Runs `scenario` under Shadow; the run folder, or `None` when a signal interrupted the
/// run (its run.json then says so, and no half-finished repetition is left).
pub fn run(scenario: &Scenario, opts: &ShadowOptions) -> Result<Option<PathBuf>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let version = installed().map_err(|e| anyhow!("Shadow is not available: {e}"))?;
    let plan = WorkloadPlan::from_scenario(scenario)?;
    let links = LinkPlan::from_scenario(scenario);
    let graph = shadow::graph(&links);
    let id = crate::runid::fresh_label();
    let dir = opts.out.join(&id);
    let tools = crate::check::probe_tools();
    let env = Environment::capture(
        HostCaps::unprobed("not probed: the network is simulated (Shadow)", tools),
        String::new(),
    );
    let mut writer = RunWriter::create(dir.clone(), &id, scenario, &env)?;
    let mut note = format!(
        "{version}. The CPU is modelled as infinitely fast: timings show protocol and network effects, not CPU cost (crypto costs nothing here)"
    );
    if !graph.not_modelled.is_empty() {
        note.push_str(&format!(
            ". Not simulated: {}",
            graph.not_modelled.join("; ")
        ));
    }
    writer.mark_simulated(note)?;
    writer.write_simulation(&crate::controller::simulate(&plan, &links))?;
    let stacks = opts
        .stacks
        .clone()
        .unwrap_or_else(|| scenario.stack_names());
    let reps = *scenario.repetitions.get_ref();
    let mut failures = vec![];
    for name in &stacks {
        let reason = unavailable(name);
        writer.add_stack(StackOutcome {
            name: name.clone(),
            insecure: insecure(name),
            status: match reason {
                Some(_) => StackStatus::Unavailable,
                None => StackStatus::Available,
            },
            reason: reason.clone(),
            repetitions_done: 0,
            error: None,
            privileges: crate::stack::StackId::parse(name)
                .map(|id| id.privileges())
                .unwrap_or_default(),
        })?;
        if let Some(r) = reason {
            eprintln!("stackbench shadow: {name}: unavailable under Shadow: {r}");
            continue;
        }
        for rep in 0..reps {
            let work = dir.join(name).join(format!("shadow-{rep}"));
            let setting = Setting {
                scenario,
                plan: &plan,
                graph: &graph,
                opts,
                rt: &rt,
            };
            let result = repetition(&setting, name, rep, &work)
                .and_then(|done| {
                    let Some((reports, cost)) = done else {
                        return Ok(false);
                    };
                    eprintln!(
                        "stackbench shadow: {name} rep {}/{reps}: {:.1} simulated s in {:.1} s of wall time, peak {:.0} MiB",
                        rep + 1,
                        cost.simulated_seconds,
                        cost.wall_seconds,
                        cost.peak_pss_mib
                    );
                    let ctx = RepetitionContext {
                        stack: name,
                        insecure: insecure(name),
                        repetition: rep,
                        plan: &plan,
                        handshake_us: &[],
                        host_softirq_seconds: 0.0,
                        underlay_cpu_seconds: 0.0,
                        host_busy_seconds: 0.0,
                        host_busy_peak_fraction: 0.0,
                        controller_cpu_seconds: 0.0,
                        stack_config: serde_json::json!({
                            "underlay": "udp (simulated)",
                            "engine": "shadow",
                            "shadow": version,
                            "simulation": cost,
                        }),
                        link_emulator: None,
                        lifecycle: [None, None],
                        host_busy_samples: &[],
                        crashes: &[],
                        controller_resources: &[],
                    };
                    let (summary, hlogs) = aggregate::summarize(&ctx, &reports)?;
                    writer.write_repetition(&summary, &hlogs)?;
                    Ok(true)
                });
            match result {
                Ok(false) => {
                    // Interrupted: the writer, dropped, marks the run so.
                    let _ = std::fs::remove_dir_all(&work);
                    return Ok(None);
                }
                Ok(true) if !opts.keep_data => {
                    let _ = std::fs::remove_dir_all(work.join("shadow.data"));
                    let _ = std::fs::remove_dir_all(work.join("inputs"));
                }
                Ok(true) => {}
                Err(e) => {
                    let msg = format!("{e:#}");
                    eprintln!("stackbench shadow: {name} failed: {msg}");
                    writer.stack_failed(name, msg.clone())?;
                    failures.push(format!("{name}: {msg}"));
                    break;
                }
            }
        }
    }
    let error = (!failures.is_empty()).then(|| failures.join("; "));
    let status = match error {
        Some(_) => RunStatus::Failed,
        None => RunStatus::Complete,
    };
    writer.finish(status, error)?;
    Ok(Some(dir))
}

/// What every repetition of a run shares.
struct Setting<'a> {
    scenario: &'a Scenario,
    plan: &'a WorkloadPlan,
    graph: &'a shadow::ShadowGraph,
    opts: &'a ShadowOptions,
    rt: &'a tokio::runtime::Runtime,
}

/// One simulation of `stack`: inputs and configuration written into `work`, Shadow run, and
/// every node's report read back; `None` when a signal interrupted it.
fn repetition(
    set: &Setting<'_>,
    stack: &str,
    rep: u32,
    work: &Path,
) -> Result<Option<(Vec<NodeReport>, SimulationCost)>> {
    let Setting {
        scenario,
        plan,
        graph,
        opts,
        rt,
    } = *set;
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let n = scenario.node_count();
    let addresses: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::V4(SocketAddrV4::new(shadow::node_ip(i), PORT)))
        .collect();
    let start = PROCESS_START + CONNECT_ALLOWANCE;
    let start_unix_ns = shadow::SIMULATION_EPOCH_UNIX_NS + start.as_nanos() as u64;
    let inputs = work.join("inputs");
    let results = work.join("reports");
    let files =
        standalone::write_inputs_at(scenario, stack, &addresses, start_unix_ns, true, &inputs)
            .map_err(|e| match e {
                standalone::InputsError::Usage(u) => anyhow!(u),
                standalone::InputsError::Failed(f) => f,
            })?;
    let exe = std::fs::canonicalize(&opts.node_exe)
        .with_context(|| format!("finding the node binary {}", opts.node_exe.display()))?;
    let abs = |p: &Path| -> Result<String> {
        Ok(std::fs::canonicalize(p)
            .with_context(|| format!("resolving {}", p.display()))?
            .to_string_lossy()
            .into_owned())
    };
    std::fs::create_dir_all(&results)?;
    let results_abs = abs(&results)?;
    let hosts = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(shadow::ShadowHost {
                index: i as u32,
                args: vec![
                    "node".into(),
                    "--inputs".into(),
                    abs(f)?,
                    "--results".into(),
                    results_abs.clone(),
                ],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let stop = start + plan.send_end() + plan.drain + REPORT_ALLOWANCE;
    let config = shadow::config(
        graph,
        &shadow::ShadowRun {
            node_exe: exe.to_string_lossy().into_owned(),
            hosts,
            start: PROCESS_START,
            stop,
            seed: scenario.seed.wrapping_add(rep as u64),
            parallelism: std::thread::available_parallelism().map_or(1, |p| p.get()),
            data_directory: format!("{}/shadow.data", abs(work)?),
        },
    );
    let config_path = work.join("shadow.yaml");
    crate::results::write_atomic(&config_path, config.as_bytes())?;
    let Some(cost) = rt.block_on(simulate(&config_path, work, stop, opts.progress))? else {
        return Ok(None);
    };
    let mut reports = vec![];
    for i in 0..n {
        let path = results.join(crate::node::standalone_report_file(i));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "node {i} wrote no report ({}); its output is in {}",
                path.display(),
                work.join("shadow.data/hosts")
                    .join(format!("node{i}"))
                    .display()
            )
        })?;
        reports.push(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    Ok(Some((reports, cost)))
}

/// Runs Shadow on `config` in `work` (its log in `shadow.log`), sampling its memory; fails
/// with the log's last lines when Shadow does. `None` when a signal interrupted it: Shadow,
/// in a process group of its own, was stopped and waited for.
async fn simulate(
    config: &Path,
    work: &Path,
    stop: Duration,
    progress: bool,
) -> Result<Option<SimulationCost>> {
    use tokio::signal::unix::{signal, SignalKind};
    let log_path = work.join("shadow.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary())
        .arg("--progress")
        .arg(if progress { "true" } else { "false" })
        .arg(config)
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(if progress {
            Stdio::inherit()
        } else {
            log.into()
        })
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary().display()))?;
    let pid = child.id().context("Shadow's pid")?;
    let (mut int, mut term, mut hup) = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::hangup())?,
    );
    let mut sample = tokio::time::interval(Duration::from_millis(500));
    let mut peak_kib = 0u64;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s?,
            _ = sample.tick() => peak_kib = peak_kib.max(tree_pss_kib(pid)),
            _ = int.recv() => return stop_shadow(pid, &mut child).await.map(|()| None),
            _ = term.recv() => return stop_shadow(pid, &mut child).await.map(|()| None),
            _ = hup.recv() => return stop_shadow(pid, &mut child).await.map(|()| None),
        }
    };
    let cost = SimulationCost {
        wall_seconds: started.elapsed().as_secs_f64(),
        peak_pss_mib: peak_kib as f64 / 1024.0,
        simulated_seconds: stop.as_secs_f64(),
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        // Shadow's summary lines start with "** "; without them, the log's end.
        let summary: Vec<&str> = text.lines().filter(|l| l.starts_with("** ")).collect();
        let shown = match summary.is_empty() {
            false => summary,
            true => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(15)..].to_vec()
            }
        };
        bail!(
            "Shadow {status} (its log: {}):\n{}",
            log_path.display(),
            shown.join("\n")
        );
    }
    Ok(Some(cost))
}

/// Asks Shadow's process group to stop (Shadow ends the processes it runs), and kills it
/// after 10 s if it has not.
async fn stop_shadow(pid: u32, child: &mut tokio::process::Child) -> Result<()> {
    // SAFETY: kill(2) on the process group of a child this process spawned and has not
    // reaped (its pid is its group's id).
    unsafe { libc::kill(-(pid as i32), libc::SIGTERM) };
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        // SAFETY: as above.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        child.wait().await?;
    }
    Ok(())
}

/// Memory of `root` and all its descendants (proportional set sizes), in KiB.
fn tree_pss_kib(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut parent = std::collections::HashMap::new();
    let mut pids = vec![];
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        parent.insert(pid, field("PPid:").unwrap_or(0) as u32);
        pids.push(pid);
    }
    pids.into_iter()
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..64 {
                if p == root {
                    return true;
                }
                match parent.get(&p) {
                    Some(&q) if q != 0 && q != p => p = q,
                    _ => return false,
                }
            }
            false
        })
        .map(proportional_kib)
        .sum()
}

/// A process's proportional set size: its private pages and its share of pages it shares
/// (the node binary's code is mapped by every node once). RSS would count those once per
/// process.
fn proportional_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
