//! The namespaces a run lives in, built by `netns-scripts/topology.sh` (embedded here so the
//! binary works from any directory; the file in the repository is the same script, for use
//! by hand). A [`Topology`] removes what it made when dropped, whatever happened.

use crate::{
    link::{emulator::EmulatorConfig, EmulatorProcess, EmulatorSample, LinkPlan, Mechanism},
    runid::RunId,
    units::BitRate,
};
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    process::Command,
};

const SCRIPT: &str = include_str!("../../netns-scripts/topology.sh");
/// Each node's link to the switch, inside its namespace.
pub const NODE_IFACE: &str = "eth0";
/// UDP port every node's QUIC endpoint listens on.
pub const QUIC_PORT: u16 = 4433;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("running topology.sh {action}: {source}")]
    Spawn {
        action: &'static str,
        source: std::io::Error,
    },
    #[error("topology.sh {action} failed ({status}): {stderr}")]
    Script {
        action: &'static str,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("setting up the links: {0:#}")]
    Links(anyhow::Error),
}

/// N node namespaces joined by a switch namespace: a kernel bridge, or the userspace link
/// emulator; with per-node uplink rate limits.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    nodes: u32,
    state_dir: PathBuf,
    mechanism: Mechanism,
    emulator: Option<std::sync::Mutex<EmulatorProcess>>,
    up: bool,
}

/// TBF bucket: at least 32 KiB, and 2 ms of the rate, so fast links are not starved.
fn tbf_burst(rate: BitRate) -> u64 {
    ((rate.bytes_per_sec() * 0.002) as u64).max(32 * 1024)
}

fn run_script(
    state_dir: &std::path::Path,
    action: &'static str,
    args: &[String],
) -> Result<(), TopologyError> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("topology.sh")
        .arg(action)
        .args(args)
        .env("STACKBENCH_STATE", state_dir)
        .output()
        .map_err(|source| TopologyError::Spawn { action, source })?;
    if !out.status.success() {
        return Err(TopologyError::Script {
            action,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

impl Topology {
    /// Builds the namespaces for `run` with the links of `plan` (the userspace emulator runs
    /// `exe link-emulator`); on failure, removes whatever was half made.
    pub fn up(
        run: &RunId,
        plan: &LinkPlan,
        mechanism: Mechanism,
        seed: u64,
        exe: &std::path::Path,
    ) -> Result<Topology, TopologyError> {
        let nodes = plan.nodes.len() as u32;
        let mut t = Topology {
            prefix: run.prefix.clone(),
            nodes,
            state_dir: run.state_dir.clone(),
            mechanism,
            emulator: None,
            up: true,
        };
        let mut args = vec![
            "--prefix".into(),
            t.prefix.clone(),
            "--nodes".into(),
            nodes.to_string(),
            "--switch".into(),
            if mechanism == Mechanism::Userspace {
                "emulator"
            } else {
                "bridge"
            }
            .into(),
        ];
        // With netem, the uplink's TBF becomes netem's child (see `link::netem`).
        for n in plan.nodes.iter().filter(|_| mechanism != Mechanism::Netem) {
            if let Some(rate) = n.uplink_bits_per_sec {
                args.extend([
                    "--shape".into(),
                    format!(
                        "{}:{rate}bit:{}b:{}us",
                        n.index,
                        tbf_burst(BitRate(rate)),
                        n.queue_us.max(1)
                    ),
                ]);
            }
        }
        if let Err(e) = run_script(&t.state_dir, "up", &args) {
            let _ = t.down();
            return Err(e);
        }
        let links = match mechanism {
            Mechanism::Wire => Ok(()),
            Mechanism::Userspace => t.start_emulator(plan, seed, exe),
            Mechanism::Netem => t.apply_netem(plan),
        };
        if let Err(e) = links {
            let _ = t.down();
            return Err(TopologyError::Links(e));
        }
        Ok(t)
    }

    fn start_emulator(
        &mut self,
        plan: &LinkPlan,
        seed: u64,
        exe: &std::path::Path,
    ) -> anyhow::Result<()> {
        let config = EmulatorConfig {
            plan: plan.clone(),
            ports: (0..self.nodes).map(|i| format!("p{i}")).collect(),
            seed,
        };
        let path = self.emulator_config_path();
        std::fs::write(&path, serde_json::to_vec(&config)?)?;
        self.emulator = Some(std::sync::Mutex::new(EmulatorProcess::start(
            exe,
            &self.switch_netns(),
            &path,
        )?));
        Ok(())
    }

    fn apply_netem(&self, plan: &LinkPlan) -> anyhow::Result<()> {
        for i in 0..self.nodes {
            for args in crate::link::netem::node_commands(plan, i, tbf_burst) {
                let out = Command::new("ip")
                    .args(["netns", "exec", &self.node_netns(i), "tc"])
                    .args(&args)
                    .output()?;
                if !out.status.success() {
                    anyhow::bail!(
                        "tc {} (in {}): {}",
                        args.join(" "),
                        self.node_netns(i),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        Ok(())
    }

    fn emulator_config_path(&self) -> PathBuf {
        // Inside the run's own directory, so the emulator's command line names the run.
        self.state_dir.join(&self.prefix).join("emulator.json")
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The userspace emulator's counters and CPU seconds so far, if this topology has one.
    pub fn emulator_sample(&self) -> Option<anyhow::Result<EmulatorSample>> {
        let mut e = self
            .emulator
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let cpu_seconds = crate::metrics::pid_cpu_seconds(e.pid());
        Some(e.stats().map(|stats| EmulatorSample { stats, cpu_seconds }))
    }

    pub fn switch_netns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// Removes exactly what `up` made. Idempotent.
    pub fn down(&mut self) -> Result<(), TopologyError> {
        if !self.up {
            return Ok(());
        }
        self.up = false;
        self.emulator.take();
        let _ = std::fs::remove_file(self.emulator_config_path());
        down_prefix(&self.state_dir, &self.prefix)
    }

    /// The run prefix every name of this topology starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    pub fn node_netns(&self, index: u32) -> String {
        format!("{}-n{index}", self.prefix)
    }

    pub fn node_ip(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, (index + 1) as u8)
    }

    pub fn node_socket_addr(&self, index: u32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.node_ip(index), QUIC_PORT))
    }

    /// A command that runs `program` inside node `index`'s namespace.
    pub fn command_in(&self, index: u32, program: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.node_netns(index)])
            .arg(program);
        c
    }

    /// The qdiscs on node 0's uplink, for the environment fingerprint.
    pub fn describe_qdiscs(&self) -> String {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node_netns(0),
                "tc",
                "qdisc",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

/// Removes the namespaces recorded for `prefix` (used for our own and for stale runs).
pub fn down_prefix(state_dir: &std::path::Path, prefix: &str) -> Result<(), TopologyError> {
    run_script(state_dir, "down", &["--prefix".into(), prefix.into()])
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!(
                "stackbench: cleanup of namespaces {}-* failed: {e}",
                self.prefix
            );
        }
    }
}
