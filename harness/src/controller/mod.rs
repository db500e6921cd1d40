//! The controller: builds the topology, runs every stack × repetition of a scenario through
//! its node processes, and writes results as each repetition finishes. Whatever happens —
//! success, failure, Ctrl-C, a dead node — the guards here remove every namespace, process
//! and socket the run made.

mod nodes;

pub use crate::faults::Faults;
use crate::{
    aggregate::{self, RepetitionContext},
    check::HostCaps,
    control::{NodeSetup, SlotSetup, ToController, ToNode},
    link::{self, probe::NodeAddr, LinkPlan, Mechanism},
    metrics,
    results::{Environment, RunWriter},
    runid::{self, RunId},
    scenario::Scenario,
    stack::{self, Availability, PeerInfo, PreparedUnderlay, Stack},
    topology::Topology,
    workload::{network::NetworkPlan, WorkloadPlan},
};
use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nodes::NodeSet;
use stackbench_core::schema::{RunStatus, StackOutcome, StackStatus};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// How long nodes may take to start, connect and get ready.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack beyond the scenario's own timings before a node counts as hung.
const REPORT_SLACK: Duration = Duration::from_secs(15);
/// Lead time between announcing the start and the start itself.
const START_LEAD: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent folder of run folders (e.g. `results/runs`), or the exact folder with `exact_dir`.
    pub out: PathBuf,
    pub exact_dir: bool,
    /// Overrides the scenario's stack list.
    pub stacks: Option<Vec<String>>,
    /// The stackbench binary that nodes run.
    pub node_exe: PathBuf,
    pub progress: bool,
    /// What the progress bar names before the stack and repetition: the review's part and the
    /// suite's time left. Empty for a run of its own.
    pub progress_context: String,
    pub verbose: bool,
    /// Run even when the self-check finds the links off; every output says so.
    pub unchecked_links: bool,
    pub faults: Faults,
}

