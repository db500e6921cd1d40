//! QUIC through WireGuard inside the node process ([`super::wg_socket`]): `+wg-inproc` with
//! boringtun's tunnels, `+wg-gotatun` with GotaTun's. Needs no TUN device and no privilege.

use super::{
    crypto,
    wg_socket::{self, WgPeer, WgSocket},
    wg_tunnel::WgLibrary,
    Availability, NodeContext, NodeEndpoint, PreparedUnderlay, Protocol, Stack, StackError,
    StackId, UnderlayKind,
};
use crate::{check::HostCaps, topology::Topology};
use boringtun::x25519;
use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::Arc,
};

/// UDP port of every node's in-process WireGuard.
pub const WG_PORT: u16 = 51820;

#[derive(Debug)]
pub struct OverWgInproc {
    pub protocol: Protocol,
    pub library: WgLibrary,
}

struct InprocUnderlay {
    endpoints: Vec<SocketAddr>,
    protocol: Protocol,
    library: WgLibrary,
}

fn quic_addr(index: u32) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        wg_socket::virtual_ip(index),
        crate::topology::QUIC_PORT,
    ))
}

impl PreparedUnderlay for InprocUnderlay {
    fn node_addr(&self, index: u32) -> SocketAddr {
        quic_addr(index)
    }
    fn wg_endpoint(&self, index: u32) -> Option<SocketAddr> {
        self.endpoints.get(index as usize).copied()
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "underlay": format!("{} inside the node process, one per peer, over UDP", self.library.describe()),
            "crypto": crypto::describe(self.protocol),
            "transport": super::crypto::transport(self.protocol),
            "tunnel_mtu": wg_socket::TUNNEL_MTU,
            "quic_max_udp_payload": wg_socket::MAX_QUIC_PAYLOAD,
            "per_packet_overhead_bytes": { "synthetic_ipv4_udp": wg_socket::INNER_HEADER, "wireguard": wg_socket::WG_OVERHEAD },
            "timer_interval_ms": wg_socket::TIMER_INTERVAL.as_millis(),
            "batching": format!(
                "sends: up to {} QUIC datagrams sealed into one GSO send; receives: recvmmsg of {} buffers with GRO",
                wg_socket::SEND_SEGMENTS,
                wg_socket::RECV_BATCH
            ),
            "socket_buffer_requested_bytes": super::SOCKET_BUFFER,
        })
    }
}

impl Stack for OverWgInproc {
    fn id(&self) -> StackId {
        StackId {
            protocol: self.protocol,
            underlay: match self.library {
                WgLibrary::Boringtun => UnderlayKind::WgInproc,
                WgLibrary::Gotatun => UnderlayKind::WgGotatun,
            },
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        // The stack itself needs nothing; the harness's namespaces do.
        Availability::with_namespaces(host).with_protocol(self.protocol, host)
    }

    fn prepare(
        &self,
        topology: &Topology,
        opts: &super::StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        let port = WG_PORT + opts.slot as u16;
        let endpoints = (0..topology.nodes())
            .map(|i| SocketAddr::V4(SocketAddrV4::new(topology.node_ip(i), port)))
            .collect();
        Ok(Box::new(InprocUnderlay {
            endpoints,
            protocol: self.protocol,
            library: self.library,
        }))
    }

    fn lifecycle(
        &self,
        topology: &Topology,
        _opts: &super::StackContext<'_>,
    ) -> Result<(String, Option<super::LifecycleTimes>), StackError> {
        Ok((
            format!("create: a {} per peer (this is all the configuring there is); up: bind the UDP socket; destroy: drop both", self.library.describe()),
            Some(super::lifecycle::in_process(topology, self.library)?),
        ))
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        let listen = ctx.wg_listen.ok_or_else(|| {
            StackError::Unavailable(
                self.id().name(),
                "no WireGuard endpoint was assigned to this node".into(),
            )
        })?;
        let bind_err = |source| StackError::Bind {
            addr: listen,
            source,
        };
        let (outer, _) = super::plain_udp::bind(listen, ctx.datagrams).map_err(bind_err)?;
        let tunnels = self.library.tunnels(&ctx.identity.wg_secret);
        let mut peers = vec![];
        for p in ctx.peers {
            let endpoint = p.wg_endpoint.ok_or_else(|| {
                StackError::Unavailable(
                    self.id().name(),
                    format!("node {} has no WireGuard endpoint", p.index),
                )
            })?;
            let public = x25519::PublicKey::from(p.wg_public);
            peers.push(WgPeer {
                index: p.index,
                public,
                virtual_ip: wg_socket::virtual_ip(p.index),
                endpoint,
                tunnel: tunnels.tunnel(public, p.index),
                initiations: 0,
                decrypted: 0,
            });
        }
        let sock = WgSocket::new(outer, ctx.bind, tunnels, peers);
        let control = sock.clone();
        let diagnose: Arc<dyn Fn(u32) -> String + Send + Sync> = {
            let sock = sock.clone();
            Arc::new(move |peer| sock.diagnose(peer))
        };
        super::quic_udp::endpoint_on(
            self.protocol,
            ctx,
            sock,
            Some(wg_socket::MAX_QUIC_PAYLOAD),
            Some(diagnose),
            control,
        )
    }
}
