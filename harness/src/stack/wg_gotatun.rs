//! GotaTun (Mullvad's fork of boringtun) behind [`WgTunnel`]. Its API works on owned,
//! pooled packet buffers rather than caller slices: a datagram is copied into a pooled
//! buffer and opened in place; a sealed packet comes back in a buffer GotaTun allocates
//! (0.10.2 allocates one per packet, a TODO in its `format_packet_data`) and is copied into
//! the caller's GSO batch. Handshakes pass GotaTun's rate limiter first, as in its device.

use super::wg_tunnel::{TunnelMaker, WgTunnel};
use gotatun::{
    noise::{index_table::IndexTable, rate_limiter::RateLimiter, Tunn, TunnResult},
    packet::{Packet, PacketBufPool, WgKind},
    tun::MtuWatcher,
    x25519,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// The ChaCha20-Poly1305 implementation GotaTun was compiled with (a Cargo feature of this
/// crate: `gotatun-aws-lc-rs`, the default and GotaTun's own, or `gotatun-ring`).
#[cfg(feature = "gotatun-aws-lc-rs")]
pub const CRYPTO_BACKEND: &str = "aws-lc-rs";
#[cfg(all(feature = "gotatun-ring", not(feature = "gotatun-aws-lc-rs")))]
pub const CRYPTO_BACKEND: &str = "ring";

/// The library's name in benchmark ids, with its backend.
#[cfg(feature = "gotatun-aws-lc-rs")]
pub const BENCH_NAME: &str = "gotatun-aws-lc-rs";
#[cfg(all(feature = "gotatun-ring", not(feature = "gotatun-aws-lc-rs")))]
pub const BENCH_NAME: &str = "gotatun-ring";

/// Handshake packets accepted per second before GotaTun demands cookies (its device's
/// constant).
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Pooled buffers kept per node (GotaTun's buffers are 4 KiB).
const POOL_BUFFERS: usize = 256;
/// Tunnel MTU that GotaTun pads queued packets up to (never beyond).
const MTU: u16 = super::wg_socket::TUNNEL_MTU as u16;

/// What a node's tunnels share: its key, one index table (so session indices are unique
/// across peers), one handshake rate limiter and one buffer pool.
pub struct GotatunMaker {
    secret: x25519::StaticSecret,
    indices: IndexTable,
    limiter: Arc<RateLimiter>,
    pool: PacketBufPool,
}

impl GotatunMaker {
    pub fn new(secret: &x25519::StaticSecret) -> Self {
        let public = x25519::PublicKey::from(secret);
        GotatunMaker {
            secret: secret.clone(),
            indices: IndexTable::from_os_rng(),
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            pool: PacketBufPool::new(POOL_BUFFERS),
        }
    }
}

impl TunnelMaker for GotatunMaker {
    fn tunnel(&self, public: x25519::PublicKey, _index: u32) -> Box<dyn WgTunnel> {
        Box::new(GotatunTunnel {
            tunn: Tunn::new(
                self.secret.clone(),
                public,
                None,
                None,
                self.indices.clone(),
                self.limiter.clone(),
            ),
            limiter: self.limiter.clone(),
            pool: self.pool.clone(),
            mtu: MtuWatcher::new(MTU),
        })
    }
}

struct GotatunTunnel {
    tunn: Tunn,
    limiter: Arc<RateLimiter>,
    pool: PacketBufPool,
    mtu: MtuWatcher,
}

impl GotatunTunnel {
    /// `bytes` in a pooled buffer (a fresh one past the pool's 4 KiB, which datagrams in the
    /// tunnel never reach but the benchmarks' super-packets do).
    fn pooled(&self, bytes: &[u8]) -> Packet {
        let mut p = self.pool.get();
        if bytes.len() > p.len() {
            return Packet::from_bytes(bytes::BytesMut::from(bytes));
        }
        p.truncate(bytes.len());
        p.copy_from_slice(bytes);
        p
    }
}

fn send(kind: WgKind, net: &mut dyn FnMut(&[u8])) {
    let p = Packet::from(kind);
    net(&p);
}

impl WgTunnel for GotatunTunnel {
    fn seal(
        &mut self,
        plain: &[u8],
        out: &mut [u8],
        net: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<usize>, String> {
        match self.tunn.handle_outgoing_packet(self.pooled(plain), None) {
            Some(WgKind::Data(sealed)) => {
                let bytes: &[u8] = &Packet::from(sealed);
                let room = out
                    .get_mut(..bytes.len())
                    .ok_or("the sealing buffer is too small")?;
                room.copy_from_slice(bytes);
                Ok(Some(bytes.len()))
            }
            Some(handshake) => {
                send(handshake, net);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn open(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        _scratch: &mut [u8],
        net: &mut dyn FnMut(&[u8]),
        inner: &mut dyn FnMut(&[u8]),
    ) {
        let kind = match self.limiter.verify_packet(from, self.pooled(datagram)) {
            Ok(kind) => kind,
            Err(TunnResult::WriteToNetwork(cookie)) => return send(cookie, net),
            Err(_) => return,
        };
        match self.tunn.handle_incoming_packet(kind) {
            TunnResult::WriteToNetwork(reply) => {
                send(reply, net);
                // A completed handshake releases what waited for it.
                for queued in self.tunn.get_queued_packets(&mut self.mtu) {
                    send(queued, net);
                }
            }
            TunnResult::WriteToTunnel(p) if !p.is_empty() => inner(&p),
            TunnResult::WriteToTunnel(_) | TunnResult::Done | TunnResult::Err(_) => {}
        }
    }

    fn tick(&mut self, _scratch: &mut [u8], net: &mut dyn FnMut(&[u8])) {
        if let Ok(Some(p)) = self.tunn.update_timers() {
            send(p, net);
        }
    }

    fn since_handshake(&self) -> Option<Duration> {
        self.tunn.time_since_last_handshake()
    }
}

/// `stackbench wg-device --library gotatun`: GotaTun's device serving the TUN `iface`, with
/// its UAPI socket where the harness (and `wg`) look for it, until killed. One thread, as
/// the boringtun device runs.
pub fn run_device(iface: &str) -> anyhow::Result<std::convert::Infallible> {
    use anyhow::Context;
    use gotatun::device::{uapi::UapiServer, DeviceBuilder};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    rt.block_on(async {
        let uapi = UapiServer::default_unix_socket(iface, None, None)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("serving UAPI for {iface}"))?;
        let mut device = DeviceBuilder::new()
            .with_default_udp()
            .create_tun(iface)
            .with_context(|| format!("creating TUN {iface}"))?
            .with_uapi(uapi)
            .build()
            .await
            .with_context(|| format!("starting the GotaTun device on {iface}"))?;
        device.wait().await;
        // GotaTun reports the error only to its log. Exit at once, so that the harness sees
        // a dead daemon rather than a live process serving nothing.
        eprintln!("the GotaTun device on {iface} stopped with an unrecoverable error (GotaTun stops on a failed TUN read or write)");
        std::process::exit(1)
    })
}
