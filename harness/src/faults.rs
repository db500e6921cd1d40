//! Test-only interference, to prove that failures are caught. Stacks never see it: the
//! controller hands out peers' keys, and under a fault it hands out a wrong one (as
//! [`KeyDistribution`] for stacks that configure tunnels from outside the nodes).

use crate::stack::KeyDistribution;

/// Test-only interference, to prove failures are caught.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Give node `.0` a wrong key for node `.1`.
    pub wrong_peer_key: Option<(u32, u32)>,
    /// Only on this stack, where a network runs several (all of them when `None`).
    pub only_on: Option<String>,
    /// Kill node `.0` with SIGKILL this long after the start of sending, from outside: a
    /// crash the scenario does not schedule.
    pub kill_node: Option<(u32, std::time::Duration)>,
}

impl Faults {
    /// The faults that apply to `stack`'s slot of a network.
    pub fn for_stack(&self, stack: &str) -> Faults {
        match &self.only_on {
            Some(only) if only != stack => Faults::default(),
            _ => self.clone(),
        }
    }

    /// Whether node `i` must be given a wrong key for node `j`.
    pub fn wrong_key(&self, i: u32, j: u32) -> bool {
        self.wrong_peer_key == Some((i, j))
    }

    /// Whose TLS key node `i` is given for node `j`: `j`'s, or under the fault another
    /// node's real key (a third node where there is one, else `i`'s own).
    pub fn tls_key_owner(&self, i: u32, j: u32, nodes: u32) -> u32 {
        if !self.wrong_key(i, j) {
            return j;
        }
        (0..nodes).find(|k| *k != i && *k != j).unwrap_or(i)
    }

    /// The WireGuard public key node `i` is given for node `j`: `right`, or under the fault a
    /// fresh valid key that no node holds. (Another node's key would not do: WireGuard
    /// ignores a peer with the device's own key and refuses duplicate peers.)
    pub fn wg_key(&self, i: u32, j: u32, right: [u8; 32]) -> [u8; 32] {
        if !self.wrong_key(i, j) {
            return right;
        }
        let stranger = boringtun::x25519::StaticSecret::random_from_rng(rand::rngs::OsRng);
        boringtun::x25519::PublicKey::from(&stranger).to_bytes()
    }
}

impl KeyDistribution for Faults {
    fn wg_key(&self, holder: u32, of: u32, real: [u8; 32]) -> [u8; 32] {
        Faults::wg_key(self, holder, of, real)
    }
}
