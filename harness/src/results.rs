//! Results folders: `run.json`, the resolved scenario, the environment fingerprint, and one
//! folder per stack and repetition, each written atomically the moment it is complete.

use crate::{check::HostCaps, scenario::Scenario};
use anyhow::{Context, Result};
use serde::Serialize;
use stackbench_core::schema::{
    RepetitionSummary, RunManifest, RunStatus, StackOutcome, SCHEMA_VERSION,
};
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

/// Writes `bytes` to `path` atomically (see [`stackbench_report::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    stackbench_report::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The lock a run holds on its results folder: one writer at a time, released when the
/// process ends however it ends.
const LOCK_FILE: &str = ".stackbench.lock";

fn lock_folder(dir: &Path) -> Result<fs::File> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock takes a descriptor this File owns and plain flags.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another stackbench run is writing to {}; give each run a folder of its own",
            dir.display()
        );
    }
    Ok(f)
}

/// Where and on what a run happened.
#[derive(Debug, Serialize)]
pub struct Environment {
    pub kernel: String,
    pub os: String,
    pub cpu_model: String,
    /// Vendor, family, model and stepping: tells CPU generations apart where the model name
    /// does not (a VM may say only "AMD EPYC").
    pub cpu_id: String,
    /// The CPU features crypto speed depends on, those present.
    pub cpu_features: String,
    /// Whether this is a virtual machine or container, and which, where the system says.
    pub virtualization: String,
    pub cores: usize,
    pub memory_total_kib: u64,
    pub stackbench_git_rev: &'static str,
    pub rustc: &'static str,
    pub crate_versions: BTreeMap<String, String>,
    pub node_runtime: &'static str,
    /// Set when the CPU is emulated: timings are comparable only within the same run.
    pub emulated_cpu: Option<String>,
    pub host: HostCaps,
    pub sysctls: BTreeMap<String, String>,
    /// `tc qdisc show` on node 0's uplink.
    pub qdiscs: String,
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find(|l| l.starts_with(key)).map(|l| {
        l.split_once([':', '='])
            .map_or(l, |(_, v)| v)
            .trim()
            .trim_matches('"')
            .to_owned()
    })
}

const SYSCTLS: &[&str] = &[
    "net/core/rmem_max",
    "net/core/wmem_max",
    "net/core/netdev_max_backlog",
    "net/ipv4/udp_mem",
    "kernel/unprivileged_userns_clone",
];

/// Why timings on this CPU are comparable only within one run, if they are: the CPU model
/// says QEMU emulates it, or the VM runner (`stackbench vm run`) said so in
/// `STACKBENCH_EMULATED`.
pub fn emulated_cpu(cpu_model: &str, runner_says: Option<String>) -> Option<String> {
    let what = match runner_says.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None if cpu_model.contains("QEMU TCG") || cpu_model.contains("QEMU Virtual CPU") => {
            format!("{cpu_model} (QEMU software emulation)")
        }
        None => return None,
    };
    Some(format!(
        "emulated CPU: {what}; timings are comparable only within this run"
    ))
}

/// The CPU features whose presence changes crypto and copy speeds.
const CPU_FEATURES: &[&str] = &["aes", "vaes", "avx2", "avx512f", "sha_ni", "pclmulqdq"];

fn cpu_id() -> String {
    let f = |k| first_line_with("/proc/cpuinfo", k).unwrap_or_else(|| "?".into());
    format!(
        "{} family {} model {} stepping {}",
        f("vendor_id"),
        f("cpu family"),
        f("model\t"),
        f("stepping")
    )
}

