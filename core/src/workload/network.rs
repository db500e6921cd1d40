//! Which stacks each node speaks, and when that changes: the networks a scenario runs.
//! A network is one stack on every node (each of `stacks`), a `[[mix]]` at steady state, or
//! an `[[upgrade]]` that moves every node from one stack to another while the workload runs.
//!
//! Each stack a network uses gets a slot: its own endpoint, ports and addresses at every
//! node. Every decision about who dials whom on which stack is made here, from the plan.

use super::WorkloadPlan;
use crate::scenario::{
    network::{has_kernel_tunnel, OrderName, Strategy, UpgradeOrder},
    Scenario,
};
use rand::{seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};
use std::{ops::Range, time::Duration};

/// A slot number: an index into [`NetworkPlan::stacks`].
pub type Slot = u8;

/// The stacks of one network run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The entry's name in results: the stack's, or the mix's or upgrade's.
    pub name: String,
    /// Every stack some node runs, one per slot; kernel-visible tunnels take the lowest
    /// slots, so a slot's port offset never lands on a tunnel's fixed port.
    pub stacks: Vec<String>,
    /// Per node, the slots it speaks at the start, in preference order.
    pub speaks: Vec<Vec<Slot>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradePlan>,
}

/// A rolling move of every node from one slot to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradePlan {
    pub from: Slot,
    pub to: Slot,
    pub strategy: Strategy,
    /// When each node (by index) starts its upgrade, from the start of sending.
    pub at: Vec<Duration>,
    /// Each node's place in the rolling order: a node dials, on the new stack, the
    /// neighbours that upgraded before it; later ones dial it.
    pub rank: Vec<u32>,
    pub grace: Duration,
    pub downtime: Duration,
}

impl Default for NetworkPlan {
    /// An unnamed single-stack network of no nodes; [`NetworkPlan::single`] makes real ones.
    fn default() -> Self {
        NetworkPlan::single("", 0)
    }
}

type Invalid = (Range<usize>, String);

impl NetworkPlan {
    /// Every node runs `stack`.
    pub fn single(stack: &str, nodes: u32) -> NetworkPlan {
        NetworkPlan {
            name: stack.to_owned(),
            stacks: vec![stack.to_owned()],
            speaks: vec![vec![0]; nodes as usize],
            upgrade: None,
        }
    }

    /// Whether every node runs the same one stack throughout.
    pub fn is_single(&self) -> bool {
        self.stacks.len() == 1
    }

