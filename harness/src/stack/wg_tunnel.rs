//! One WireGuard tunnel to one peer, whichever library implements it. The in-process socket
//! ([`super::wg_socket`]), the lifecycle timings and the cost benchmarks drive boringtun and
//! GotaTun through this one interface, so that their numbers differ only by the library.
//!
//! The interface is the shape both share: seal an inner IP packet, open a datagram, drive
//! timers. What each library costs beyond its crypto (boringtun seals into the caller's
//! buffer; GotaTun 0.10 seals into a packet it allocates and opens in place in a pooled
//! buffer) is part of what the stacks measure.

use std::{fmt, net::SocketAddr, time::Duration};

/// Room a sealing buffer needs beyond the plaintext for a handshake initiation (148 B).
pub const HANDSHAKE_ROOM: usize = 148;

/// One peer's tunnel: its session, handshake state and timers.
pub trait WgTunnel: Send {
    /// Seals the inner IP packet `plain` into `out`, which has room for `plain.len()` plus
    /// [`super::wg_socket::WG_OVERHEAD`] bytes. `Ok(Some(n))`: `out[..n]` is a data packet.
    /// `Ok(None)`: there is no session yet; the packet waits inside the tunnel and any
    /// handshake initiation went to `net`.
    fn seal(
        &mut self,
        plain: &[u8],
        out: &mut [u8],
        net: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<usize>, String>;
    /// Opens one datagram that arrived from `from`. Replies (handshake responses,
    /// keepalives, packets queued behind a handshake) go to `net`; a non-empty inner IP
    /// packet goes to `inner`. `scratch` is a buffer of at least 64 KiB the caller lends.
    fn open(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut [u8],
        net: &mut dyn FnMut(&[u8]),
        inner: &mut dyn FnMut(&[u8]),
    );
    /// Drives handshake retries, keepalives and rekeys; anything to send goes to `net`.
    fn tick(&mut self, scratch: &mut [u8], net: &mut dyn FnMut(&[u8]));
    /// Time since the last completed handshake; `None` before the first.
    fn since_handshake(&self) -> Option<Duration>;
}

/// A WireGuard library that runs inside the node process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WgLibrary {
    /// boringtun 0.7's `noise::Tunn` (Cloudflare), ring's ChaCha20-Poly1305.
    Boringtun,
    /// GotaTun 0.10's `noise::Tunn` (Mullvad's fork of boringtun).
    Gotatun,
}

impl WgLibrary {
    pub const ALL: [WgLibrary; 2] = [WgLibrary::Boringtun, WgLibrary::Gotatun];

    /// The library, its version and the crypto it was built with, for results.
    pub fn describe(self) -> String {
        match self {
            WgLibrary::Boringtun => "boringtun 0.7 noise::Tunn (ring ChaCha20-Poly1305)".into(),
            WgLibrary::Gotatun => format!(
                "gotatun 0.10 noise::Tunn ({} ChaCha20-Poly1305)",
                super::wg_gotatun::CRYPTO_BACKEND
            ),
        }
    }

    /// Short name, as in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            WgLibrary::Boringtun => "boringtun",
            WgLibrary::Gotatun => super::wg_gotatun::BENCH_NAME,
        }
    }

    /// Makes the tunnels of one node (key `secret`) to its peers.
    pub fn tunnels(self, secret: &boringtun::x25519::StaticSecret) -> Box<dyn TunnelMaker> {
        match self {
            WgLibrary::Boringtun => Box::new(BoringtunMaker {
                secret: secret.clone(),
            }),
            WgLibrary::Gotatun => Box::new(super::wg_gotatun::GotatunMaker::new(secret)),
        }
    }
}

impl fmt::Display for WgLibrary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Makes a node's tunnels; what they share (GotaTun's index table, handshake rate limiter
/// and buffer pool) lives here.
pub trait TunnelMaker: Send + Sync {
    /// A fresh tunnel to `public`: no session, so the next packet starts a handshake.
    /// `index` is the peer's node index.
    fn tunnel(&self, public: boringtun::x25519::PublicKey, index: u32) -> Box<dyn WgTunnel>;
}