impl RunOptions {
    /// What the stacks' controller side needs of the run.
    pub fn stack_context(&self) -> stack::StackContext<'_> {
        stack::StackContext {
            node_exe: &self.node_exe,
            keys: &self.faults,
            slot: 0,
            automation: stack::Automation::default(),
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub manifest: stackbench_core::schema::RunManifest,
}

/// Releases the run's markers after everything else is gone.
struct RunGuard(RunId);
impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunOutcome> {
    for prefix in runid::reap_stale(std::path::Path::new(runid::STATE_DIR)) {
        eprintln!("stackbench: removed leftovers of an earlier run that was killed before cleaning up ({prefix}-*)");
    }
    let run = RunGuard(RunId::create().context("creating the run's state under /run/stackbench")?);
    let host = HostCaps::probe(&run.0.prefix);
    // Scenario::parse drew the graph once already; this cannot fail where that did not.
    let plan = WorkloadPlan::from_scenario(scenario).context("planning the workload")?;
    let all = NetworkPlan::variants(scenario, &plan)
        .map_err(|(_, msg)| anyhow!("planning the scenario's networks: {msg}"))?;
    // `--stacks` picks networks by name: the scenario's mixes and upgrades, or any stack.
    let networks: Vec<NetworkPlan> = match &opts.stacks {
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|v| v.name == *n)
                    .cloned()
                    .unwrap_or_else(|| NetworkPlan::single(n, scenario.node_count()))
            })
            .collect(),
        None => all,
    };
    for n in networks.iter().flat_map(|n| &n.stacks) {
        if stack::by_name(n).is_none() {
            anyhow::bail!("unknown stack {n:?}; known: {}", stack::names().join(", "));
        }
    }
    if let Some(why) = host.namespaces_unavailable() {
        anyhow::bail!("{why}");
    }
    let link_plan = LinkPlan::from_scenario(scenario);
    let links = scenario.links.get_ref();
    let (mechanism, mechanism_note) = Mechanism::choose(&link_plan, links.emulator, &host)?;
    if let Some(why) = host.shaping_unavailable() {
        if link_plan
            .nodes
            .iter()
            .any(|n| n.uplink_bits_per_sec.is_some())
        {
            anyhow::bail!("the scenario limits uplink rates, but {why}");
        }
    }
    if mechanism == Mechanism::Userspace {
        if let Some(Err(why)) = host.tools.get("ethtool") {
            anyhow::bail!("the scenario's links need the userspace emulator, but {why}");
        }
    }
    let topology = Topology::up(&run.0, &link_plan, mechanism, scenario.seed, &opts.node_exe)
        .context("building the namespaces")?;
    let addrs = node_addrs(&topology);
    let link_check = check_links(
        &addrs,
        &topology,
        &link_plan,
        scenario,
        opts,
        mechanism_note,
    )?;
    if opts.progress {
        eprintln!("stackbench: measuring the machine's floor (raw UDP on the scenario's schedule, idle wake-up)");
    }
    let mut floor =
        crate::floor::measure(&addrs, &plan).context("measuring the machine's floor")?;
    let stack_names: Vec<String> = networks.iter().flat_map(|n| n.stacks.clone()).collect();
    floor.wireguard = stack::wg_costs::measure(&stack_names)
        .map_err(|e| anyhow!("measuring WireGuard's crypto cost: {e}"))?;
    let dir = if opts.exact_dir {
        opts.out.clone()
    } else {
        opts.out.join(&run.0.id)
    };
    let env = Environment::capture(host.clone(), topology.describe_qdiscs());
    let mut writer = RunWriter::create(dir, &run.0.id, scenario, &env)?;
    writer.write_links(&link_check)?;
    writer.write_floor(&floor)?;
    writer.write_simulation(&simulate(&plan, &link_plan))?;
    let reps = *scenario.repetitions.get_ref();
    let mut failures = vec![];
    for (si, network) in networks.iter().enumerate() {
        let name = network.name.clone();
        // Validated above: every name is a known stack.
        let stacks: Vec<Arc<dyn Stack>> = network
            .stacks
            .iter()
            .filter_map(|n| stack::by_name(n))
            .collect();
        let reason = stacks.iter().find_map(|s| match s.availability(&host) {
            Availability::Available => None,
            Availability::Unavailable(r) if network.is_single() => Some(r),
            Availability::Unavailable(r) => Some(format!("{}: {r}", s.id())),
        });
        writer.add_stack(StackOutcome {
            name: name.clone(),
            insecure: stacks.iter().any(|s| s.id().is_insecure()),
            status: if reason.is_some() {
                StackStatus::Unavailable
            } else {
                StackStatus::Available
            },
            reason: reason.clone(),
            repetitions_done: 0,
            error: None,
            privileges: stacks
                .iter()
                .map(|s| s.id().privileges())
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        if let Some(r) = reason {
            eprintln!("stackbench: {name}: unavailable: {r}");
            continue;
        }
        let mut net_plan = plan.clone();
        net_plan.network = network.clone();
        let result = async {
            let mut underlays = vec![];
            let faults: Vec<Faults> = network
                .stacks
                .iter()
                .map(|s| opts.faults.for_stack(s))
                .collect();
            for (slot, stack) in stacks.iter().enumerate() {
                let ctx = stack::StackContext {
                    slot: slot as u8,
                    keys: &faults[slot],
                    ..opts.stack_context()
                };
                underlays.push(
                    stack
                        .prepare(&topology, &ctx)
                        .with_context(|| format!("preparing {}", stack.id()))?,
                );
            }
            let stack_config = match &underlays[..] {
                [one] => one.describe(),
                many => serde_json::Value::Object(
                    network
                        .stacks
                        .iter()
                        .zip(many)
                        .map(|(n, u)| (n.clone(), u.describe()))
                        .collect(),
                ),
            };
            for rep in 0..reps {
                let label = format!("{}{name} rep {}/{reps}", opts.progress_context, rep + 1);
                let lifecycle = match &stacks[..] {
                    [one] => {
                        let chosen = scenario.churn.automation;
                        let mut both = [None, None];
                        for (i, automation) in [chosen, chosen.other()].into_iter().enumerate() {
                            // Only stacks with an interface of their own have two ways.
                            if i == 0 || one.id().has_interface() {
                                both[i] =
                                    lifecycle(one.as_ref(), &topology, opts, scenario, automation)
                                        .with_context(|| {
                                            format!(
                                                "{name}: timing the interface lifecycle through {}",
                                                automation.name()
                                            )
                                        })?;
                            }
                        }
                        both
                    }
                    _ => [None, None],
                };
                let sock = run.0.socket_dir().join(format!("s{si}r{rep}.sock"));
                let data =
                    repetition(&topology, &underlays, &net_plan, &sock, opts, &label).await?;
                let ctx = RepetitionContext {
                    stack: &name,
                    insecure: stacks.iter().any(|s| s.id().is_insecure()),
                    repetition: rep,
                    plan: &net_plan,
                    handshake_us: &data.handshakes,
                    host_softirq_seconds: data.softirq,
                    underlay_cpu_seconds: data.underlay_cpu,
                    host_busy_seconds: data.host_busy,
                    host_busy_peak_fraction: data.busy_peak,
                    controller_cpu_seconds: data.controller_cpu,
                    stack_config: stack_config.clone(),
                    link_emulator: data.link_emulator,
                    lifecycle,
                    host_busy_samples: &data.busy_samples,
                    crashes: &data.crashes,
                    controller_resources: &data.controller_resources,
                };
                let (summary, hlogs) = aggregate::summarize(&ctx, &data.reports)?;
                writer.write_repetition(&summary, &hlogs)?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            let msg = format!("{e:#}");
            eprintln!("stackbench: {name} failed: {msg}");
            writer.stack_failed(&name, msg.clone())?;
            failures.push(format!("{name}: {msg}"));
        }
    }
    drop(topology);
    let error = (!failures.is_empty()).then(|| failures.join("; "));
    writer.finish(
        if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Complete
        },
        error,
    )?;
    Ok(RunOutcome {
        dir: writer.dir().to_owned(),
        manifest: writer.manifest().clone(),
    })
}

/// The scenario's interface lifecycle samples for `stack`, summarised.
fn lifecycle(
    stack: &dyn Stack,
    topology: &Topology,
    opts: &RunOptions,
    scenario: &Scenario,
    automation: stack::Automation,
) -> Result<Option<stackbench_core::schema::churn::Lifecycle>> {
    let samples = scenario.churn.lifecycle_samples;
    if samples == 0 {
        return Ok(None);
    }
    let mut phases: [hdrhistogram::Histogram<u64>; 6] =
        std::array::from_fn(|_| metrics::new_histogram());
    let mut what = String::new();
    let ctx = stack::StackContext {
        automation,
        ..opts.stack_context()
    };
    let mut has_interface = false;
    for _ in 0..samples {
        let (w, times) = stack.lifecycle(topology, &ctx)?;
        what = w;
        let Some(t) = times else { break };
        has_interface = t.peer_change_us > 0;
        let total = t.create_us + t.configure_us + t.up_us + t.destroy_us;
        for (h, v) in phases.iter_mut().zip([
            t.create_us,
            t.configure_us,
            t.up_us,
            t.destroy_us,
            total,
            t.peer_change_us,
        ]) {
            metrics::record(h, v);
        }
    }
    let [create, configure, up, destroy, total, peer_change] =
        phases.map(|h| aggregate::percentiles(&h));
    Ok(Some(stackbench_core::schema::churn::Lifecycle {
        what,
        samples: total.count as u32,
        create_us: create,
        configure_us: configure,
        up_us: up,
        destroy_us: destroy,
        total_us: total,
        peer_change_us: peer_change,
        automation: if has_interface {
            automation.name().into()
        } else {
            String::new()
        },
    }))
}

/// What one repetition measured, before aggregation.
struct RepetitionData {
    reports: Vec<crate::control::NodeReport>,
    /// Nodes that crashed, as scheduled or not.
    crashes: Vec<stackbench_core::crash::ObservedCrash>,
    /// The controller's memory and descriptors through the run.
    controller_resources: Vec<stackbench_core::schema::ResourceSample>,
    handshakes: Vec<u64>,
    softirq: f64,
    underlay_cpu: f64,
    /// Host-wide busy CPU seconds during the repetition, whoever used them.
    host_busy: f64,
    /// The host's busiest second, as a share of its CPUs.
    busy_peak: f64,
    controller_cpu: f64,
    link_emulator: Option<stackbench_core::schema::LinkEmulatorCost>,
    /// The host's busy CPU seconds since the start of sending, every 100 ms.
    busy_samples: Vec<(f64, f64)>,
}

/// Probes of the links before a run is refused: a burst of host noise (a virtual machine's
/// CPUs taken by its hypervisor for milliseconds) can put one probe off; a misconfigured
/// link is off every time.
const SELF_CHECK_ATTEMPTS: usize = 3;

/// The self-check: measures every path and uplink, and refuses the run when the links are
/// not what the scenario asks, on every one of [`SELF_CHECK_ATTEMPTS`] probes.
fn check_links(
    nodes: &[NodeAddr],
    topology: &Topology,
    plan: &LinkPlan,
    scenario: &Scenario,
    opts: &RunOptions,
    mechanism_note: Option<String>,
) -> Result<stackbench_core::schema::LinkCheck> {
    let links = scenario.links.get_ref();
    if opts.progress {
        eprintln!(
            "stackbench: checking links ({}) for {}",
            topology.mechanism().describe(),
            links.probe
        );
    }
    let mechanism = match mechanism_note {
        Some(note) => format!("{} ({note})", topology.mechanism().describe()),
        None => topology.mechanism().describe().to_owned(),
    };
    let mut discarded = Vec::new();
    let mut steals_ms = Vec::new();
    let mut check = loop {
        let steal_before = crate::metrics::host_steal_seconds();
        let check = link::probe::check(nodes, plan, &links.tolerance, links.probe.0, &mechanism)
            .context("probing the links")?;
        let steal_ms = (crate::metrics::host_steal_seconds() - steal_before) * 1e3;
        steals_ms.push(format!("{steal_ms:.0}"));
        if check.failures.is_empty() || discarded.len() + 1 >= SELF_CHECK_ATTEMPTS {
            break stackbench_core::schema::LinkCheck {
                discarded_attempts: discarded,
                ..check
            };
        }
        let attempt = format!(
            "{} (the hypervisor took {steal_ms:.0} ms of CPU meanwhile)",
            check.failures.join("; ")
        );
        eprintln!(
            "stackbench: self-check attempt {} of {SELF_CHECK_ATTEMPTS} found the links off, probing again: {attempt}",
            discarded.len() + 1
        );
        discarded.push(attempt);
        // A burst of the host's noise may pass in the meantime.
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    if let Some(sample) = topology.emulator_sample() {
        check.emulator_scheduling = Some(sample?.stats.scheduling);
    }
    for w in &check.warnings {
        eprintln!("stackbench: warning: {w}");
    }
    if let Some(cov) = check.coverage.as_ref().filter(|_| opts.progress) {
        eprintln!(
            "stackbench: self-check took {:.1} s: {}",
            cov.wall_ms as f64 / 1e3,
            cov.summary
        );
    }
    if !check.failures.is_empty() {
        if !opts.unchecked_links {
            anyhow::bail!(
                "the links are not what the scenario asks, so the run did not start:\n  - {}\n(tolerance: {})\nEvery one of {} probes found values off. During them the hypervisor took {} ms of this machine's CPUs (steal time in /proc/stat; 0 on bare metal): frames the emulator holds leave late by as much, which the probe sees as delay and jitter. If that is the cause, running again on a quieter host passes.\nTo run anyway, with every output marked LINKS NOT VERIFIED, pass --unchecked-links.",
                check.failures.join("\n  - "),
                check.tolerance,
                steals_ms.len(),
                steals_ms.join(", ")
            );
        }
        eprintln!(
            "stackbench: warning: LINKS NOT VERIFIED (--unchecked-links): the self-check found these off, and the run goes on:\n  - {}",
            check.failures.join("\n  - ")
        );
    }
    check.unchecked = opts.unchecked_links;
    Ok(check)
}

/// Where the probe and the floor find each node.
fn node_addrs(topology: &Topology) -> Vec<NodeAddr> {
    (0..topology.nodes())
        .map(|i| NodeAddr {
            netns: topology.node_netns(i),
            ip: topology.node_ip(i),
        })
        .collect()
}

fn progress_bar(opts: &RunOptions, total: Duration, label: &str) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total.as_millis() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {elapsed_precise} of {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb.set_message(format!("{:.0}s", total.as_secs_f64()));
    pb
}

/// What the simulator predicts for this run's graph and links, before any stack's cost.
pub(crate) fn simulate(
    plan: &WorkloadPlan,
    links: &LinkPlan,
) -> stackbench_core::schema::Simulation {
    use stackbench_core::sim;
    let cost = sim::HopCost::default();
    let t0 = std::time::Instant::now();
    let classes = sim::simulate(plan, &sim::Network::of(links), cost);
    stackbench_core::schema::Simulation {
        schema: stackbench_core::schema::SCHEMA_VERSION,
        per_object_us: cost.per_object.as_secs_f64() * 1e6,
        wall_seconds: t0.elapsed().as_secs_f64(),
        classes,
    }
}

/// One repetition of one network (`plan.network`, one prepared underlay per stack slot):
/// nodes up, connected, run, reported, gone.
async fn repetition(
    topology: &Topology,
    underlays: &[Box<dyn PreparedUnderlay>],
    plan: &WorkloadPlan,
    sock: &std::path::Path,
    opts: &RunOptions,
    label: &str,
) -> Result<RepetitionData> {
    let mut nodes = NodeSet::spawn(topology, &opts.node_exe, sock, opts.verbose)?;
    let keys = nodes
        .gather(
            "startup",
            SETUP_TIMEOUT,
            |m| match m {
                ToController::Hello {
                    spki, wg_public, ..
                } => Some((spki, wg_public)),
                _ => None,
            },
            || {},
        )
        .await?;
    // Connections exist only along the fanout graph's edges (all pairs when direct).
    let setups: Vec<NodeSetup> = (0..topology.nodes())
        .map(|i| {
            let neighbours = plan.fanout.graph.neighbours(i);
            let slots = plan
                .network
                .stacks
                .iter()
                .zip(underlays)
                .map(|(stack, underlay)| (stack, underlay, opts.faults.for_stack(stack)))
                .map(|(stack, underlay, faults)| SlotSetup {
                    stack: stack.clone(),
                    bind: underlay.node_addr(i),
                    wg_listen: underlay.wg_endpoint(i),
                    wg_uapi: underlay.wg_uapi(i),
                    peers: neighbours
                        .iter()
                        .map(|&j| {
                            let owner = faults.tls_key_owner(i, j, topology.nodes());
                            PeerInfo {
                                index: j,
                                addr: underlay.node_addr(j),
                                spki: keys[owner as usize].0.clone(),
                                wg_public: faults.wg_key(i, j, keys[j as usize].1),
                                wg_endpoint: underlay.wg_endpoint(j),
                            }
                        })
                        .collect(),
                })
                .collect();
            NodeSetup {
                plan: plan.clone(),
                slots,
                simulated: false,
            }
        })
        .collect();
    nodes
        .send_all(|i| ToNode::Setup(Box::new(setups[i as usize].clone())))
        .await?;
    nodes
        .gather(
            "endpoint setup",
            SETUP_TIMEOUT,
            |m| matches!(m, ToController::Bound).then_some(()),
            || {},
        )
        .await?;
    nodes.send_all(|_| ToNode::Connect).await?;
    let handshakes: Vec<u64> = nodes
        .gather(
            "connection setup",
            // Scaled to the network, as the nodes' own deadlines are.
            stackbench_core::setup::SetupDeadlines::for_connections(
                plan.fanout.graph.edges().count(),
            )
            .controller,
            |m| match m {
                ToController::Ready { handshake_us } => Some(handshake_us),
                _ => None,
            },
            || {},
        )
        .await?
        .into_iter()
        .flatten()
        .collect();
    let (softirq0, busy0) = metrics::host_cpu_seconds();
    let underlay_cpu = || -> f64 { underlays.iter().map(|u| u.process_cpu_seconds()).sum() };
    let underlay_cpu0 = underlay_cpu();
    let emulator0 = topology.emulator_sample().transpose()?;
    let controller0 = metrics::process_cpu_us();
    let start_ns = metrics::monotonic_ns() + START_LEAD.as_nanos() as u64;
    nodes.send_all(|_| ToNode::Start { start_ns }).await?;
    let total = START_LEAD + plan.send_end() + plan.drain;
    let pb = progress_bar(opts, total, label);
    // The host's busy CPU every 100 ms, for the busiest second.
    let t_start = std::time::Instant::now();
    let mut busy_samples = vec![(0.0, metrics::host_cpu_seconds().1)];
    let since_start = || (metrics::monotonic_ns() as f64 - start_ns as f64) / 1e9;
    let mut resources = vec![metrics::resource_sample(since_start())];
    let outcome = nodes
        .run_phase(
            topology,
            plan,
            &setups,
            start_ns,
            total + REPORT_SLACK,
            opts.faults.kill_node,
            || {
                busy_samples.push((
                    t_start.elapsed().as_secs_f64(),
                    metrics::host_cpu_seconds().1,
                ));
                let t = since_start();
                if resources
                    .last()
                    .is_some_and(|r| t - r.t_s >= stackbench_core::schema::RESOURCE_INTERVAL_S)
                {
                    resources.push(metrics::resource_sample(t));
                }
                pb.set_position(
                    (metrics::monotonic_ns().saturating_sub(start_ns) / 1_000_000)
                        .min(total.as_millis() as u64),
                )
            },
        )
        .await;
    pb.finish_and_clear();
    let controller1 = metrics::process_cpu_us();
    let controller_cpu =
        ((controller1.0 + controller1.1) - (controller0.0 + controller0.1)) as f64 / 1e6;
    let (softirq1, busy1) = metrics::host_cpu_seconds();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy_peak = metrics::peak_busy_fraction(&busy_samples, 1.0, cores);
    let (softirq, host_busy) = (softirq1 - softirq0, busy1 - busy0);
    let underlay_cpu = underlay_cpu() - underlay_cpu0;
    // From the start of sending, and from the repetition's own first sample.
    let lead = START_LEAD.as_secs_f64();
    let busy_samples: Vec<(f64, f64)> = busy_samples
        .iter()
        .map(|(t, b)| (t - lead, b - busy_samples[0].1))
        .collect();
    let emulator1 = topology.emulator_sample().transpose()?;
    let link_emulator = emulator0
        .zip(emulator1)
        .map(|(before, after)| after.cost_since(&before));
    if let Some(failure) = underlays.iter().find_map(|u| u.process_failure()) {
        // The likelier cause of any failed report, and a broken underlay either way.
        anyhow::bail!("{failure}");
    }
    let nodes::RunOutcome { reports, crashes } = outcome?;
    nodes.shutdown().await;
    let _ = std::fs::remove_file(sock);
    Ok(RepetitionData {
        reports,
        crashes,
        controller_resources: resources,
        handshakes,
        softirq,
        underlay_cpu,
        host_busy,
        busy_peak,
        controller_cpu,
        link_emulator,
        busy_samples,
    })
}
