//! Networks whose nodes differ, as a scenario writes them: `[[mix]]` assigns stacks to nodes
//! (a node given two is dual-stack), and `[[upgrade]]` moves every node from one stack to
//! another while the workload runs. Each runs as one more entry beside `stacks`, under its
//! own name. `crate::workload::network` resolves them into what each node speaks when.

use crate::units::{Dur, Percent};
use serde::{Deserialize, Serialize};
use std::{ops::Range, time::Duration};
use toml::Spanned;

type Invalid = (Range<usize>, String);

/// A network at steady state whose nodes run different stacks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// The entry's name in results and reports.
    pub name: Spanned<String>,
    /// The stacks, in preference order, of every node no `assign` names.
    pub default: Spanned<Vec<Spanned<String>>>,
    /// Taken in order; each takes nodes no earlier one took.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assign: Vec<Assign>,
}

/// Stacks for a set of nodes: by list, by node class, or by share of all nodes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// In preference order: a node dials a peer on the first of these the peer speaks. Two
    /// make the node dual-stack.
    pub stacks: Spanned<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Spanned<Vec<Spanned<u32>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class: Option<Spanned<String>>,
    /// Of all nodes, drawn from the seed among those not yet assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Spanned<Percent>>,
}

/// How a node moves from one stack to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The node closes everything on the old stack and comes back on the new one only.
    Restart,
    /// The node first speaks both, moves each peer to the new stack as both ends speak it,
    /// and drops the old one once every peer speaks the new.
    Dual,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Restart => "restart",
            Strategy::Dual => "dual",
        }
    }
}

/// The rolling order in which nodes upgrade.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum UpgradeOrder {
    /// `"index"` (0, 1, 2, …) or `"random"` (drawn from the seed).
    Named(OrderName),
    /// Every node, each once, in this order.
    List(Vec<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderName {
    Index,
    Random,
}

fn default_order() -> Spanned<UpgradeOrder> {
    Spanned::new(0..0, UpgradeOrder::Named(OrderName::Random))
}
fn default_batch() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_grace() -> Dur {
    Dur(Duration::from_millis(500))
}

/// Every node moves from `from` to `to` while the workload runs, a batch at a time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    /// The entry's name in results and reports.
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub strategy: Strategy,
    /// When the first batch starts, from the start of sending (warm-up included).
    pub start: Spanned<Dur>,
    /// Time between batches.
    pub every: Spanned<Dur>,
    /// Nodes per batch.
    #[serde(default = "default_batch")]
    pub batch: Spanned<u32>,
    #[serde(default = "default_order")]
    pub order: Spanned<UpgradeOrder>,
    /// Dual: how long a connection replaced by one on the new stack stays open for what is
    /// still in flight on it.
    #[serde(default = "default_grace")]
    pub grace: Dur,
    /// Restart: how long the node is gone between closing the old stack and opening the new
    /// one (a process restart, loading state).
    #[serde(default)]
    pub downtime: Dur,
}

impl Upgrade {
    /// When the last batch starts, from the start of sending.
    pub fn last_batch_at(&self, nodes: u32) -> Duration {
        let batch = (*self.batch.get_ref()).max(1);
        let batches = nodes.div_ceil(batch);
        self.start.get_ref().0 + self.every.get_ref().0 * batches.saturating_sub(1)
    }
}

