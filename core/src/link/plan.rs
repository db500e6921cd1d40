//! The scenario's network resolved into numbers: each node's region, class and uplink, and
//! each directed path's impairments. The emulator, netem and the self-check all read this
//! one plan, so they cannot disagree about what was asked.

pub use crate::schema::LinkNode;
use crate::{
    scenario::{JitterDistribution, Scenario},
    units::{BitRate, Dur},
};
use rand::{seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Gilbert-Elliott parameters as probabilities per packet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BurstLoss {
    pub p: f64,
    pub r: f64,
    pub loss_in_bad: f64,
    pub loss_in_good: f64,
}

impl BurstLoss {
    pub fn stationary_loss(&self) -> f64 {
        let bad = self.p / (self.p + self.r);
        bad * self.loss_in_bad + (1.0 - bad) * self.loss_in_good
    }
}

/// What one direction of one path does to packets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PathImpairment {
    pub delay_ns: u64,
    /// Standard deviation of the delay.
    pub jitter_ns: u64,
    pub distribution: JitterDistribution,
    /// Independent loss probability per packet.
    pub loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_loss: Option<BurstLoss>,
    /// Probability that a packet is sent at once, overtaking held packets.
    pub reorder: f64,
}

impl PathImpairment {
    pub const NONE: PathImpairment = PathImpairment {
        delay_ns: 0,
        jitter_ns: 0,
        distribution: JitterDistribution::Normal,
        loss: 0.0,
        burst_loss: None,
        reorder: 0.0,
    };

    /// Whether the path is a plain wire (no emulation needed).
    pub fn is_none(&self) -> bool {
        self.delay_ns == 0
            && self.jitter_ns == 0
            && self.loss == 0.0
            && self.burst_loss.is_none()
            && self.reorder == 0.0
    }

    /// Long-run share of packets lost, both loss processes together.
    pub fn expected_loss(&self) -> f64 {
        let burst = self.burst_loss.map_or(0.0, |b| b.stationary_loss());
        1.0 - (1.0 - self.loss) * (1.0 - burst)
    }
}

/// The whole network of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPlan {
    pub nodes: Vec<LinkNode>,
    /// `paths[from][to]`; the diagonal is unused.
    pub paths: Vec<Vec<PathImpairment>>,
}

impl LinkPlan {
    pub fn from_scenario(s: &Scenario) -> LinkPlan {
        let n = s.node_count() as usize;
        let links = s.links.get_ref();
        let region_of: Vec<Option<usize>> = match &s.regions {
            None => vec![None; n],
            Some(r) => {
                let count = r.names.get_ref().len();
                (0..n)
                    .map(|i| {
                        Some(match &r.assign {
                            Some(a) => *a.get_ref()[i].get_ref() as usize,
                            None => i % count,
                        })
                    })
                    .collect()
            }
        };
        let class_of = assign_classes(s, n);
        let nodes = (0..n)
            .map(|i| {
                let class = class_of[i].map(|c| &s.node_classes[c]);
                let uplink: Option<BitRate> = class.and_then(|c| c.uplink).or(s.topology.uplink);
                let queue: Dur = class.and_then(|c| c.queue).unwrap_or(s.topology.queue);
                LinkNode {
                    index: i as u32,
                    region: region_of[i]
                        .zip(s.regions.as_ref())
                        .map(|(r, regions)| regions.names.get_ref()[r].get_ref().clone()),
                    class: class.map(|c| c.name.get_ref().clone()),
                    uplink_bits_per_sec: uplink.map(|r| r.0),
                    queue_us: queue.0.as_micros() as u64,
                }
            })
            .collect();
        let burst_loss = links.bursty_loss.map(|g| BurstLoss {
            p: g.p.0,
            r: g.r.0,
            loss_in_bad: g.loss_in_bad.0,
            loss_in_good: g.loss_in_good.0,
        });
        let paths = (0..n)
            .map(|from| {
                (0..n)
                    .map(|to| {
                        let region_delay = match (&s.regions, region_of[from], region_of[to]) {
                            (Some(r), Some(a), Some(b)) => r.delay.get_ref()[a].get_ref()[b].0,
                            _ => Duration::ZERO,
                        };
                        let access = class_of[from].map(|c| &s.node_classes[c]);
                        let access_delay = access.map_or(Duration::ZERO, |c| c.delay.0);
                        let access_jitter = access.map_or(0.0, |c| c.jitter.0.as_nanos() as f64);
                        let access_loss = access.map_or(0.0, |c| c.loss.0);
                        let jitter = (links.jitter.0.as_nanos() as f64).hypot(access_jitter);
                        PathImpairment {
                            delay_ns: (links.delay.0 + region_delay + access_delay).as_nanos()
                                as u64,
                            jitter_ns: jitter.round() as u64,
                            distribution: links.jitter_distribution,
                            loss: 1.0 - (1.0 - links.loss.0) * (1.0 - access_loss),
                            burst_loss,
                            reorder: links.reorder.0,
                        }
                    })
                    .collect()
            })
            .collect();
        LinkPlan { nodes, paths }
    }

    /// The directed paths between distinct nodes.
    pub fn directed_paths(&self) -> impl Iterator<Item = (u32, u32, &PathImpairment)> {
        self.paths.iter().enumerate().flat_map(|(from, row)| {
            row.iter()
                .enumerate()
                .filter(move |(to, _)| *to != from)
                .map(move |(to, p)| (from as u32, to as u32, p))
        })
    }

    /// Whether any path needs delay, jitter, loss or reordering.
    pub fn needs_emulation(&self) -> bool {
        self.directed_paths().any(|(_, _, p)| !p.is_none())
    }