struct BoringtunMaker {
    secret: boringtun::x25519::StaticSecret,
}

impl TunnelMaker for BoringtunMaker {
    fn tunnel(&self, public: boringtun::x25519::PublicKey, index: u32) -> Box<dyn WgTunnel> {
        // Tunnel indices have 24 usable bits; peer indices are small.
        Box::new(boringtun::noise::Tunn::new(
            self.secret.clone(),
            public,
            None,
            None,
            index + 1,
            None,
        ))
    }
}

impl WgTunnel for boringtun::noise::Tunn {
    fn seal(
        &mut self,
        plain: &[u8],
        out: &mut [u8],
        net: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<usize>, String> {
        use boringtun::noise::TunnResult;
        let sealed = plain.len() + super::wg_socket::WG_OVERHEAD;
        match self.encapsulate(plain, out) {
            // boringtun does not pad: a data packet is exactly 32 bytes longer.
            TunnResult::WriteToNetwork(pkt) if pkt.len() == sealed => Ok(Some(sealed)),
            TunnResult::WriteToNetwork(pkt) => {
                net(pkt);
                Ok(None)
            }
            TunnResult::Err(e) => Err(format!("{e:?}")),
            _ => Ok(None),
        }
    }

    fn open(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut [u8],
        net: &mut dyn FnMut(&[u8]),
        inner: &mut dyn FnMut(&[u8]),
    ) {
        use boringtun::noise::TunnResult;
        let mut input = datagram;
        loop {
            match self.decapsulate(Some(from.ip()), input, scratch) {
                TunnResult::WriteToNetwork(pkt) => {
                    net(pkt);
                    input = &[]; // Flush anything queued behind the handshake.
                }
                TunnResult::WriteToTunnelV4(pkt, _) | TunnResult::WriteToTunnelV6(pkt, _) => {
                    inner(pkt);
                    return;
                }
                TunnResult::Done | TunnResult::Err(_) => return,
            }
        }
    }

    fn tick(&mut self, scratch: &mut [u8], net: &mut dyn FnMut(&[u8])) {
        if let boringtun::noise::TunnResult::WriteToNetwork(pkt) = self.update_timers(scratch) {
            net(pkt);
        }
    }

    fn since_handshake(&self) -> Option<Duration> {
        self.stats().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::memory::{ip_packet, WgPair};

    /// Both libraries complete a handshake, carry a packet each way intact, and reject a
    /// replayed or tampered datagram, through this interface.
    #[test]
    fn every_library_seals_and_opens_through_the_interface() {
        for lib in WgLibrary::ALL {
            let mut pair = WgPair::new(lib);
            pair.handshake()
                .unwrap_or_else(|e| panic!("{lib}: handshake: {e}"));
            assert!(pair.initiator.since_handshake().is_some(), "{lib}");
            let packet = ip_packet(1200);
            let mut sealed = vec![0u8; 1200 + 32 + HANDSHAKE_ROOM];
            let n = pair
                .initiator
                .seal(&packet, &mut sealed, &mut |_| {
                    panic!("{lib}: sent a handshake")
                })
                .expect("seals")
                .expect("a session exists");
            assert_eq!(n, 1200 + 32, "{lib}");
            let opened = pair.open_responder(&sealed[..n]);
            assert_eq!(opened.as_deref(), Some(&packet[..]), "{lib}");
            assert_eq!(pair.open_responder(&sealed[..n]), None, "{lib}: replay");
            let n = pair
                .initiator
                .seal(&packet, &mut sealed, &mut |_| {})
                .expect("seals")
                .expect("a session exists");
            sealed[40] ^= 1;
            assert_eq!(pair.open_responder(&sealed[..n]), None, "{lib}: tampered");
        }
    }
}
