//! The measured run at the controller: waiting for every node's report while crashes
//! happen. A node the scenario crashes dies on its own (SIGKILL at its step); at its
//! `node_recover` its process starts again with its keys and rejoins. A node that dies
//! otherwise is an unscheduled crash: reported, or the repetition fails, as the scenario
//! says.

use super::{NodeEvent, NodeSet};
use crate::{
    control::{NodeReport, NodeSetup, ToController, ToNode},
    metrics::monotonic_ns,
    topology::Topology,
    workload::WorkloadPlan,
};
use anyhow::{anyhow, bail, Result};
use stackbench_core::{crash::ObservedCrash, scenario::churn::UnscheduledCrash};
use std::{os::unix::process::ExitStatusExt, time::Duration};

/// How far from its planned instant a node's SIGKILL still counts as its scheduled crash.
const CRASH_TOLERANCE: Duration = Duration::from_secs(2);

/// What the measured run produced: the surviving reports, and every crash.
pub struct RunOutcome {
    pub reports: Vec<NodeReport>,
    pub crashes: Vec<ObservedCrash>,
}

/// A recovery still to come: node, the firing that recovers it, and when.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    node: u32,
    firing: u32,
    at: Duration,
}

impl NodeSet {
    /// Waits for every node's report (a node that crashed for good has none) within
    /// `timeout`, handling crashes and recoveries on the way; `on_tick` runs every 100 ms.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_phase(
        &mut self,
        topology: &Topology,
        plan: &WorkloadPlan,
        setups: &[NodeSetup],
        start_ns: u64,
        timeout: Duration,
        kill: Option<(u32, Duration)>,
        mut on_tick: impl FnMut(),
    ) -> Result<RunOutcome> {
        let phase = "the run";
        let deadline = tokio::time::Instant::now() + timeout;
        let n = self.pids.len();
        let scheduled = plan.churn.crashes();
        let mut consumed = vec![false; scheduled.len()];
        let mut recoveries: Vec<Recovery> = scheduled
            .iter()
            .filter_map(|c| {
                c.recover.map(|(firing, at)| Recovery {
                    node: c.node,
                    firing,
                    at,
                })
            })
            .collect();
        let mut rejoining: Vec<Option<u32>> = vec![None; n];
        let mut reports: Vec<Option<NodeReport>> = (0..n).map(|_| None).collect();
        let mut expected = vec![true; n];
        let mut crashes = vec![];
        let now = || Duration::from_nanos(monotonic_ns().saturating_sub(start_ns));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut kill = kill;
        loop {
            let done = (0..n).all(|i| {
                reports[i].is_some()
                    || (!expected[i] && !recoveries.iter().any(|r| r.node == i as u32))
            });
            if done {
                break;
            }
            // Woken for the next recovery too, so a node starts again on time.
            let next_recovery = recoveries
                .iter()
                .map(|r| r.at)
                .min()
                .map(|at| {
                    Duration::from_nanos(
                        start_ns
                            .saturating_add(at.as_nanos() as u64)
                            .saturating_sub(monotonic_ns()),
                    )
                })
                .unwrap_or(Duration::from_secs(3600));
            let until_kill = kill.map_or(Duration::from_secs(3600), |(_, at)| {
                at.saturating_sub(now())
            });
            let ev = tokio::select! {
                _ = tokio::time::sleep(until_kill), if kill.is_some() => {
                    if let Some((node, _)) = kill.take() {
                        self.kill(node);
                    }
                    continue;
                }
                _ = tokio::time::sleep(next_recovery) => {
                    self.start_due(topology, &mut recoveries, &mut rejoining, &mut expected, now())?;
                    continue;
                }
                ev = self.next(deadline, phase) => ev.map_err(|e| {
                    let missing: Vec<String> = (0..n)
                        .filter(|&i| expected[i] && reports[i].is_none())
                        .map(|i| self.who(i as u32))
                        .collect();
                    anyhow!("{e} ({timeout:?}): no report from {} — hung or unreachable", missing.join(", "))
                })?,
                _ = tick.tick() => {
                    on_tick();
                    self.start_due(topology, &mut recoveries, &mut rejoining, &mut expected, now())?;
                    continue;
                }
            };
            match ev {
                NodeEvent::Connected(i, w) => self.writers[i as usize] = Some(w),
                NodeEvent::Exited(i, status, tail) => {
                    let t = now();
                    let planned = scheduled.iter().enumerate().position(|(k, c)| {
                        !consumed[k] && c.node == i && c.at.abs_diff(t) <= CRASH_TOLERANCE
                    });
                    let died = self.death(i, status, &tail, phase);
                    expected[i as usize] = false;
                    reports[i as usize] = None;
                    match planned.filter(|_| status.signal() == Some(libc::SIGKILL)) {
                        Some(k) => {
                            consumed[k] = true;
                            crashes.push(ObservedCrash {
                                node: i,
                                scheduled: true,
                                at: scheduled[k].at,
                                recovered: scheduled[k].recover.map(|(_, at)| at),
                            });
                        }
                        None if plan.churn.on_unscheduled_crash == UnscheduledCrash::Fail => {
                            bail!("{died} (the scenario says on_unscheduled_crash = \"fail\")")
                        }
                        None => {
                            eprintln!(
                                "stackbench: {died}: an unscheduled crash; the run goes on without it"
                            );
                            crashes.push(ObservedCrash {
                                node: i,
                                scheduled: false,
                                at: t,
                                recovered: None,
                            });
                            // It was not meant to stop: a later recovery would not be its.
                            recoveries.retain(|r| r.node != i);
                        }
                    }
                }
                NodeEvent::Message(i, ToController::Hello { .. }) => {
                    let setup = setups
                        .get(i as usize)
                        .ok_or_else(|| anyhow!("node {i} has no setup"))?;
                    self.send(i, &ToNode::Setup(Box::new(setup.clone())))
                        .await?;
                }
                NodeEvent::Message(i, ToController::Bound) => {
                    let firing = rejoining[i as usize].ok_or_else(|| {
                        anyhow!("{} bound an endpoint during the run unasked", self.who(i))
                    })?;
                    self.send(i, &ToNode::Rejoin { start_ns, firing }).await?;
                }
                NodeEvent::Message(i, ToController::Report(mut r)) => {
                    self.read_record_log(i, &mut r)?;
                    r.check(plan, i).map_err(|e| {
                        anyhow!("{} sent a report that cannot be used: {e}", self.who(i))
                    })?;
                    reports[i as usize] = Some(*r);
                }
                NodeEvent::Message(i, ToController::Failed { error }) => {
                    bail!("{} failed during {phase}: {error}", self.who(i))
                }
                NodeEvent::Message(i, m) => bail!(
                    "{} sent an unexpected message during {phase}: {:.120}",
                    self.who(i),
                    format!("{m:?}")
                ),
            }
        }
        Ok(RunOutcome {
            reports: reports.into_iter().flatten().collect(),
            crashes,
        })
    }

    /// Kills node `i`'s process with SIGKILL, as something outside the run might.
    fn kill(&self, i: u32) {
        if let Some(pid) = self.pids[i as usize] {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped
            // child, so it cannot have been reused by another process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    /// Starts again every node whose recovery is due by `now` and whose crash was seen.
    fn start_due(
        &mut self,
        topology: &Topology,
        recoveries: &mut Vec<Recovery>,
        rejoining: &mut [Option<u32>],
        expected: &mut [bool],
        now: Duration,
    ) -> Result<()> {
        let mut k = 0;
        while k < recoveries.len() {
            let r = recoveries[k];
            if r.at <= now && self.pids[r.node as usize].is_none() {
                recoveries.remove(k);
                self.start(topology, r.node)?;
                rejoining[r.node as usize] = Some(r.firing);
                expected[r.node as usize] = true;
            } else {
                k += 1;
            }
        }
        Ok(())
    }
}