    pub fn path(&self, from: u32, to: u32) -> &PathImpairment {
        &self.paths[from as usize][to as usize]
    }
}

/// Which node class each node belongs to: each class gets its share of the nodes (largest
/// remainder), and the nodes are dealt out in a seeded shuffle so classes mix across regions.
fn assign_classes(s: &Scenario, n: usize) -> Vec<Option<usize>> {
    if s.node_classes.is_empty() {
        return vec![None; n];
    }
    let exact: Vec<f64> = s
        .node_classes
        .iter()
        .map(|c| c.share.get_ref().0 * n as f64)
        .collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut missing = n - counts.iter().sum::<usize>();
    for c in by_remainder.iter().cycle() {
        if missing == 0 {
            break;
        }
        counts[*c] += 1;
        missing -= 1;
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed ^ 0x6e6f_6465_636c_6173);
    order.shuffle(&mut rng);
    let mut out = vec![None; n];
    let mut next = order.into_iter();
    for (class, count) in counts.into_iter().enumerate() {
        for node in next.by_ref().take(count) {
            out[node] = Some(class);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(extra: &str) -> LinkPlan {
        let text = format!(
            "name = \"t\"\nseed = 7\nduration = \"2s\"\nstacks = [\"quic-tls\"]\n{extra}\n\
             [[class]]\nname = \"v\"\npriority = 1\nsize = \"200B\"\narrival = {{ process = \"constant\", rate = \"10/s\" }}\n"
        );
        let s = Scenario::parse(Path::new("t.toml"), &text, &["quic-tls"]).expect("valid");
        LinkPlan::from_scenario(&s)
    }

    #[test]
    fn a_plain_lan_needs_no_emulation() {
        let p = plan("[topology]\nnodes = 3\nuplink = \"1Gbit\"\n");
        assert!(!p.needs_emulation());
        assert_eq!(p.nodes[2].uplink_bits_per_sec, Some(1_000_000_000));
    }

    #[test]
    fn region_delays_add_to_the_common_delay() {
        let p = plan(
            "[topology]\nnodes = 4\n[links]\ndelay = \"1ms\"\n\
             [regions]\nnames = [\"eu\", \"us\"]\ndelay = [[\"2ms\", \"40ms\"], [\"41ms\", \"3ms\"]]\n",
        );
        assert!(p.needs_emulation());
        // Round-robin: nodes 0 and 2 in eu, 1 and 3 in us.
        assert_eq!(p.nodes[2].region.as_deref(), Some("eu"));
        assert_eq!(p.path(0, 1).delay_ns, 41_000_000);
        assert_eq!(p.path(1, 0).delay_ns, 42_000_000);
        assert_eq!(p.path(0, 2).delay_ns, 3_000_000);
        assert_eq!(p.path(3, 1).delay_ns, 4_000_000);
    }

    #[test]
    fn node_classes_get_their_share_of_nodes() {
        let p = plan(
            "[topology]\nnodes = 10\nuplink = \"50Mbit\"\n\
             [[node_class]]\nname = \"dc\"\nshare = \"20%\"\nuplink = \"1Gbit\"\n\
             [[node_class]]\nname = \"home\"\nshare = \"80%\"\n",
        );
        let fast = p.nodes.iter().filter(|n| n.class.as_deref() == Some("dc"));
        assert_eq!(fast.clone().count(), 2);
        assert!(fast
            .clone()
            .all(|n| n.uplink_bits_per_sec == Some(1_000_000_000)));
        let home = p
            .nodes
            .iter()
            .filter(|n| n.class.as_deref() == Some("home"));
        assert!(home
            .clone()
            .all(|n| n.uplink_bits_per_sec == Some(50_000_000)));
        assert_eq!(home.count(), 8);
        assert_eq!(
            p,
            plan(
                "[topology]\nnodes = 10\nuplink = \"50Mbit\"\n\
             [[node_class]]\nname = \"dc\"\nshare = \"20%\"\nuplink = \"1Gbit\"\n\
             [[node_class]]\nname = \"home\"\nshare = \"80%\"\n",
            ),
            "the assignment is seeded"
        );
    }

    #[test]
    fn a_node_class_adds_its_access_link_to_paths_leaving_its_nodes() {
        let p = plan(
            "[topology]\nnodes = 2\n[links]\ndelay = \"10ms\"\njitter = \"3ms\"\nloss = \"1%\"\n\
             [[node_class]]\nname = \"mobile\"\nshare = \"50%\"\ndelay = \"20ms\"\njitter = \"4ms\"\nloss = \"2%\"\n\
             [[node_class]]\nname = \"dc\"\nshare = \"50%\"\n",
        );
        let mobile = p
            .nodes
            .iter()
            .position(|n| n.class.as_deref() == Some("mobile"));
        let m = mobile.expect("one mobile node") as u32;
        let out = p.path(m, 1 - m);
        assert_eq!(out.delay_ns, 30_000_000);
        assert_eq!(out.jitter_ns, 5_000_000, "3 ms and 4 ms add in variance");
        assert!((out.loss - (1.0 - 0.99 * 0.98)).abs() < 1e-12);
        let back = p.path(1 - m, m);
        assert_eq!((back.delay_ns, back.jitter_ns), (10_000_000, 3_000_000));
    }

    #[test]
    fn both_loss_processes_count() {
        let p = plan(
            "[topology]\nnodes = 2\n[links]\nloss = \"1%\"\n\
             bursty_loss = { p = \"0.1256%\", r = \"25%\" }\n",
        );
        let l = p.path(0, 1).expected_loss();
        assert!((l - 0.01 - 0.005 * 0.99).abs() < 1e-4, "{l}");
    }
}