    /// The networks of a validated scenario, in run order: its stacks, mixes, then
    /// upgrades. Fails, pointing at the mix, where two neighbours share no stack.
    pub fn variants(s: &Scenario, plan: &WorkloadPlan) -> Result<Vec<NetworkPlan>, Invalid> {
        let nodes = s.node_count();
        let mut out: Vec<NetworkPlan> = s
            .stack_names()
            .iter()
            .map(|n| NetworkPlan::single(n, nodes))
            .collect();
        let classes = crate::link::LinkPlan::from_scenario(s);
        for m in &s.mixes {
            let names = |l: &toml::Spanned<Vec<toml::Spanned<String>>>| -> Vec<String> {
                l.get_ref().iter().map(|x| x.get_ref().clone()).collect()
            };
            let mut of: Vec<Option<Vec<String>>> = vec![None; nodes as usize];
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed ^ 0x6d69_7865_6400_0000);
            for a in &m.assign {
                let stacks = names(&a.stacks);
                let free: Vec<u32> = (0..nodes).filter(|i| of[*i as usize].is_none()).collect();
                let take: Vec<u32> = if let Some(list) = &a.nodes {
                    let mut t = vec![];
                    for n in list.get_ref() {
                        if !free.contains(n.get_ref()) {
                            return Err((
                                n.span(),
                                format!("node {} is already assigned", n.get_ref()),
                            ));
                        }
                        t.push(*n.get_ref());
                    }
                    t
                } else if let Some(c) = &a.node_class {
                    free.iter()
                        .copied()
                        .filter(|i| classes.nodes[*i as usize].class.as_ref() == Some(c.get_ref()))
                        .collect()
                } else {
                    // Validated: exactly one way is given.
                    let share = a.share.as_ref().map_or(0.0, |p| p.get_ref().0);
                    let want = (share * nodes as f64).round() as usize;
                    let mut pool = free.clone();
                    pool.shuffle(&mut rng);
                    if want > pool.len() {
                        let span = a.share.as_ref().map_or(0..0, |p| p.span());
                        return Err((
                            span,
                            format!(
                                "this share is {want} nodes, but only {} are left unassigned",
                                pool.len()
                            ),
                        ));
                    }
                    pool.truncate(want);
                    pool
                };
                for i in take {
                    of[i as usize] = Some(stacks.clone());
                }
            }
            let default = names(&m.default);
            let per_node: Vec<Vec<String>> = of
                .into_iter()
                .map(|o| o.unwrap_or_else(|| default.clone()))
                .collect();
            let net = NetworkPlan::from_names(m.name.get_ref(), &per_node, None);
            let tunnels: Vec<&str> = net
                .stacks
                .iter()
                .map(String::as_str)
                .filter(|s| has_kernel_tunnel(s))
                .collect();
            if tunnels.len() > 1 {
                return Err((
                    m.name.span(),
                    format!(
                        "mix {:?} uses {}: each keeps a kernel-visible tunnel on the same addresses in every namespace, so one network can use at most one of them",
                        m.name.get_ref(),
                        tunnels.join(" and ")
                    ),
                ));
            }
            if let Some((u, v)) = net.first_disjoint_edge(plan) {
                return Err((
                    m.name.span(),
                    format!(
                        "mix {:?}: nodes {u} ({}) and {v} ({}) are neighbours but share no stack; make one of them dual-stack",
                        m.name.get_ref(),
                        per_node[u as usize].join(", "),
                        per_node[v as usize].join(", ")
                    ),
                ));
            }
            out.push(net);
        }
        for u in &s.upgrades {
            let from = u.from.get_ref().clone();
            let to = u.to.get_ref().clone();
            let per_node = vec![vec![from.clone()]; nodes as usize];
            let order: Vec<u32> = match u.order.get_ref() {
                UpgradeOrder::Named(OrderName::Index) => (0..nodes).collect(),
                UpgradeOrder::Named(OrderName::Random) => {
                    let mut o: Vec<u32> = (0..nodes).collect();
                    let mut rng =
                        rand_chacha::ChaCha8Rng::seed_from_u64(s.seed ^ 0x0075_7067_7261_6465);
                    o.shuffle(&mut rng);
                    o
                }
                UpgradeOrder::List(l) => l.clone(),
            };
            let batch = (*u.batch.get_ref()).max(1) as usize;
            let mut at = vec![Duration::ZERO; nodes as usize];
            let mut rank = vec![0; nodes as usize];
            for (k, n) in order.iter().enumerate() {
                at[*n as usize] = u.start.get_ref().0 + u.every.get_ref().0 * (k / batch) as u32;
                rank[*n as usize] = k as u32;
            }
            let mut net = NetworkPlan::from_names(u.name.get_ref(), &per_node, Some(&to));
            let slot = |name: &str| net.slot_of(name).unwrap_or_default();
            net.upgrade = Some(UpgradePlan {
                from: slot(&from),
                to: slot(&to),
                strategy: u.strategy,
                at,
                rank,
                grace: u.grace.0,
                downtime: u.downtime.0,
            });
            out.push(net);
        }
        Ok(out)
    }

    /// A network from each node's stack names; `extra` is a stack no node speaks yet.
    fn from_names(name: &str, per_node: &[Vec<String>], extra: Option<&str>) -> NetworkPlan {
        let mut stacks: Vec<String> = vec![];
        for s in per_node.iter().flatten().map(String::as_str).chain(extra) {
            if !stacks.iter().any(|x| x == s) {
                stacks.push(s.to_owned());
            }
        }
        // Kernel-visible tunnels first (stable otherwise).
        stacks.sort_by_key(|s| !has_kernel_tunnel(s));
        let slot = |s: &String| stacks.iter().position(|x| x == s).unwrap_or_default() as Slot;
        NetworkPlan {
            name: name.to_owned(),
            speaks: per_node
                .iter()
                .map(|l| l.iter().map(slot).collect())
                .collect(),
            stacks,
            upgrade: None,
        }
    }

    pub fn slot_of(&self, stack: &str) -> Option<Slot> {
        self.stacks
            .iter()
            .position(|s| s == stack)
            .map(|p| p as Slot)
    }

    /// The stacks `dialler` may dial `peer` on at the start, in its order of preference:
    /// those of its own the peer speaks too. It falls back along them.
    pub fn shared_slots(&self, dialler: u32, peer: u32) -> Vec<Slot> {
        let (Some(mine), Some(theirs)) = (
            self.speaks.get(dialler as usize),
            self.speaks.get(peer as usize),
        ) else {
            return vec![];
        };
        mine.iter()
            .copied()
            .filter(|s| theirs.contains(s))
            .collect()
    }

    /// The stack `dialler` dials `peer` on first: the first of its own it shares.
    pub fn dial_slot(&self, dialler: u32, peer: u32) -> Option<Slot> {
        self.shared_slots(dialler, peer).first().copied()
    }

    fn first_disjoint_edge(&self, plan: &WorkloadPlan) -> Option<(u32, u32)> {
        plan.fanout
            .graph
            .edges()
            .find(|(u, v)| self.dial_slot(*u, *v).is_none())
    }

    /// The neighbours `node` dials on the new stack when it upgrades: those earlier in the
    /// rolling order (they already speak it). The later ones dial `node` in their turn.
    pub fn upgrade_dials(&self, plan: &WorkloadPlan, node: u32) -> Vec<u32> {
        let Some(u) = &self.upgrade else {
            return vec![];
        };
        plan.fanout
            .graph
            .neighbours(node)
            .iter()
            .copied()
            .filter(|p| u.rank[*p as usize] < u.rank[node as usize])
            .collect()
    }

    /// The slots `node` speaks `t` after the start, as planned: a restarting node speaks
    /// nothing during its downtime; a dual node speaks both from its turn on (it drops the
    /// old only once no neighbour needs it).
    pub fn speaks_at(&self, node: u32, t: Duration) -> Vec<Slot> {
        let start = self.speaks.get(node as usize).cloned().unwrap_or_default();
        let Some(u) = &self.upgrade else {
            return start;
        };
        let at = u.at[node as usize];
        match u.strategy {
            _ if t < at => start,
            Strategy::Restart if Some(t) < self.new_stack_up_at(node) => vec![],
            Strategy::Restart => vec![u.to],
            Strategy::Dual => vec![u.to, u.from],
        }
    }

    /// When `node`'s new stack is up, as planned (from the start of sending): its turn,
    /// plus its downtime when it restarts. `None` without an upgrade.
    pub fn new_stack_up_at(&self, node: u32) -> Option<Duration> {
        let u = self.upgrade.as_ref()?;
        let at = *u.at.get(node as usize)?;
        Some(match u.strategy {
            Strategy::Restart => at + u.downtime,
            Strategy::Dual => at,
        })
    }

    /// How many other nodes an object from `origin` at `t` can reach, relayed along edges
    /// whose two ends speak a stack in common then: what the plan allows at best, before any
    /// stack's cost (a partition model of the upgrade).
    pub fn reachable(&self, plan: &WorkloadPlan, origin: u32, t: Duration) -> u32 {
        let speaks: Vec<Vec<Slot>> = (0..plan.nodes).map(|n| self.speaks_at(n, t)).collect();
        let mut seen = vec![false; plan.nodes as usize];
        let mut todo = vec![origin];
        seen[origin as usize] = true;
        let mut reached = 0;
        while let Some(n) = todo.pop() {
            for &p in plan.fanout.graph.neighbours(n) {
                let linked = speaks[n as usize]
                    .iter()
                    .any(|s| speaks[p as usize].contains(s));
                if linked && !std::mem::replace(&mut seen[p as usize], true) {
                    reached += 1;
                    todo.push(p);
                }
            }
        }
        reached
    }

    /// How many nodes speak which stacks at the start, e.g. "8 × quic-tls, 8 ×
    /// quic-null+wg-inproc + quic-tls".
    pub fn composition(&self) -> String {
        let mut groups: Vec<(Vec<Slot>, u32)> = vec![];
        for s in &self.speaks {
            match groups.iter_mut().find(|(g, _)| g == s) {
                Some((_, n)) => *n += 1,
                None => groups.push((s.clone(), 1)),
            }
        }
        groups
            .iter()
            .map(|(g, n)| {
                let names: Vec<&str> = g
                    .iter()
                    .map(|s| self.stacks[*s as usize].as_str())
                    .collect();
                format!("{n} × {}", names.join(" + "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::path::Path;

    const KNOWN: &[&str] = &[
        "quic-tls",
        "quic-null",
        "quic-null+wg-inproc",
        "quic-tls+wg-inproc",
        "quic-null+wg-boringtun",
        "quic-null+wg-go",
    ];

    fn scenario(extra: &str) -> Result<Scenario, String> {
        let text = format!(
            "name = \"t\"\nseed = 7\nduration = \"10s\"\nwarmup = \"1s\"\nstacks = []\n\
             [topology]\nnodes = 8\nfanout = \"gossip\"\ndegree = 3\n\
             [[class]]\nname = \"vote\"\npriority = 1\nsize = \"200B\"\narrival = {{ process = \"constant\", rate = \"10/s\" }}\n{extra}"
        );
        Scenario::parse(Path::new("t.toml"), &text, KNOWN).map_err(|e| e.to_string())
    }

    fn variants(s: &Scenario) -> Vec<NetworkPlan> {
        let plan = WorkloadPlan::from_scenario(s).expect("plan");
        NetworkPlan::variants(s, &plan).expect("variants")
    }

    #[test]
    fn a_mix_assigns_by_list_and_share_and_leaves_the_rest_default() {
        let s = scenario(
            "[[mix]]\nname = \"half\"\ndefault = [\"quic-tls\"]\n\
             [[mix.assign]]\nstacks = [\"quic-null+wg-inproc\", \"quic-tls\"]\nnodes = [0, 1]\n\
             [[mix.assign]]\nstacks = [\"quic-null+wg-inproc\", \"quic-tls\"]\nshare = \"25%\"\n",
        )
        .expect("valid");
        let v = variants(&s);
        assert_eq!(v.len(), 1);
        let m = &v[0];
        assert_eq!(m.name, "half");
        let dual: Vec<usize> = (0..8).filter(|i| m.speaks[*i].len() == 2).collect();
        assert_eq!(dual.len(), 4, "{:?}", m.speaks);
        assert!(dual.contains(&0) && dual.contains(&1));
        // Dual nodes prefer the tunnel and fall back to TLS with a TLS-only peer.
        let tls = m.slot_of("quic-tls").expect("slot");
        let wg = m.slot_of("quic-null+wg-inproc").expect("slot");
        assert_eq!(m.dial_slot(0, 1), Some(wg));
        assert_eq!(m.shared_slots(0, 1), vec![wg, tls], "falling back to TLS");
        let single = (0..8u32)
            .find(|i| m.speaks[*i as usize].len() == 1)
            .expect("a single");
        assert_eq!(m.dial_slot(0, single), Some(tls));
        assert_eq!(m.dial_slot(single, 0), Some(tls));
        assert!(
            m.composition()
                .contains("4 × quic-null+wg-inproc + quic-tls"),
            "{}",
            m.composition()
        );
    }

    #[test]
    fn a_mix_whose_neighbours_share_no_stack_is_refused_at_its_name() {
        let e = scenario(
            "[[mix]]\nname = \"split\"\ndefault = [\"quic-tls\"]\n\
             [[mix.assign]]\nstacks = [\"quic-null+wg-inproc\"]\nshare = \"50%\"\n",
        )
        .expect_err("disjoint");
        assert!(e.contains("t.toml:") && e.contains("share no stack"), "{e}");
    }

    #[test]
    fn two_kernel_tunnels_on_one_node_are_refused() {
        let e = scenario(
            "[[mix]]\nname = \"m\"\ndefault = [\"quic-null+wg-boringtun\", \"quic-null+wg-go\"]\n",
        )
        .expect_err("two tunnels");
        assert!(e.contains("kernel-visible tunnel"), "{e}");
    }

    #[test]
    fn an_upgrade_ranks_every_node_once_and_paces_batches() {
        let s = scenario(
            "[[upgrade]]\nname = \"up\"\nfrom = \"quic-tls\"\nto = \"quic-null+wg-inproc\"\n\
             strategy = \"dual\"\nstart = \"2s\"\nevery = \"500ms\"\nbatch = 2\norder = \"index\"\n",
        )
        .expect("valid");
        let v = variants(&s);
        let u = v[0].upgrade.as_ref().expect("upgrade");
        assert_eq!(v[0].stacks[u.from as usize], "quic-tls");
        assert_eq!(v[0].stacks[u.to as usize], "quic-null+wg-inproc");
        assert_eq!(u.at[0], Duration::from_secs(2));
        assert_eq!(u.at[1], Duration::from_secs(2));
        assert_eq!(u.at[7], Duration::from_millis(3500));
        assert_eq!(u.at.iter().max(), Some(&Duration::from_millis(3500)));
        // Everyone starts on the old stack only.
        assert!(v[0].speaks.iter().all(|s| s == &vec![u.from]));
        // Each edge is dialled on the new stack exactly once, by its later node.
        let plan = WorkloadPlan::from_scenario(&s).expect("plan");
        let mut dialled = 0;
        for n in 0..8 {
            for p in v[0].upgrade_dials(&plan, n) {
                assert!(u.rank[p as usize] < u.rank[n as usize]);
                assert!(!v[0].upgrade_dials(&plan, p).contains(&n));
                dialled += 1;
            }
        }
        assert_eq!(dialled, plan.fanout.graph.edges().count());
        // Dual never partitions the network; everyone reaches everyone throughout.
        for t in [0, 2000, 2500, 3600].map(Duration::from_millis) {
            assert_eq!(v[0].reachable(&plan, 0, t), 7);
        }
    }

    #[test]
    fn a_rolling_restart_partitions_the_network_until_neighbours_follow() {
        let s = scenario(
            "[[upgrade]]\nname = \"up\"\nfrom = \"quic-tls\"\nto = \"quic-null+wg-inproc\"\n\
             strategy = \"restart\"\nstart = \"2s\"\nevery = \"1s\"\norder = \"index\"\ndowntime = \"100ms\"\n",
        )
        .expect("valid");
        let plan = WorkloadPlan::from_scenario(&s).expect("plan");
        let net = &variants(&s)[0];
        let ms = Duration::from_millis;
        assert_eq!(net.reachable(&plan, 0, ms(1000)), 7, "before: one network");
        assert_eq!(net.reachable(&plan, 0, ms(2050)), 0, "node 0 is down");
        assert_eq!(
            net.reachable(&plan, 0, ms(2500)),
            0,
            "alone on the new stack"
        );
        assert_eq!(
            net.reachable(&plan, 1, ms(2500)),
            6,
            "the others still have each other"
        );
        assert_eq!(
            net.reachable(&plan, 0, ms(9500)),
            7,
            "after: one network again"
        );
    }

    #[test]
    fn upgrade_mistakes_name_their_place() {
        let base = "[[upgrade]]\nname = \"up\"\nfrom = \"quic-tls\"\nto = \"quic-null+wg-inproc\"\nstrategy = \"restart\"\n";
        let late = scenario(&format!("{base}start = \"9s\"\nevery = \"1s\"\n")).expect_err("late");
        assert!(late.contains("after sending stops"), "{late}");
        let early =
            scenario(&format!("{base}start = \"500ms\"\nevery = \"1s\"\n")).expect_err("early");
        assert!(early.contains("after the warm-up"), "{early}");
        let list = scenario(&format!(
            "{base}start = \"2s\"\nevery = \"100ms\"\norder = [0, 1, 1]\n"
        ))
        .expect_err("twice");
        assert!(list.contains("listed twice"), "{list}");
        let same = scenario(
            "[[upgrade]]\nname = \"quic-tls\"\nfrom = \"quic-tls\"\nto = \"quic-null\"\nstrategy = \"dual\"\nstart = \"2s\"\nevery = \"1s\"\n",
        )
        .expect_err("name");
        assert!(same.contains("already the name"), "{same}");
        let churn = scenario(&format!(
            "{base}start = \"2s\"\nevery = \"100ms\"\n[[event]]\nkind = \"node_restart\"\nat = \"3s\"\nnode = 1\n"
        ))
        .expect_err("churn");
        assert!(churn.contains("cannot yet be combined"), "{churn}");
    }
}
