//! Who is connected to whom: a full mesh for direct fanout, or, for gossip, a seeded random
//! regular graph of degree D, optionally region-aware (a share of each node's peers outside
//! its region). Connections exist only along the graph's edges.

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An undirected graph on nodes `0..n`, as each node's sorted neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerGraph {
    neighbours: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("no connected graph of degree {degree} on {nodes} nodes was found in {attempts} seeded attempts")]
    NotFound {
        nodes: u32,
        degree: u32,
        attempts: u32,
    },
}

/// Seeded attempts before giving up; a pairing rarely needs more than a few.
const ATTEMPTS: u32 = 64;

impl PeerGraph {
    /// Every node connected to every other.
    pub fn full_mesh(nodes: u32) -> PeerGraph {
        PeerGraph {
            neighbours: (0..nodes)
                .map(|i| (0..nodes).filter(|j| *j != i).collect())
                .collect(),
        }
    }

    /// A connected graph in which every node has `degree` peers (one node may have one
    /// fewer where the last pairing cannot close), drawn from `seed`. With `regions`
    /// (each node's region) and `outside` (a share, 0 to 1), about that share of each
    /// node's peers lie outside its region.
    pub fn random_regular(
        nodes: u32,
        degree: u32,
        regions: Option<(&[u32], f64)>,
        seed: u64,
    ) -> Result<PeerGraph, GraphError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6772_6170_6800);
        for _ in 0..ATTEMPTS {
            if let Some(g) = attempt(nodes, degree, regions, &mut rng) {
                if g.is_connected() {
                    return Ok(g);
                }
            }
        }
        Err(GraphError::NotFound {
            nodes,
            degree,
            attempts: ATTEMPTS,
        })
    }

    pub fn nodes(&self) -> u32 {
        self.neighbours.len() as u32
    }

    /// The peers of `node`, ascending.
    pub fn neighbours(&self, node: u32) -> &[u32] {
        &self.neighbours[node as usize]
    }

    /// Each edge once, as (lower, higher).
    pub fn edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.neighbours.iter().enumerate().flat_map(|(i, ns)| {
            ns.iter()
                .filter(move |j| **j > i as u32)
                .map(move |j| (i as u32, *j))
        })
    }

    pub fn is_connected(&self) -> bool {
        let n = self.neighbours.len();
        if n == 0 {
            return true;
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0usize];
        seen[0] = true;
        while let Some(i) = stack.pop() {
            for &j in &self.neighbours[i] {
                if !std::mem::replace(&mut seen[j as usize], true) {
                    stack.push(j as usize);
                }
            }
        }
        seen.iter().all(|s| *s)
    }

    /// Hops from `from` to every node (breadth first); `u32::MAX` where unreachable.
    pub fn distances(&self, from: u32) -> Vec<u32> {
        let mut d = vec![u32::MAX; self.neighbours.len()];
        let mut queue = std::collections::VecDeque::from([from]);
        d[from as usize] = 0;
        while let Some(i) = queue.pop_front() {
            for &j in &self.neighbours[i as usize] {
                if d[j as usize] == u32::MAX {
                    d[j as usize] = d[i as usize] + 1;
                    queue.push_back(j);
                }
            }
        }
        d
    }
}

/// One try at pairing every node's stubs. Region-aware pairing first pairs the stubs meant
/// to stay inside each region; stubs it cannot pair there join the cross-region pool.
fn attempt(
    nodes: u32,
    degree: u32,
    regions: Option<(&[u32], f64)>,
    rng: &mut ChaCha8Rng,
) -> Option<PeerGraph> {
    let mut adj: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); nodes as usize];
    let mut cross: Vec<u32> = Vec::new();
    match regions {
        Some((of, outside)) => {
            let outside_per_node = (degree as f64 * outside).round() as u32;
            let mut by_region: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
            for n in 0..nodes {
                let inside = degree - outside_per_node.min(degree);
                by_region
                    .entry(of[n as usize])
                    .or_default()
                    .extend(std::iter::repeat_n(n, inside as usize));
                cross.extend(std::iter::repeat_n(n, (degree - inside) as usize));
            }
            for stubs in by_region.into_values() {
                cross.extend(pair(stubs, &mut adj, rng, |_, _| true));
            }
            let left = pair(cross, &mut adj, rng, |a, b| {
                of[a as usize] != of[b as usize]
            });
            // Where regions alone cannot close the pairing, allow any pair.
            let left = pair(left, &mut adj, rng, |_, _| true);
            (left.len() <= 1).then_some(())?;
        }
        None => {
            let stubs = (0..nodes)
                .flat_map(|n| std::iter::repeat_n(n, degree as usize))
                .collect();
            (pair(stubs, &mut adj, rng, |_, _| true).len() <= 1).then_some(())?;
        }
    }
    Some(PeerGraph {
        neighbours: adj.into_iter().map(|s| s.into_iter().collect()).collect(),
    })
}

/// Pairs stubs at random into edges that `allowed` accepts (no loops, no repeats), and
/// returns the stubs left over.
fn pair(
    mut stubs: Vec<u32>,
    adj: &mut [BTreeSet<u32>],
    rng: &mut ChaCha8Rng,
    allowed: impl Fn(u32, u32) -> bool,
) -> Vec<u32> {
    stubs.shuffle(rng);
    let mut left = Vec::new();
    // Bounded random retries per stub keep this linear; a stub that finds no partner is
    // handed back.
    while let Some(a) = stubs.pop() {
        let mut paired = false;
        for _ in 0..(4 * stubs.len()).clamp(1, 256) {
            if stubs.is_empty() {
                break;
            }
            let k = rng.gen_range(0..stubs.len());
            let b = stubs[k];
            if a != b && !adj[a as usize].contains(&b) && allowed(a, b) {
                stubs.swap_remove(k);
                adj[a as usize].insert(b);
                adj[b as usize].insert(a);
                paired = true;
                break;
            }
        }
        if !paired {
            left.push(a);
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_graphs_have_the_degree_and_are_connected() {
        for (n, d) in [(64, 8), (16, 3), (200, 8), (10, 9)] {
            let g = PeerGraph::random_regular(n, d, None, 42).expect("a graph");
            let short: Vec<u32> = (0..n)
                .filter(|i| g.neighbours(*i).len() != d as usize)
                .collect();
            assert!(short.len() <= 2, "{n}/{d}: nodes {short:?} lack peers");
            assert!(g.is_connected());
            for (a, b) in g.edges() {
                assert!(g.neighbours(b).contains(&a), "edges are symmetric");
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn same_seed_same_graph() {
        let a = PeerGraph::random_regular(64, 8, None, 7).expect("a graph");
        let b = PeerGraph::random_regular(64, 8, None, 7).expect("a graph");
        let c = PeerGraph::random_regular(64, 8, None, 8).expect("a graph");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn region_aware_graphs_keep_the_outside_share() {
        let regions: Vec<u32> = (0..64).map(|i| i % 4).collect();
        let g = PeerGraph::random_regular(64, 8, Some((&regions, 0.25)), 3).expect("a graph");
        let outside = g
            .edges()
            .filter(|(a, b)| regions[*a as usize] != regions[*b as usize])
            .count() as f64;
        let share = outside / g.edges().count() as f64;
        assert!((0.2..=0.3).contains(&share), "outside share {share}");
        assert!(g.is_connected());
    }

    #[test]
    fn full_mesh_distances_are_one() {
        let g = PeerGraph::full_mesh(5);
        assert_eq!(g.distances(2), vec![1, 1, 0, 1, 1]);
        assert_eq!(g.edges().count(), 10);
    }
}