fn cpu_features() -> String {
    let flags = first_line_with("/proc/cpuinfo", "flags").unwrap_or_default();
    let have: Vec<&str> = flags.split_whitespace().collect();
    CPU_FEATURES
        .iter()
        .filter(|f| have.contains(f))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// "none" on bare metal; otherwise what `systemd-detect-virt` says, or that the CPU
/// reports a hypervisor.
fn virtualization() -> String {
    let flags = first_line_with("/proc/cpuinfo", "flags").unwrap_or_default();
    let detected = std::process::Command::new("systemd-detect-virt")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty() && s != "none");
    let hypervisor = flags.split_whitespace().any(|f| f == "hypervisor");
    match (detected, hypervisor) {
        (Some(d), true) => format!("virtual machine ({d})"),
        (None, true) => "virtual machine".into(),
        (Some(d), false) => d,
        (None, false) => "none".into(),
    }
}

impl Environment {
    pub fn capture(host: HostCaps, qdiscs: String) -> Environment {
        let read = |p: &str| {
            fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let cpu_model = first_line_with("/proc/cpuinfo", "model name").unwrap_or_default();
        let emulated_cpu = emulated_cpu(&cpu_model, std::env::var("STACKBENCH_EMULATED").ok());
        Environment {
            kernel: read("/proc/sys/kernel/osrelease"),
            os: first_line_with("/etc/os-release", "PRETTY_NAME").unwrap_or_default(),
            cpu_model,
            cpu_id: cpu_id(),
            cpu_features: cpu_features(),
            virtualization: virtualization(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_total_kib: first_line_with("/proc/meminfo", "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0),
            stackbench_git_rev: env!("STACKBENCH_GIT_REV"),
            rustc: env!("STACKBENCH_RUSTC"),
            crate_versions: env!("STACKBENCH_CRATE_VERSIONS")
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            node_runtime: crate::node::RUNTIME_FLAVOUR,
            emulated_cpu,
            host,
            sysctls: SYSCTLS
                .iter()
                .map(|k| (k.replace('/', "."), read(&format!("/proc/sys/{k}"))))
                .collect(),
            qdiscs,
        }
    }
}

/// A run folder being filled. Dropped before [`RunWriter::finish`], it records the run as
/// interrupted, so an aborted run still says what happened.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    manifest: RunManifest,
    finished: bool,
    /// The folder's lock, held until the run is finished.
    lock: Option<fs::File>,
}

impl RunWriter {
    pub fn create(
        dir: PathBuf,
        run_id: &str,
        scenario: &Scenario,
        env: &Environment,
    ) -> Result<Self> {
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating results folder {}", dir.display()))?;
        let lock = lock_folder(&dir)?;
        if dir.join("run.json").exists() {
            drop(lock);
            let _ = fs::remove_file(dir.join(LOCK_FILE));
            anyhow::bail!(
                "{} already holds a run (its run.json); give each run a folder of its own",
                dir.display()
            );
        }
        write_atomic(
            &dir.join("scenario.resolved.toml"),
            scenario.to_resolved_toml().as_bytes(),
        )?;
        write_atomic(&dir.join("env.json"), &serde_json::to_vec_pretty(env)?)?;
        let w = RunWriter {
            manifest: RunManifest {
                schema: SCHEMA_VERSION,
                run_id: run_id.to_owned(),
                scenario: scenario.name.clone(),
                status: RunStatus::Running,
                started_unix: crate::runid::unix_now(),
                finished_unix: None,
                stacks: vec![],
                error: None,
                emulated_cpu: env.emulated_cpu.clone(),
                links_not_verified: None,
                simulated_network: None,
            },
            dir,
            finished: false,
            lock: Some(lock),
        };
        w.save()?;
        Ok(w)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn save(&self) -> Result<()> {
        write_atomic(
            &self.dir.join("run.json"),
            &serde_json::to_vec_pretty(&self.manifest)?,
        )
    }

    /// Writes `links.json`: the network asked for and what the self-check measured; a run
    /// that did not hold its links to the scenario is marked so in `run.json` too.
    pub fn write_links(&mut self, check: &stackbench_core::schema::LinkCheck) -> Result<()> {
        if check.unchecked {
            self.manifest.links_not_verified = Some(check.unchecked_note());
            self.save()?;
        }
        write_atomic(
            &self.dir.join("links.json"),
            &serde_json::to_vec_pretty(check)?,
        )
    }

    /// Marks the run as one on a simulated network: `note` says what that leaves out.
    pub fn mark_simulated(&mut self, note: String) -> Result<()> {
        self.manifest.simulated_network = Some(note);
        self.save()
    }

    /// Writes `simulation.json`: the simulator's prediction for the run's network.
    pub fn write_simulation(&self, sim: &stackbench_core::schema::Simulation) -> Result<()> {
        write_atomic(
            &self.dir.join("simulation.json"),
            &serde_json::to_vec_pretty(sim)?,
        )
    }

    /// Writes `floor.json`: the machine's own latency, measured before the stacks.
    pub fn write_floor(&self, floor: &stackbench_core::schema::MachineFloor) -> Result<()> {
        write_atomic(
            &self.dir.join("floor.json"),
            &serde_json::to_vec_pretty(floor)?,
        )
    }

    pub fn add_stack(&mut self, outcome: StackOutcome) -> Result<()> {
        self.manifest.stacks.push(outcome);
        self.save()
    }

    pub fn stack_failed(&mut self, name: &str, error: String) -> Result<()> {
        if let Some(s) = self.manifest.stacks.iter_mut().find(|s| s.name == name) {
            s.error = Some(error);
        }
        self.save()
    }

    /// Writes one finished repetition: summary and histogram logs into `<stack>/<rep>/`.
    pub fn write_repetition(
        &mut self,
        summary: &RepetitionSummary,
        hlogs: &[(String, String)],
    ) -> Result<()> {
        let stack_dir = self.dir.join(&summary.stack);
        let final_dir = stack_dir.join(summary.repetition.to_string());
        let tmp = stack_dir.join(format!(".{}.partial", summary.repetition));
        let published = (|| -> Result<()> {
            fs::create_dir_all(&stack_dir)?;
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp)?;
            fs::write(
                tmp.join("summary.json"),
                serde_json::to_vec_pretty(summary)?,
            )?;
            for (name, text) in hlogs {
                fs::write(tmp.join(name), text)?;
            }
            let _ = fs::remove_dir_all(&final_dir);
            fs::rename(&tmp, &final_dir)?;
            Ok(())
        })()
        .with_context(|| format!("writing {}", final_dir.display()));
        if published.is_err() {
            // Half a repetition is none: nothing of it stays.
            let _ = fs::remove_dir_all(&tmp);
        }
        published?;
        if let Some(s) = self
            .manifest
            .stacks
            .iter_mut()
            .find(|s| s.name == summary.stack)
        {
            s.repetitions_done = s.repetitions_done.max(summary.repetition + 1);
        }
        self.save()
    }

    /// Records the final status and any run-level error.
    pub fn finish(&mut self, status: RunStatus, error: Option<String>) -> Result<()> {
        self.finished = true;
        self.manifest.status = status;
        self.manifest.error = error;
        self.manifest.finished_unix = Some(crate::runid::unix_now());
        let saved = self.save();
        if self.lock.take().is_some() {
            let _ = fs::remove_file(self.dir.join(LOCK_FILE));
        }
        saved
    }

    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish(
                RunStatus::Interrupted,
                Some("the run was interrupted before it finished".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::emulated_cpu;

    #[test]
    fn emulated_cpus_are_marked() {
        assert_eq!(emulated_cpu("AMD EPYC 7B13", None), None);
        let tcg = emulated_cpu("QEMU TCG CPU version 2.5+", None).expect("TCG is emulated");
        assert!(tcg.starts_with("emulated CPU: QEMU TCG"), "{tcg}");
        assert!(tcg.contains("comparable only within this run"));
        let said = emulated_cpu("AMD EPYC", Some("qemu TCG under virtme-ng".into()));
        assert!(said.is_some_and(|s| s.contains("virtme-ng")));
    }
}
