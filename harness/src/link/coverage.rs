//! Which paths and uplinks the self-check probes. A full mesh of N nodes has N(N-1) directed
//! paths (39 800 at 200 nodes); on a small machine the probe's budget of probes per second
//! cannot give each of them enough samples in a few seconds. So paths are probed in rounds:
//! in round `s` every node sends to the node `s` places after it, so each round has every
//! node send once and receive once. Rounds are spread over the shifts, and any path
//! configuration (delay, jitter, loss, reordering) no round reached is added with one path of
//! its own. Decisions only; no I/O.

use super::plan::LinkPlan;
use std::collections::BTreeMap;

/// The paths and uplinks the self-check will probe, and what that covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSelection {
    /// Directed paths `(from, to)` to probe.
    pub paths: Vec<(u32, u32)>,
    /// Rounds of shifts (0 when every path is probed).
    pub rounds: u32,
    /// Distinct path configurations in the plan, and how many the selection reaches.
    pub configurations: usize,
    pub configurations_probed: usize,
    /// Nodes whose uplinks are probed.
    pub uplinks: Vec<u32>,
    /// Rate-limited uplinks in the plan.
    pub uplinks_total: usize,
}

/// Uplinks probed per distinct (rate, queue) configuration when there are many.
pub const UPLINKS_PER_CONFIGURATION: usize = 4;
/// Below this many rate-limited uplinks, every one is probed.
pub const ALL_UPLINKS_UP_TO: usize = 8;

impl ProbeSelection {
    /// Picks at most about `path_budget` paths (more only where a configuration would
    /// otherwise go unprobed), always including n0→n1 and n1→n0 for the `ping` cross-check.
    pub fn choose(plan: &LinkPlan, path_budget: usize) -> ProbeSelection {
        let n = plan.nodes.len() as u32;
        let key = |from: u32, to: u32| format!("{:?}", plan.path(from, to));
        let all: Vec<(u32, u32)> = plan.directed_paths().map(|(f, t, _)| (f, t)).collect();
        let mut configs: BTreeMap<String, bool> =
            all.iter().map(|&(f, t)| (key(f, t), false)).collect();
        let (mut paths, rounds) = if all.len() <= path_budget.max(2) || n < 3 {
            (all, 0)
        } else {
            let k = (path_budget / n as usize).clamp(1, n as usize - 1);
            let mut shifts: Vec<u32> = (0..k)
                .map(|j| {
                    if k == 1 {
                        1
                    } else {
                        1 + (j as u64 * (n as u64 - 2) / (k as u64 - 1)) as u32
                    }
                })
                .collect();
            // n1→n0 is in the last shift; with one round, add it alone below.
            shifts.dedup();
            let mut paths: Vec<(u32, u32)> = shifts
                .iter()
                .flat_map(|&s| (0..n).map(move |i| (i, (i + s) % n)))
                .collect();
            if !paths.contains(&(1, 0)) {
                paths.push((1, 0));
            }
            (paths, shifts.len() as u32)
        };
        for &(f, t) in &paths {
            configs.insert(key(f, t), true);
        }
        for (f, t) in plan.directed_paths().map(|(f, t, _)| (f, t)) {
            if let Some(seen @ false) = configs.get_mut(&key(f, t)) {
                *seen = true;
                paths.push((f, t));
            }
        }
        let (uplinks, uplinks_total) = choose_uplinks(plan);
        ProbeSelection {
            configurations: configs.len(),
            configurations_probed: configs.values().filter(|v| **v).count(),
            paths,
            rounds,
            uplinks,
            uplinks_total,
        }
    }

    /// One sentence for reports: what was probed.
    pub fn describe(&self, paths_total: usize) -> String {
        let paths = if self.rounds == 0 {
            format!("all {paths_total} directed paths")
        } else {
            format!(
                "{} of {paths_total} directed paths, in {} round(s) in each of which every node sends once and receives once, plus one path per configuration no round reached ({} of {} configurations probed)",
                self.paths.len(),
                self.rounds,
                self.configurations_probed,
                self.configurations
            )
        };
        let uplinks = if self.uplinks_total == 0 {
            "no rate-limited uplinks".to_owned()
        } else if self.uplinks.len() == self.uplinks_total {
            format!("all {} rate-limited uplinks", self.uplinks_total)
        } else {
            format!(
                "{} of {} rate-limited uplinks (up to {UPLINKS_PER_CONFIGURATION} per configured rate and queue)",
                self.uplinks.len(),
                self.uplinks_total
            )
        };
        format!("{paths}; {uplinks}")
    }
}

