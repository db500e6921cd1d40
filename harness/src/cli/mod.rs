//! Command-line interface. Exit codes: 0 success, 1 a run or stack failed, 2 usage error
//! (bad flags, invalid scenario, unknown stack), 3 `compare` found a regression, 130
//! interrupted.

mod check_output;
mod launch;

use check_output::print_check;
pub(crate) use launch::{load_args_for, run_until_signal};
use launch::{load_run_args, node_executable, run_command, show_results};

use crate::{
    check::HostCaps,
    controller::{Faults, RunOptions},
    reporting::Requirement,
    rootless,
    scenario::{NetworkEngine, Scenario},
    stack,
};
use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};

#[derive(Debug, Parser)]
#[command(
    name = "stackbench",
    version,
    about = "Measure transport-security stacks under a prioritized broadcast workload"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write results, a summary table and summary.md.
    Run {
        #[command(flatten)]
        args: ScenarioArgs,
        /// No progress bar (implied when stderr is not a terminal).
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        require: RequireArgs,
    },
    /// Run a scenario on Shadow's simulated network, every node the real node binary:
    /// results as `run` writes them, marked SIMULATED NETWORK (Shadow models the CPU as
    /// infinitely fast). Needs Shadow: scripts/setup-shadow.sh installs it.
    Shadow {
        /// Scenario file (TOML), e.g. scenarios/gossip-1000.toml.
        scenario: PathBuf,
        /// Stacks to run instead of the scenario's, comma-separated.
        #[arg(long, value_delimiter = ',')]
        stacks: Option<Vec<String>>,
        /// Parent folder for the run folder.
        #[arg(long, default_value = "results/runs")]
        out: PathBuf,
        /// Repetitions instead of the scenario's (each with its own simulation seed).
        #[arg(long)]
        repetitions: Option<u32>,
        /// No progress line from Shadow (implied when stderr is not a terminal).
        #[arg(long)]
        no_progress: bool,
        /// Keep Shadow's data folder (every host's output) and the nodes' inputs (with
        /// their keys) for repetitions that succeeded; failed ones keep them always.
        #[arg(long)]
        keep_data: bool,
    },
    /// Write report.html, plots, summary.md, report.json and report.csv for run folders
    /// (into the folder itself for one run; combined into --out for several).
    Report {
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare a run with a baseline run: change, 95% CI and verdict per stack, class and
    /// metric. Exit 3 when something regressed. Either side may be several run folders,
    /// comma-separated, whose repetitions are pooled (e.g. interleaved A/B runs).
    Compare {
        #[arg(required = true, value_delimiter = ',', num_args = 1)]
        baseline: Vec<PathBuf>,
        #[arg(required = true, value_delimiter = ',', num_args = 1)]
        run: Vec<PathBuf>,
        /// Thresholds (TOML) [default: results/baselines/thresholds.toml]
        #[arg(long)]
        thresholds: Option<PathBuf>,
        /// Compare absolute figures even when the two runs' environment fingerprints (CPU,
        /// cores, kernel, virtualization) differ.
        #[arg(long)]
        same_machine: bool,
    },
    /// A/A: run the scenario twice and report the differences as the noise floor.
    Aa {
        #[command(flatten)]
        args: ScenarioArgs,
        /// Thresholds (TOML) [default: results/baselines/thresholds.toml]
        #[arg(long)]
        thresholds: Option<PathBuf>,
    },
    /// Run a scenario at several network sizes and state, per stack, the largest network
    /// this machine ran without saturating its CPU (scale.json and scale.md).
    Scale {
        #[command(flatten)]
        args: ScenarioArgs,
        /// Node counts to try, comma-separated, smallest first; a stack stops at the first
        /// size that saturates.
        #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
        nodes: Vec<u32>,
    },
    /// The design review: runs the suite (LAN, WANs, loss, congestion, 64 and 1 000 nodes,
    /// churn, crashes, upgrade, bulk, kernel WireGuard in a VM) over every stack available,
    /// then writes review.md and review.html answering the seed's questions. Runs given
    /// with --from are not measured again; a review stopped midway resumes in the same --out.
    Review {
        /// The review's folder (runs/, review.json, review.md, review.html, plots/).
        #[arg(long, default_value = "results/review")]
        out: PathBuf,
        /// Finished run folders that fill parts of the suite.
        #[arg(long, num_args = 1..)]
        from: Vec<PathBuf>,
        /// A few minutes: the LAN and the continental WAN, four stacks, two repetitions.
        #[arg(long)]
        quick: bool,
        /// Measure nothing; write the review over --from and the parts already in --out.
        #[arg(long)]
        no_run: bool,
        /// Where the suite's scenario files are.
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
        /// No progress bars (implied when stderr is not a terminal).
        #[arg(long)]
        no_progress: bool,
    },
    /// Check scenario files without running them.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what this host can run: privileges, kernel features, tools, and each stack.
    Check {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the stacks of the design.
    List,
    /// Run inside a virtual machine (virtme-ng + qemu), for kernels without WireGuard.
    Vm {
        #[command(subcommand)]
        action: VmCommand,
    },
    /// Internal: a userspace WireGuard device (boringtun's or GotaTun's) serving a TUN,
    /// started by `run`.
    #[command(hide = true)]
    WgDevice {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// boringtun or gotatun.
        #[arg(long, default_value = "boringtun")]
        library: String,
    },
    /// Internal: the userspace link emulator, started by `run` in the switch namespace.
    #[command(hide = true)]
    LinkEmulator {
        #[arg(long)]
        config: PathBuf,
    },
    /// One node. `run` starts these inside namespaces with --control; with --inputs (see
    /// `node-inputs`) a node runs without a controller and writes its report to --results.
    Node {
        /// The controller: a Unix socket's path, or tcp:HOST:PORT.
        #[arg(long, requires = "index", conflicts_with_all = ["inputs", "results"])]
        control: Option<String>,
        #[arg(long)]
        index: Option<u32>,
        /// A file written by `node-inputs`: setup, keys and start instant.
        #[arg(long, requires = "results")]
        inputs: Option<PathBuf>,
        /// Folder for the report (node-<index>.report.json).
        #[arg(long, requires = "inputs")]
        results: Option<PathBuf>,
        /// Where the node keeps its keys for the run (created 0600 if absent, read if
        /// present: a node started again after a crash keeps its identity).
        #[arg(long, requires = "control")]
        key_file: Option<PathBuf>,
        /// Where the node writes its first deliveries and sealed timeline steps as they
        /// happen (created 0600, or started afresh), for the controller to read when the
        /// node reports.
        #[arg(long, requires = "control")]
        record_log: Option<PathBuf>,
    },
    /// Write one inputs file per node, so that nodes can run without a controller
    /// (`stackbench node --inputs`): elsewhere than in namespaces, e.g. on the given
    /// addresses on one host, under a network simulator or on other hosts.
    NodeInputs {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The stack every node runs: one whose underlay needs no controller (QUIC or SCTP
        /// on UDP, or over in-process WireGuard).
        #[arg(long)]
        stack: String,
        /// Each node's address (its in-process WireGuard's, for stacks that have one),
        /// comma-separated, node 0 first.
        #[arg(long, value_delimiter = ',', required = true)]
        addresses: Vec<std::net::SocketAddr>,
        /// How long after writing the files the nodes start sending. Over WireGuard, a
        /// handshake sent before its peer listens is retried 5 s later (REKEY_TIMEOUT), so
        /// leave the nodes more than that to start.
        #[arg(long, default_value = "10s")]
        start_in: crate::units::Dur,
        /// Folder for node-<index>.inputs.json.
        #[arg(long)]
        out: PathBuf,
    },
}

/// What every scenario-running command takes.
#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// Scenario file (TOML), e.g. scenarios/quick.toml.
    scenario: PathBuf,
    /// Stacks to run instead of the scenario's, comma-separated; the scenario's mixes and
    /// upgrades are picked by name the same way.
    #[arg(long, value_delimiter = ',')]
    stacks: Option<Vec<String>>,
    /// Parent folder for the run folder.
    #[arg(long, default_value = "results/runs")]
    out: PathBuf,
    /// Repetitions instead of the scenario's (error bars need two or more).
    #[arg(long)]
    repetitions: Option<u32>,
    /// Run even when the links' self-check finds them off the scenario; every output of
    /// the run is then marked LINKS NOT VERIFIED.
    #[arg(long)]
    unchecked_links: bool,
}

impl ScenarioArgs {
    /// The scenario with `--stacks` checked and `--repetitions` applied; errors are usage
    /// errors.
    fn load(&self) -> Result<Scenario, String> {
        load_run_args(&self.scenario, self.stacks.as_deref(), self.repetitions)
    }
}

#[derive(Debug, Subcommand)]
enum VmCommand {
    /// Boot a stock kernel that has WireGuard and run a scenario in it with this binary;
    /// results land in the host's results folder, marked "emulated CPU" without KVM.
    Run {
        #[command(flatten)]
        args: ScenarioArgs,
        /// KVM, or qemu's software emulation; `auto` tries a KVM boot first.
        #[arg(long, value_enum, default_value = "auto")]
        accel: crate::vm::Accel,
        /// Kernel image to boot (default: the newest /boot/vmlinuz-* with WireGuard).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// VM memory, as qemu takes it.
        #[arg(long, default_value = "1G")]
        memory: String,
        /// VM vCPUs.
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        #[command(flatten)]
        require: RequireArgs,
    },
}

/// What a run must show for the command to exit 0 (for CI).
#[derive(Debug, clap::Args)]
struct RequireArgs {
    /// Exit 1 unless every requested stack ran and delivered every object the scenario
    /// offered, in time.
    #[arg(long, conflicts_with = "require_delivery")]
    require_complete: bool,
    /// Exit 1 unless every requested stack ran and delivered every object it sent; objects
    /// the nodes could not send in time (a CPU too slow for the load, as an emulated one
    /// can be) are a warning.
    #[arg(long)]
    require_delivery: bool,
}

impl RequireArgs {
    fn requirement(&self) -> Requirement {
        Requirement::from_flags(self.require_complete, self.require_delivery)
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stackbench: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Files and sockets this process makes from now on are its owner's alone (0600): a
/// userspace WireGuard device's UAPI socket takes keys from whoever may connect. The mode
/// is set as the socket is made, not changed after (wireguard-go, for one, watches its
/// socket and stops when its attributes change).
fn owner_only_files() {
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o177) };
}

fn usage_error(msg: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("stackbench: {msg}");
    Ok(ExitCode::from(2))
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::WgDevice {
            iface,
            threads,
            library,
        } => {
            owner_only_files();
            match library.as_str() {
                "boringtun" => crate::stack::wg_tun::run_boringtun_device(&iface, threads),
                "gotatun" => {
                    crate::stack::wg_gotatun::run_device(&iface).map(|never| match never {})
                }
                other => Err(anyhow::anyhow!(
                    "unknown WireGuard library {other:?}; known: boringtun, gotatun"
                )),
            }
            .map(|()| ExitCode::SUCCESS)
        }
        Command::LinkEmulator { config } => {
            crate::link::emulator::run(&config).map(|()| ExitCode::SUCCESS)
        }
        Command::Node {
            control,
            index,
            inputs,
            results,
            key_file,
            record_log,
        } => {
            let source = match (control, inputs, results) {
                (Some(c), None, None) => crate::node::ControlSource::parse_control(&c),
                (None, Some(inputs), Some(results)) => {
                    crate::node::ControlSource::Files { inputs, results }
                }
                _ => {
                    return usage_error(
                        "node needs --control and --index, or --inputs and --results",
                    )
                }
            };
            let files = crate::node::NodeFiles {
                key_file,
                record_log,
            };
            crate::node::main(source, index.unwrap_or(0), files).map(|()| ExitCode::SUCCESS)
        }
        Command::NodeInputs {
            scenario,
            stack,
            addresses,
            start_in,
            out,
        } => {
            let parsed = match load_run_args(&scenario, Some(std::slice::from_ref(&stack)), None) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            match crate::standalone::write_inputs(&parsed, &stack, &addresses, start_in.0, &out) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::standalone::InputsError::Usage(e)) => usage_error(e),
                Err(crate::standalone::InputsError::Failed(e)) => Err(e),
            }
        }
        Command::List => {
            println!("{:<24} privileges needed", "stack");
            for s in stack::registry() {
                let id = s.id();
                let note = if id.is_insecure() {
                    " (INSECURE control)"
                } else {
                    ""
                };
                println!("{:<24} {}{note}", id.name(), id.privileges());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files } => {
            let known = stack::names();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            let mut bad = false;
            for f in files {
                // A scenario too large for namespaces may still run on a simulated network.
                let loaded = Scenario::load(&f, &known).map(|s| (s, "")).or_else(|e| {
                    Scenario::load_for(&f, &known, NetworkEngine::Simulated)
                        .map(|s| (s, "; simulated network only (stackbench shadow)"))
                        .map_err(|_| e)
                });
                match loaded {
                    Ok((s, engine)) => {
                        let others: Vec<&str> = s
                            .mixes
                            .iter()
                            .map(|m| m.name.get_ref().as_str())
                            .chain(s.upgrades.iter().map(|u| u.name.get_ref().as_str()))
                            .collect();
                        println!(
                            "ok: {} ({}: {} nodes, {} classes, stacks {}{}{engine})",
                            f.display(),
                            s.name,
                            s.node_count(),
                            s.classes.len(),
                            s.stack_names().join(", "),
                            if others.is_empty() {
                                String::new()
                            } else {
                                format!("; mixes and upgrades {}", others.join(", "))
                            }
                        )
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        bad = true;
                    }
                }
            }
            Ok(ExitCode::from(if bad { 2 } else { 0 }))
        }
        Command::Check { json } => {
            rootless::reexec_if_needed()?;
            rootless::prepare_private_run()?;
            let prefix = format!("sbc{:05x}", rand::random::<u32>() & 0xf_ffff);
            let host = HostCaps::probe(&prefix);
            print_check(&host, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Vm {
            action:
                VmCommand::Run {
                    args,
                    accel,
                    kernel,
                    memory,
                    cpus,
                    require,
                },
        } => {
            if let Err(e) = args.load() {
                return usage_error(e);
            }
            crate::vm::run(crate::vm::VmOptions {
                scenario: args.scenario,
                stacks: args.stacks,
                out: args.out,
                repetitions: args.repetitions,
                unchecked_links: args.unchecked_links,
                accel,
                kernel,
                memory,
                cpus,
                require: require.requirement(),
            })
        }
        Command::Shadow {
            scenario,
            stacks,
            out,
            repetitions,
            no_progress,
            keep_data,
        } => {
            let parsed = match load_args_for(
                &scenario,
                stacks.as_deref(),
                repetitions,
                NetworkEngine::Simulated,
            ) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            let opts = crate::shadow::ShadowOptions {
                out,
                stacks,
                node_exe: node_executable()?,
                progress: !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                keep_data,
            };
            let Some(dir) = crate::shadow::run(&parsed, &opts)? else {
                eprintln!("stackbench shadow: interrupted; Shadow and its processes were stopped and the run's run.json marked interrupted");
                return Ok(ExitCode::from(130));
            };
            show_results(&dir, Requirement::Nothing).map(|(code, _)| code)
        }
        Command::Review {
            out,
            from,
            quick,
            no_run,
            scenarios,
            no_progress,
        } => {
            if let Some(bad) = from.iter().find(|d| !d.join("run.json").is_file()) {
                return usage_error(format!(
                    "--from {}: not a run folder (no run.json in it)",
                    bad.display()
                ));
            }
            if !no_run && !scenarios.is_dir() {
                return usage_error(format!(
                    "--scenarios {}: no such folder (run from the project's root, or pass --scenarios)",
                    scenarios.display()
                ));
            }
            if !no_run {
                rootless::reexec_if_needed()?;
                rootless::prepare_private_run()?;
            }
            crate::review::run(&crate::review::ReviewOptions {
                out,
                from,
                quick,
                no_run,
                scenarios_dir: scenarios,
                node_exe: node_executable()?,
                progress: !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                verbose: cli.verbose > 0,
            })
        }
        Command::Report { runs, out } => {
            let page = crate::reporting::report(&runs, out)?;
            println!("report: {}", page.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare {
            baseline,
            run,
            thresholds,
            same_machine,
        } => {
            crate::reporting::compare_command(&baseline, &run, thresholds.as_deref(), same_machine)
        }
        Command::Aa { args, thresholds } => {
            let parsed = match args.load() {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            rootless::reexec_if_needed()?;
            rootless::prepare_private_run()?;
            let opts = run_options(&args, false, cli.verbose)?;
            let mut dirs = vec![];
            for pass in ["A", "A'"] {
                eprintln!("stackbench aa: run {pass}");
                let (code, dir) = run_command(&parsed, &opts, Requirement::Complete)?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
                dirs.extend(dir);
            }
            let md =
                crate::reporting::record_noise_floor(&dirs[0], &dirs[1], thresholds.as_deref())?;
            println!("{md}");
            println!(
                "noise floor saved in {} (aa.md, aa.json, report.html)",
                dirs[1].display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Scale { args, nodes } => {
            let sizes = match crate::scale::sizes(&args.scenario, &nodes, args.repetitions) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            match args.load() {
                Err(e) => return usage_error(e),
                Ok(s) if s.stack_names().is_empty() && args.stacks.is_none() => {
                    return usage_error(format!(
                        "{}: scale sweeps the scenario's stacks, and it names none (its mixes and upgrades are not swept); pass --stacks",
                        args.scenario.display()
                    ))
                }
                Ok(_) => {}
            }
            rootless::reexec_if_needed()?;
            rootless::prepare_private_run()?;
            let opts = run_options(&args, true, cli.verbose)?;
            crate::scale::sweep(&args.scenario, &sizes, &opts)
        }
        Command::Run {
            args,
            no_progress,
            require,
        } => {
            let parsed = match args.load() {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            rootless::reexec_if_needed()?;
            rootless::prepare_private_run()?;
            let opts = run_options(&args, no_progress, cli.verbose)?;
            Ok(run_command(&parsed, &opts, require.requirement())?.0)
        }
    }
}

fn run_options(args: &ScenarioArgs, no_progress: bool, verbose: u8) -> Result<RunOptions> {
    Ok(RunOptions {
        out: args.out.clone(),
        exact_dir: false,
        stacks: args.stacks.clone(),
        unchecked_links: args.unchecked_links,
        node_exe: node_executable()?,
        progress: !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        progress_context: String::new(),
        verbose: verbose > 0,
        faults: Faults::default(),
    })
}
