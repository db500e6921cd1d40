//! Scenario files: typed, unit-resolved, validated descriptions of one experiment.
//!
//! A scenario names the nodes and their links, the traffic classes of the prioritized
//! broadcast, timings, the seed and the stacks to compare. Every error names the file,
//! line and column of the value at fault.

pub mod churn;
mod error;
pub mod links;
pub mod network;

pub use error::{Located, ScenarioError};
pub use links::{
    EmulatorChoice, GilbertElliott, JitterDistribution, Links, NodeClass, Regions, Tolerance,
};

use crate::units::{BitRate, Dur, EventRate, Percent, SizeDist};
use serde::{Deserialize, Serialize};
use std::{collections::HashSet, path::Path, time::Duration};
use toml::Spanned;

/// Smallest object the workload can send: the object header must fit.
pub const MIN_OBJECT_SIZE: u64 = crate::workload::HEADER_LEN as u64;
/// Largest node count the namespaces' address plan supports.
pub const MAX_NODES: u32 = 200;
/// Largest node count a simulated network (Shadow) is offered.
pub const MAX_SIMULATED_NODES: u32 = 10_000;

/// Where a scenario's network will be: the node count allowed depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkEngine {
    /// Namespaces on this host (`run`).
    Namespaces,
    /// A network simulator (`shadow`).
    Simulated,
}

fn default_warmup() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(1)))
}
fn default_drain() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_repetitions() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// One experiment, as written in `scenarios/*.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name used in results and reports.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Seeds every random choice of the workload, so runs are repeatable.
    pub seed: u64,
    /// Measured sending time, after the warm-up.
    pub duration: Spanned<Dur>,
    /// Sending time before measurement starts; objects sent in it are not recorded.
    #[serde(default = "default_warmup")]
    pub warmup: Spanned<Dur>,
    /// How long receivers may still finish objects after sending stops.
    #[serde(default = "default_drain")]
    pub drain: Dur,
    #[serde(default = "default_repetitions")]
    pub repetitions: Spanned<u32>,
    /// Stack names (see `stackbench list`): each runs as a network of its own.
    pub stacks: Spanned<Vec<Spanned<String>>>,
    /// Networks whose nodes run different stacks, each run beside `stacks`.
    #[serde(default, rename = "mix", skip_serializing_if = "Vec::is_empty")]
    pub mixes: Vec<network::Mix>,
    /// Networks that move from one stack to another while the workload runs.
    #[serde(default, rename = "upgrade", skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<network::Upgrade>,
    pub topology: Topology,
    /// Delay, jitter, loss and reordering on the paths between nodes.
    #[serde(default = "default_links")]
    pub links: Spanned<Links>,
    /// Regions with a latency matrix between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Regions>,
    /// A mix of node uplinks, e.g. 20% at 1Gbit and 80% at 50Mbit.
    #[serde(default, rename = "node_class", skip_serializing_if = "Vec::is_empty")]
    pub node_classes: Vec<NodeClass>,
    #[serde(rename = "class")]
    pub classes: Vec<Class>,
    /// QUIC settings every stack shares.
    #[serde(default)]
    pub transport: crate::transport::Transport,
    /// How churn's cost is measured.
    #[serde(default)]
    pub churn: churn::Churn,
    /// Churn on the workload's timeline: peers, nodes and interfaces coming and going.
    #[serde(default, rename = "event", skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<churn::Event>,
}

fn default_links() -> Spanned<Links> {
    Spanned::new(0..0, Links::default())
}

/// Nodes and the links between them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub nodes: Spanned<u32>,
    #[serde(default)]
    pub fanout: Fanout,
    /// Under gossip: the peers each node keeps (D), on a seeded random regular graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degree: Option<Spanned<u32>>,
    /// Under gossip with regions: the share of each node's peers outside its own region
    /// (a region-aware graph); absent means peers are drawn regardless of region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_region: Option<Spanned<Percent>>,
    /// Egress rate limit of every node's link to the switch; none means line rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<BitRate>,
    /// How much the uplink's rate limiter may queue, as time at the uplink rate. Loss-based
    /// congestion control keeps this queue full, so it bounds what priority cannot fix.
    #[serde(default = "default_queue")]
    pub queue: Dur,
}

fn default_queue() -> Dur {
    Dur(Duration::from_millis(20))
}

/// How an object spreads from its origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fanout {
    /// The origin sends each object to every other node (full mesh).
    #[default]
    Direct,
    /// Each node relays an object the first time it sees it to its peers on a graph of
    /// degree `topology.degree`; connections exist only along the graph's edges.
    Gossip,
}

/// One traffic class of the broadcast.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: Spanned<String>,
    /// Higher is sent first (quinn `SendStream::set_priority`).
    pub priority: i32,
    pub size: Spanned<SizeDist>,
    pub arrival: Arrival,
    /// Under gossip: how long a node checks an object of this class before it relays it
    /// (a block is verified before relay). The node's own receipt is not delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Dur>,
    /// Node indices that originate this class; absent means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<Spanned<u32>>>,
}

