//! Link emulation: what the scenario asks of the network ([`plan`]), how a path treats each
//! packet ([`model`]), the userspace emulator that applies it where the kernel has no netem
//! ([`emulator`]), and the self-check that measures every path before a run ([`probe`]).

pub mod coverage;
pub mod emulator;
pub mod netem;
pub mod probe;

pub use stackbench_core::link::{model, plan, LinkNode, LinkPlan, PathImpairment};

use crate::{
    aggregate::percentiles, check::HostCaps, metrics::decode_histogram, scenario::EmulatorChoice,
};
use anyhow::{bail, Context, Result};
use emulator::EmulatorStats;
use stackbench_core::schema::LinkEmulatorCost;
use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// How the run's paths get their delay, jitter, loss and reordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// No path impairment: a kernel bridge, with rate limits only.
    Wire,
    /// The kernel's netem qdisc on each node's egress.
    Netem,
    /// stackbench's emulator in the switch namespace.
    Userspace,
}

impl Mechanism {
    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::Wire => "kernel bridge (no delay, jitter, loss or reordering configured)",
            Mechanism::Netem => "netem qdisc on each node's egress",
            Mechanism::Userspace => "userspace emulator in the switch namespace",
        }
    }

    /// Picks the mechanism for `plan`: netem where the kernel has it and it can express the
    /// plan, else the userspace emulator; with a note on why netem was passed over, or an
    /// error when the scenario insists on netem and cannot have it.
    pub fn choose(
        plan: &LinkPlan,
        choice: EmulatorChoice,
        host: &HostCaps,
    ) -> Result<(Mechanism, Option<String>)> {
        if !plan.needs_emulation() {
            return Ok((Mechanism::Wire, None));
        }
        let why_not_netem = match (&host.netem, netem::unsupported(plan)) {
            (Err(e), _) => Some(e.clone()),
            (Ok(_), why) => why,
        };
        match (choice, why_not_netem) {
            (EmulatorChoice::Userspace, _) => Ok((Mechanism::Userspace, None)),
            (EmulatorChoice::Auto | EmulatorChoice::Netem, None) => Ok((Mechanism::Netem, None)),
            (EmulatorChoice::Auto, Some(why)) => {
                Ok((Mechanism::Userspace, Some(format!("not netem: {why}"))))
            }
            (EmulatorChoice::Netem, Some(why)) => bail!(
                "the scenario asks for links.emulator = \"netem\", but {why}; use \"auto\" or \"userspace\""
            ),
        }
    }
}

/// The userspace emulator at one moment.
#[derive(Debug, Clone)]
pub struct EmulatorSample {
    pub stats: EmulatorStats,
    pub cpu_seconds: f64,
}

impl EmulatorSample {
    /// What the emulator did and cost between `earlier` and this sample.
    pub fn cost_since(&self, earlier: &EmulatorSample) -> LinkEmulatorCost {
        let (a, b) = (&earlier.stats, &self.stats);
        let lateness = match (
            decode_histogram(&a.lateness_us),
            decode_histogram(&b.lateness_us),
        ) {
            (Ok(before), Ok(mut after)) => {
                // Counts only grow, so the earlier histogram is contained in the later one.
                let _ = after.subtract(&before);
                percentiles(&after)
            }
            _ => Default::default(),
        };
        LinkEmulatorCost {
            cpu_seconds: self.cpu_seconds - earlier.cpu_seconds,
            forwarded_packets: b.forwarded_packets - a.forwarded_packets,
            forwarded_bytes: b.forwarded_bytes - a.forwarded_bytes,
            dropped_packets: b.dropped_packets - a.dropped_packets,
            reordered_packets: b.reordered_packets - a.reordered_packets,
            send_errors: b.send_errors - a.send_errors,
            lateness_us: lateness,
        }
    }
}

/// The running userspace emulator; dropping it ends it.
#[derive(Debug)]
pub struct EmulatorProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl EmulatorProcess {
    /// Starts `exe link-emulator` in namespace `netns` and waits until its ports are open.
    pub fn start(exe: &Path, netns: &str, config: &Path) -> Result<EmulatorProcess> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .arg("link-emulator")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the link emulator")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the link emulator's pipes are missing");
        };
        let mut p = EmulatorProcess {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        };
        let mut line = String::new();
        p.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let status = p.child.wait()?;
            bail!("the link emulator did not start ({status}); its error is above");
        }
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its counters so far.
    pub fn stats(&mut self) -> Result<EmulatorStats> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the link emulator was stopped")?;
        stdin.write_all(b"stats\n")?;
        stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the link emulator died ({:?})", self.child.try_wait()?);
        }
        serde_json::from_str(&line).context("the link emulator's stats")
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        // End of input ends it; kill in case it is stuck.
        self.stdin.take();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn plan(extra: &str) -> LinkPlan {
        let text = format!(
            "name = \"t\"\nseed = 1\nduration = \"2s\"\nstacks = [\"quic-tls\"]\n[topology]\nnodes = 4\n{extra}\n\
             [[class]]\nname = \"v\"\npriority = 1\nsize = \"200B\"\narrival = {{ process = \"constant\", rate = \"10/s\" }}\n"
        );
        let s =
            Scenario::parse(std::path::Path::new("t.toml"), &text, &["quic-tls"]).expect("valid");
        LinkPlan::from_scenario(&s)
    }

    #[test]
    fn netem_where_it_exists_and_fits_else_the_emulator_with_the_reason() {
        let without = HostCaps::none_for_tests();
        let with = HostCaps {
            netem: Ok("netem qdisc available".into()),
            ..HostCaps::none_for_tests()
        };
        let wan = plan("[links]\ndelay = \"30ms\"");
        let matrix = plan(
            "[regions]\nnames = [\"a\", \"b\"]\ndelay = [[\"1ms\", \"9ms\"], [\"9ms\", \"1ms\"]]",
        );
        let lan = plan("");
        let pick = |p: &LinkPlan, c, h: &HostCaps| Mechanism::choose(p, c, h).map(|(m, _)| m).ok();
        assert_eq!(
            pick(&lan, EmulatorChoice::Auto, &with),
            Some(Mechanism::Wire)
        );
        assert_eq!(
            pick(&wan, EmulatorChoice::Auto, &with),
            Some(Mechanism::Netem)
        );
        assert_eq!(
            pick(&wan, EmulatorChoice::Auto, &without),
            Some(Mechanism::Userspace)
        );
        assert_eq!(
            pick(&wan, EmulatorChoice::Userspace, &with),
            Some(Mechanism::Userspace)
        );
        let (m, note) = Mechanism::choose(&matrix, EmulatorChoice::Auto, &with).expect("auto");
        assert_eq!(m, Mechanism::Userspace);
        assert!(note.is_some_and(|n| n.contains("differ by destination")));
        let err = Mechanism::choose(&wan, EmulatorChoice::Netem, &without).expect_err("no netem");
        assert!(
            err.to_string().contains("links.emulator = \"netem\""),
            "{err}"
        );
    }
}
