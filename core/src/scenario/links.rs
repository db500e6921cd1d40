//! The network between nodes as a scenario writes it: impairments on every path
//! (`[links]`), a one-way latency matrix between regions (`[regions]`) and a mix of node
//! uplinks (`[[node_class]]`). `crate::link::LinkPlan` resolves these into per-node and
//! per-path values.

use crate::units::{BitRate, Dur, Percent};
use serde::{Deserialize, Serialize};
use std::{ops::Range, time::Duration};
use toml::Spanned;

/// Impairments applied to every path between two nodes, one way.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// Which mechanism applies delay, jitter, loss and reordering.
    #[serde(default)]
    pub emulator: EmulatorChoice,
    /// One-way delay on every path, added to the region matrix's.
    #[serde(default)]
    pub delay: Dur,
    /// Standard deviation of the one-way delay. Packets of one path never overtake each
    /// other because of jitter; only `reorder` reorders.
    #[serde(default)]
    pub jitter: Dur,
    #[serde(default)]
    pub jitter_distribution: JitterDistribution,
    /// Independent random loss per packet.
    #[serde(default)]
    pub loss: Percent,
    /// Bursty loss (Gilbert-Elliott), on top of `loss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursty_loss: Option<GilbertElliott>,
    /// Share of packets sent at once, overtaking packets still held for their delay
    /// (netem's `reorder`).
    #[serde(default)]
    pub reorder: Percent,
    /// How far the self-check may find a value from the scenario before the run refuses.
    #[serde(default)]
    pub tolerance: Tolerance,
    /// How long the self-check probes every path before the run.
    #[serde(default = "default_probe")]
    pub probe: Dur,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            emulator: EmulatorChoice::Auto,
            delay: Dur::default(),
            jitter: Dur::default(),
            jitter_distribution: JitterDistribution::Normal,
            loss: Percent(0.0),
            bursty_loss: None,
            reorder: Percent(0.0),
            tolerance: Tolerance::default(),
            probe: default_probe(),
        }
    }
}

fn default_probe() -> Dur {
    Dur(Duration::from_secs(2))
}

/// `auto` uses netem where the kernel has it and the userspace emulator otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmulatorChoice {
    #[default]
    Auto,
    Netem,
    Userspace,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterDistribution {
    /// Normal, cut at ±3 standard deviations and at zero delay.
    #[default]
    Normal,
    /// Uniform over ±√3 standard deviations.
    Uniform,
}

/// The two-state Gilbert-Elliott loss model: a good and a bad state, each with its own loss
/// probability, and per-packet transition probabilities between them (netem's `gemodel`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    /// Probability of moving from good to bad, per packet.
    pub p: Percent,
    /// Probability of moving from bad to good, per packet; the mean burst is 1/r packets.
    pub r: Percent,
    #[serde(default = "all_lost")]
    pub loss_in_bad: Percent,
    #[serde(default)]
    pub loss_in_good: Percent,
}

fn all_lost() -> Percent {
    Percent(1.0)
}

impl GilbertElliott {
    /// Long-run share of packets lost.
    pub fn stationary_loss(&self) -> f64 {
        let bad = self.p.0 / (self.p.0 + self.r.0);
        bad * self.loss_in_bad.0 + (1.0 - bad) * self.loss_in_good.0
    }
}

/// A measured value passes when it is within `relative` of the configured one or within
/// `absolute` (for times), whichever is larger.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    #[serde(default = "default_relative")]
    pub relative: Percent,
    #[serde(default = "default_absolute")]
    pub absolute: Dur,
}

fn default_relative() -> Percent {
    Percent(0.10)
}
fn default_absolute() -> Dur {
    Dur(Duration::from_micros(200))
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            relative: default_relative(),
            absolute: default_absolute(),
        }
    }
}

/// Nodes placed in regions, with a one-way delay from each region to each other.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Regions {
    pub names: Spanned<Vec<Spanned<String>>>,
    /// `delay[a][b]`: one-way delay from region `a` to region `b` (may be asymmetric).
    pub delay: Spanned<Vec<Spanned<Vec<Dur>>>>,
    /// The region index of each node; absent means round-robin (node i in region i mod R).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign: Option<Spanned<Vec<Spanned<u32>>>>,
}