/// Whether a stack's tunnel is visible to the kernel (a TUN device or kernel WireGuard),
/// so that two such stacks cannot share a node's addresses and routes.
pub fn has_kernel_tunnel(stack: &str) -> bool {
    ["+wg-boringtun", "+wg-gotatun-tun", "+wg-go", "+wg-kernel"]
        .iter()
        .any(|s| stack.ends_with(s))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

/// Checks one node's stack list: known, distinct, one or two, no two kernel tunnels.
fn check_stacks(list: &Spanned<Vec<Spanned<String>>>, known: &[&str]) -> Result<(), Invalid> {
    let v = list.get_ref();
    if v.is_empty() || v.len() > 2 {
        return Err((
            list.span(),
            format!("a node runs one stack or two (dual-stack), got {}", v.len()),
        ));
    }
    for s in v {
        check_known(s, known)?;
    }
    if v.len() == 2 {
        check_pair(&v[0], &v[1])?;
    }
    Ok(())
}

fn check_known(s: &Spanned<String>, known: &[&str]) -> Result<(), Invalid> {
    if known.contains(&s.get_ref().as_str()) {
        Ok(())
    } else {
        Err((
            s.span(),
            format!(
                "unknown stack {:?}; known stacks: {}",
                s.get_ref(),
                known.join(", ")
            ),
        ))
    }
}

/// Two stacks one node runs at once.
fn check_pair(a: &Spanned<String>, b: &Spanned<String>) -> Result<(), Invalid> {
    if a.get_ref() == b.get_ref() {
        return Err((b.span(), format!("{:?} is named twice", b.get_ref())));
    }
    if has_kernel_tunnel(a.get_ref()) && has_kernel_tunnel(b.get_ref()) {
        return Err((
            b.span(),
            format!(
                "{:?} and {:?} both keep a kernel-visible tunnel on the same addresses; a node can run at most one of them (pair either with quic-tls, quic-null or a +wg-inproc stack)",
                a.get_ref(),
                b.get_ref()
            ),
        ));
    }
    Ok(())
}

/// Checks the mixes and upgrades against the known stacks, the node count, node classes and
/// the sending period. Names must differ from each other and from every stack's.
pub(super) fn validate(
    mixes: &[Mix],
    upgrades: &[Upgrade],
    known: &[&str],
    nodes: u32,
    node_classes: &[&str],
    warmup: Duration,
    send_end: Duration,
) -> Result<(), Invalid> {
    let mut names: Vec<String> = vec![];
    let mut name_ok = |n: &Spanned<String>| {
        let name = n.get_ref().as_str();
        if !is_name(name) {
            return Err((
                n.span(),
                "a mix's or upgrade's name must be non-empty and use only letters, digits, '-' and '_'".into(),
            ));
        }
        if known.contains(&name) || names.iter().any(|x| x == name) {
            return Err((
                n.span(),
                format!("{name:?} is already the name of a stack, mix or upgrade"),
            ));
        }
        names.push(name.to_owned());
        Ok(())
    };
    for m in mixes {
        name_ok(&m.name)?;
        check_stacks(&m.default, known)?;
        for a in &m.assign {
            check_stacks(&a.stacks, known)?;
            let how = [a.nodes.is_some(), a.node_class.is_some(), a.share.is_some()];
            if how.iter().filter(|x| **x).count() != 1 {
                return Err((
                    a.stacks.span(),
                    "each [[mix.assign]] takes its nodes one way: nodes = [...], node_class = \"...\" or share = \"..%\"".into(),
                ));
            }
            for n in a.nodes.iter().flat_map(|l| l.get_ref()) {
                if *n.get_ref() >= nodes {
                    return Err((
                        n.span(),
                        format!(
                            "node {} does not exist; nodes are numbered 0..{}",
                            n.get_ref(),
                            nodes - 1
                        ),
                    ));
                }
            }
            if let Some(c) = &a.node_class {
                if !node_classes.contains(&c.get_ref().as_str()) {
                    return Err((
                        c.span(),
                        format!(
                            "no [[node_class]] is called {:?}{}",
                            c.get_ref(),
                            if node_classes.is_empty() {
                                String::new()
                            } else {
                                format!("; there are: {}", node_classes.join(", "))
                            }
                        ),
                    ));
                }
            }
            if let Some(s) = &a.share {
                if !(0.0..=1.0).contains(&s.get_ref().0) {
                    return Err((s.span(), "share must be between 0% and 100%".into()));
                }
            }
        }
    }
    for u in upgrades {
        name_ok(&u.name)?;
        check_known(&u.from, known)?;
        check_known(&u.to, known)?;
        check_pair(&u.from, &u.to)?;
        if *u.batch.get_ref() == 0 {
            return Err((u.batch.span(), "batch must be at least 1".into()));
        }
        let start = u.start.get_ref().0;
        if start <= warmup {
            return Err((
                u.start.span(),
                format!(
                    "the upgrade must start after the warm-up ({}), so that steady state before it is measured",
                    Dur(warmup)
                ),
            ));
        }
        let last = u.last_batch_at(nodes);
        if last >= send_end {
            return Err((
                u.every.span(),
                format!(
                    "the last batch would start at {}, after sending stops at {}: start earlier, pace faster (every, batch) or lengthen duration",
                    Dur(last),
                    Dur(send_end)
                ),
            ));
        }
        if let UpgradeOrder::List(list) = u.order.get_ref() {
            let mut seen = vec![false; nodes as usize];
            for &i in list {
                if i >= nodes {
                    return Err((
                        u.order.span(),
                        format!(
                            "node {i} does not exist; nodes are numbered 0..{}",
                            nodes - 1
                        ),
                    ));
                }
                if std::mem::replace(&mut seen[i as usize], true) {
                    return Err((u.order.span(), format!("node {i} is listed twice")));
                }
            }
            if list.len() != nodes as usize {
                return Err((
                    u.order.span(),
                    format!(
                        "the order lists {} nodes; it must list every node (0..{}) once",
                        list.len(),
                        nodes - 1
                    ),
                ));
            }
        }
    }
    Ok(())
}