/// When objects of a class are created at each origin.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(tag = "process", rename_all = "lowercase", deny_unknown_fields)]
pub enum Arrival {
    /// Evenly spaced, open loop.
    Constant { rate: EventRate },
    /// Exponential gaps, open loop.
    Poisson { rate: EventRate },
    /// Bulk background load: keeps `outstanding` objects in flight to each peer (closed loop),
    /// saturating whatever capacity the higher classes leave.
    Backlog { outstanding: u32 },
}

impl Arrival {
    pub fn is_backlog(&self) -> bool {
        matches!(self, Arrival::Backlog { .. })
    }
}

impl Class {
    /// Whether node `node` originates this class.
    pub fn originates_at(&self, node: u32) -> bool {
        self.origins
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| *n.get_ref() == node))
    }
}

impl Scenario {
    /// Reads, parses and validates a scenario file; `known_stacks` are the valid stack names.
    pub fn load(path: &Path, known_stacks: &[&str]) -> Result<Scenario, ScenarioError> {
        Self::load_for(path, known_stacks, NetworkEngine::Namespaces)
    }

    /// [`Scenario::load`] for a network on `engine`.
    pub fn load_for(
        path: &Path,
        known_stacks: &[&str],
        engine: NetworkEngine,
    ) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_for(path, &text, known_stacks, engine)
    }

    /// Parses and validates scenario text; `path` is only used in messages.
    pub fn parse(
        path: &Path,
        text: &str,
        known_stacks: &[&str],
    ) -> Result<Scenario, ScenarioError> {
        Self::parse_for(path, text, known_stacks, NetworkEngine::Namespaces)
    }

    /// [`Scenario::parse`] for a network on `engine`.
    pub fn parse_for(
        path: &Path,
        text: &str,
        known_stacks: &[&str],
        engine: NetworkEngine,
    ) -> Result<Scenario, ScenarioError> {
        let at = |span: Option<std::ops::Range<usize>>, msg: String| {
            ScenarioError::Invalid(Located::new(path.to_owned(), text, span, msg))
        };
        let scenario: Scenario = toml::from_str(text)
            .map_err(|e| at(e.span(), e.message().trim().replace('\n', "; ")))?;
        scenario
            .validate(known_stacks, engine)
            .map_err(|(span, msg)| at(Some(span), msg))?;
        // The gossip graph is drawn from the seed; a shape that has none is the degree's
        // fault (or the outside share's).
        let plan = match crate::workload::WorkloadPlan::from_scenario(&scenario) {
            Ok(plan) => plan,
            Err(e) => {
                let span = scenario.topology.degree.as_ref().map(|d| d.span());
                return Err(at(span, e.to_string()));
            }
        };
        // A mix must leave every pair of neighbours a stack in common.
        crate::workload::network::NetworkPlan::variants(&scenario, &plan)
            .map_err(|(span, msg)| at(Some(span), msg))?;
        Ok(scenario)
    }

    fn validate(
        &self,
        known_stacks: &[&str],
        engine: NetworkEngine,
    ) -> Result<(), (std::ops::Range<usize>, String)> {
        let nodes = &self.topology.nodes;
        let (max, elsewhere) = match engine {
            NetworkEngine::Namespaces => (
                MAX_NODES,
                format!(" in namespaces; up to {MAX_SIMULATED_NODES} run on a simulated network (stackbench shadow)"),
            ),
            NetworkEngine::Simulated => (MAX_SIMULATED_NODES, String::new()),
        };
        if !(2..=max).contains(nodes.get_ref()) {
            return Err((
                nodes.span(),
                format!(
                    "topology.nodes must be between 2 and {max}{elsewhere}, got {}",
                    nodes.get_ref()
                ),
            ));
        }
        if self.duration.get_ref().0.is_zero() {
            return Err((self.duration.span(), "duration must be above zero".into()));
        }
        if self.warmup.get_ref().0 >= self.duration.get_ref().0 {
            return Err((
                self.warmup.span(),
                format!(
                    "warmup ({}) must be shorter than duration ({})",
                    self.warmup.get_ref(),
                    self.duration.get_ref()
                ),
            ));
        }
        if *self.repetitions.get_ref() == 0 {
            return Err((
                self.repetitions.span(),
                "repetitions must be at least 1".into(),
            ));
        }
        if self.stacks.get_ref().is_empty() && self.mixes.is_empty() && self.upgrades.is_empty() {
            return Err((
                self.stacks.span(),
                "stacks must name at least one stack (or the scenario must have a [[mix]] or an [[upgrade]])".into(),
            ));
        }
        for s in self.stacks.get_ref() {
            if !known_stacks.contains(&s.get_ref().as_str()) {
                return Err((
                    s.span(),
                    format!(
                        "unknown stack {:?}; known stacks: {}",
                        s.get_ref(),
                        known_stacks.join(", ")
                    ),
                ));
            }
        }
        links::validate(
            self.links.get_ref(),
            self.regions.as_ref(),
            &self.node_classes,
            *nodes.get_ref(),
            self.links.span(),
        )?;
        self.transport.validate()?;
        self.validate_fanout()?;
        let classes: Vec<&str> = self
            .node_classes
            .iter()
            .map(|c| c.name.get_ref().as_str())
            .collect();
        network::validate(
            &self.mixes,
            &self.upgrades,
            known_stacks,
            *nodes.get_ref(),
            &classes,
            self.warmup.get_ref().0,
            self.warmup.get_ref().0 + self.duration.get_ref().0,
        )?;
        if let (Some(e), true) = (
            self.events.first(),
            !self.mixes.is_empty() || !self.upgrades.is_empty(),
        ) {
            return Err((
                e.at.span(),
                "[[event]] churn cannot yet be combined with [[mix]] or [[upgrade]] in one scenario; put them in scenarios of their own".into(),
            ));
        }
        churn::validate(
            &self.events,
            &self.churn,
            *nodes.get_ref(),
            self.warmup.get_ref().0 + self.duration.get_ref().0,
        )?;
        if self.classes.is_empty() {
            return Err((0..0, "at least one [[class]] is required".into()));
        }
        if self.classes.len() > u8::MAX as usize {
            return Err((0..0, "at most 255 classes are supported".into()));
        }
        let mut names = HashSet::new();
        for c in &self.classes {
            let name = c.name.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err((
                    c.name.span(),
                    "class name must be non-empty and use only letters, digits, '-' and '_'".into(),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err((c.name.span(), format!("duplicate class name {name:?}")));
            }
            let size = c.size.get_ref();
            if size.min.0 < MIN_OBJECT_SIZE || size.max.0 > u32::MAX as u64 {
                return Err((
                    c.size.span(),
                    format!(
                        "object size must be between {MIN_OBJECT_SIZE}B (the object header) and 4GiB, got {size}"
                    ),
                ));
            }
            if let Arrival::Backlog { outstanding: 0 } = c.arrival {
                return Err((
                    c.name.span(),
                    format!("class {name:?}: backlog outstanding must be at least 1"),
                ));
            }
            for o in c.origins.iter().flatten() {
                if *o.get_ref() >= *nodes.get_ref() {
                    return Err((
                        o.span(),
                        format!(
                            "origin node {} does not exist; nodes are numbered 0..{}",
                            o.get_ref(),
                            nodes.get_ref() - 1
                        ),
                    ));
                }
            }
            if c.origins.as_ref().is_some_and(Vec::is_empty) {
                return Err((
                    c.name.span(),
                    format!("class {name:?}: origins is empty; omit it to mean every node"),
                ));
            }
        }
        Ok(())
    }

    fn validate_fanout(&self) -> Result<(), (std::ops::Range<usize>, String)> {
        let t = &self.topology;
        let nodes = *t.nodes.get_ref();
        match (t.fanout, &t.degree) {
            (Fanout::Direct, Some(d)) => Err((
                d.span(),
                "topology.degree applies to fanout = \"gossip\" only".into(),
            )),
            (Fanout::Direct, None) => match (
                &t.outside_region,
                self.classes.iter().find(|c| c.validate.is_some()),
            ) {
                (Some(o), _) => Err((
                    o.span(),
                    "topology.outside_region applies to fanout = \"gossip\" only".into(),
                )),
                (None, Some(c)) => Err((
                    c.name.span(),
                    format!(
                        "class {:?}: validate applies to fanout = \"gossip\" only",
                        c.name.get_ref()
                    ),
                )),
                (None, None) => Ok(()),
            },
            (Fanout::Gossip, None) => Err((
                t.nodes.span(),
                "fanout = \"gossip\" needs topology.degree (the peers each node keeps)".into(),
            )),
            (Fanout::Gossip, Some(d)) => {
                let degree = *d.get_ref();
                if degree < 2 || degree >= nodes {
                    return Err((
                        d.span(),
                        format!(
                            "topology.degree must be between 2 and nodes - 1 ({}), got {degree}",
                            nodes - 1
                        ),
                    ));
                }
                if (nodes * degree) % 2 == 1 {
                    return Err((
                        d.span(),
                        format!("nodes × degree must be even for a regular graph ({nodes} × {degree} is odd)"),
                    ));
                }
                match (&t.outside_region, &self.regions) {
                    (Some(o), None) => {
                        Err((o.span(), "topology.outside_region needs [regions]".into()))
                    }
                    _ => Ok(()),
                }?;
                Ok(())
            }
        }
    }

    pub fn node_count(&self) -> u32 {
        *self.topology.nodes.get_ref()
    }

    pub fn stack_names(&self) -> Vec<String> {
        self.stacks
            .get_ref()
            .iter()
            .map(|s| s.get_ref().clone())
            .collect()
    }

    /// The scenario as TOML with every default filled in.
    pub fn to_resolved_toml(&self) -> String {
        // Serializing plain data (strings, numbers, tables) to TOML cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not serialize: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