/// A share of the nodes with its own uplink.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeClass {
    pub name: Spanned<String>,
    /// Share of all nodes; the shares of all classes add up to 100%.
    pub share: Spanned<Percent>,
    /// Egress rate limit of these nodes; absent means the topology's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<BitRate>,
    /// Their rate limiter's queue; absent means the topology's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Dur>,
    /// One-way delay of these nodes' access link, added to every path leaving them.
    #[serde(default)]
    pub delay: Dur,
    /// Jitter (standard deviation) of their access link, added in variance to `[links]`'.
    #[serde(default)]
    pub jitter: Dur,
    /// Random loss on their access link, on top of `[links]`' loss.
    #[serde(default)]
    pub loss: Percent,
}

type Invalid = (Range<usize>, String);

/// Checks `[links]`, `[regions]` and `[[node_class]]` against each other and the node count.
pub(super) fn validate(
    links: &Links,
    regions: Option<&Regions>,
    classes: &[NodeClass],
    nodes: u32,
    links_span: Range<usize>,
) -> Result<(), Invalid> {
    if let Some(ge) = &links.bursty_loss {
        if ge.p.0 <= 0.0 || ge.r.0 <= 0.0 {
            return Err((
                links_span.clone(),
                "links.bursty_loss: p and r must both be above 0% (with p = 0% there is no burst; with r = 0% a burst never ends)".into(),
            ));
        }
    }
    if links.probe.0 < Duration::from_millis(500) {
        return Err((
            links_span,
            format!(
                "links.probe must be at least 500ms to measure anything, got {}",
                links.probe
            ),
        ));
    }
    if let Some(r) = regions {
        validate_regions(r, nodes)?;
    }
    validate_classes(classes)
}

fn validate_regions(r: &Regions, nodes: u32) -> Result<(), Invalid> {
    let n = r.names.get_ref().len();
    if n == 0 {
        return Err((
            r.names.span(),
            "regions.names must name at least one region".into(),
        ));
    }
    for (i, name) in r.names.get_ref().iter().enumerate() {
        if r.names.get_ref()[..i]
            .iter()
            .any(|o| o.get_ref() == name.get_ref())
        {
            return Err((
                name.span(),
                format!("duplicate region name {:?}", name.get_ref()),
            ));
        }
    }
    if r.delay.get_ref().len() != n {
        return Err((
            r.delay.span(),
            format!(
                "regions.delay must have one row per region ({n}), got {}",
                r.delay.get_ref().len()
            ),
        ));
    }
    for row in r.delay.get_ref() {
        if row.get_ref().len() != n {
            return Err((
                row.span(),
                format!(
                    "each row of regions.delay needs one delay per region ({n}), got {}",
                    row.get_ref().len()
                ),
            ));
        }
    }
    if let Some(assign) = &r.assign {
        if assign.get_ref().len() != nodes as usize {
            return Err((
                assign.span(),
                format!(
                    "regions.assign needs one region per node ({nodes}), got {}",
                    assign.get_ref().len()
                ),
            ));
        }
        for a in assign.get_ref() {
            if *a.get_ref() as usize >= n {
                return Err((
                    a.span(),
                    format!(
                        "region {} does not exist; regions are numbered 0..{}",
                        a.get_ref(),
                        n - 1
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_classes(classes: &[NodeClass]) -> Result<(), Invalid> {
    let Some(first) = classes.first() else {
        return Ok(());
    };
    for (i, c) in classes.iter().enumerate() {
        if classes[..i]
            .iter()
            .any(|o| o.name.get_ref() == c.name.get_ref())
        {
            return Err((
                c.name.span(),
                format!("duplicate node class {:?}", c.name.get_ref()),
            ));
        }
        if c.share.get_ref().0 <= 0.0 {
            return Err((
                c.share.span(),
                "a node class's share must be above 0%".into(),
            ));
        }
    }
    let total: f64 = classes.iter().map(|c| c.share.get_ref().0).sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err((
            first.share.span(),
            format!(
                "the shares of all node classes must add up to 100%, got {}",
                Percent(total)
            ),
        ));
    }
    Ok(())
}