/// Every rate-limited uplink when there are few, else up to
/// [`UPLINKS_PER_CONFIGURATION`] per configuration, spread over the nodes that have it.
fn choose_uplinks(plan: &LinkPlan) -> (Vec<u32>, usize) {
    let limited: Vec<_> = plan
        .nodes
        .iter()
        .filter_map(|n| n.uplink_bits_per_sec.map(|r| (n.index, (r, n.queue_us))))
        .collect();
    if limited.len() <= ALL_UPLINKS_UP_TO {
        return (limited.iter().map(|(i, _)| *i).collect(), limited.len());
    }
    let mut by_config: BTreeMap<(u64, u64), Vec<u32>> = BTreeMap::new();
    for (i, c) in &limited {
        by_config.entry(*c).or_default().push(*i);
    }
    let mut chosen: Vec<u32> = by_config
        .values()
        .flat_map(|members| {
            let take = members.len().min(UPLINKS_PER_CONFIGURATION);
            (0..take).map(move |j| members[j * members.len() / take])
        })
        .collect();
    chosen.sort_unstable();
    (chosen, limited.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::collections::BTreeSet;

    fn plan(nodes: u32, extra: &str) -> LinkPlan {
        let text = format!(
            "name = \"t\"\nseed = 1\nduration = \"2s\"\nstacks = [\"quic-tls\"]\n[topology]\nnodes = {nodes}\nuplink = \"1Gbit\"\n{extra}\n\
             [[class]]\nname = \"v\"\npriority = 1\nsize = \"200B\"\narrival = {{ process = \"constant\", rate = \"10/s\" }}\n"
        );
        let s = Scenario::parse(std::path::Path::new("t.toml"), &text, &["quic-tls"])
            .expect("valid scenario");
        LinkPlan::from_scenario(&s)
    }

    #[test]
    fn small_meshes_probe_every_path() {
        let sel = ProbeSelection::choose(&plan(4, ""), 250);
        assert_eq!(sel.paths.len(), 12);
        assert_eq!(sel.rounds, 0);
        assert_eq!(sel.uplinks, vec![0, 1, 2, 3]);
    }

    #[test]
    fn large_meshes_probe_rounds_in_which_every_node_sends_and_receives() {
        for n in [64u32, 200] {
            let sel = ProbeSelection::choose(&plan(n, ""), 250);
            assert!(sel.paths.len() <= 250 + n as usize, "{}", sel.paths.len());
            let unique: BTreeSet<_> = sel.paths.iter().collect();
            assert_eq!(unique.len(), sel.paths.len(), "no path twice");
            for i in 0..n {
                assert!(sel.paths.iter().any(|p| p.0 == i), "n{i} sends");
                assert!(sel.paths.iter().any(|p| p.1 == i), "n{i} receives");
            }
            assert!(sel.paths.contains(&(0, 1)) && sel.paths.contains(&(1, 0)));
            assert!(sel.paths.iter().all(|(f, t)| f != t && *f < n && *t < n));
            assert!(sel.rounds >= 1);
            assert_eq!(sel.configurations_probed, sel.configurations);
            assert!(sel.uplinks.len() <= UPLINKS_PER_CONFIGURATION);
            assert_eq!(sel.uplinks_total, n as usize);
        }
    }

    #[test]
    fn every_configuration_of_a_region_matrix_is_probed() {
        // Three regions, a symmetric matrix: six distinct delays among 64 nodes.
        let p = plan(
            64,
            "[regions]\nnames = [\"a\", \"b\", \"c\"]\ndelay = [[\"1ms\", \"9ms\", \"20ms\"], [\"9ms\", \"2ms\", \"30ms\"], [\"20ms\", \"30ms\", \"3ms\"]]",
        );
        let sel = ProbeSelection::choose(&p, 64);
        assert_eq!(sel.rounds, 1);
        assert_eq!(sel.configurations, 6);
        assert_eq!(sel.configurations_probed, 6);
        let delays: BTreeSet<u64> = sel
            .paths
            .iter()
            .map(|&(f, t)| p.path(f, t).delay_ns)
            .collect();
        assert_eq!(delays.len(), 6, "1, 2, 3, 9, 20, 30 ms all probed");
        assert!(sel.describe(64 * 63).contains("6 of 6 configurations"));
    }
}
