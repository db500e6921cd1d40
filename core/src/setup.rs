//! How connection setup scales with the network: how many dials a node keeps in flight,
//! in which order it dials, and how long setup may take before a missing peer is an error.
//! A 64-node full mesh starts 2 016 handshakes on 2 cores; started all at once, the first
//! Initials are lost in the crowd and their retransmission timers back off past any fixed
//! deadline.

use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Handshakes a node keeps in flight at once when dialling.
pub const DIALS_IN_FLIGHT: usize = 4;
/// Setup time every network gets, however small.
const BASE: Duration = Duration::from_secs(10);
/// Setup time added per connection in the whole network: a handshake costs a few ms of
/// CPU at each end, and every node's handshakes share the machine's cores.
const PER_CONNECTION: Duration = Duration::from_millis(10);

/// How long a dial on a dual-stack node's preferred stack may take before it falls back to
/// the next stack both ends speak. A handshake takes milliseconds on a LAN and a few round
/// trips on a WAN; a tunnel whose handshake is refused never answers at all.
pub const FALLBACK_AFTER: Duration = Duration::from_secs(3);

/// Deadlines of one network's connection setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupDeadlines {
    /// For one node's dials, all of them.
    pub dial: Duration,
    /// For one node to be dialled by every peer that dials it; longer than `dial`, so that
    /// a failed dial reports first, with its reason.
    pub accept: Duration,
    /// For the controller to hear that every node is connected.
    pub controller: Duration,
}

impl SetupDeadlines {
    /// Deadlines for a network of `connections` connections in all.
    pub fn for_connections(connections: usize) -> SetupDeadlines {
        let dial = BASE + PER_CONNECTION * connections as u32;
        SetupDeadlines {
            dial,
            accept: dial + Duration::from_secs(2),
            controller: dial + Duration::from_secs(20),
        }
    }
}

/// The order in which node `index` dials `peers`: shuffled from the seed, so that the
/// first wave of handshakes spreads over the network instead of landing on one node.
pub fn dial_order(peers: &[u32], index: u32, seed: u64) -> Vec<u32> {
    let mut order = peers.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_grow_with_the_network() {
        let small = SetupDeadlines::for_connections(3);
        let mesh64 = SetupDeadlines::for_connections(64 * 63 / 2);
        assert!(small.dial >= BASE && small.dial < Duration::from_secs(11));
        assert!(mesh64.dial >= Duration::from_secs(30), "{mesh64:?}");
        for d in [small, mesh64] {
            assert!(d.dial < d.accept && d.accept < d.controller);
        }
    }

    #[test]
    fn dial_orders_differ_between_nodes_and_keep_every_peer() {
        let peers: Vec<u32> = (10..40).collect();
        let a = dial_order(&peers, 1, 7);
        let b = dial_order(&peers, 2, 7);
        assert_ne!(a, b);
        assert_eq!(a, dial_order(&peers, 1, 7));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, peers);
    }
}
