//! `quic-tls`: quinn with TLS 1.3 over plain UDP on the node's veth.

use super::{
    tls, transport_config, Availability, NodeContext, NodeEndpoint, PreparedUnderlay, Stack,
    StackError, StackId,
};
use crate::{check::HostCaps, topology::Topology};
use std::{net::SocketAddr, sync::Arc};

/// QUIC + TLS 1.3 directly on UDP.
#[derive(Debug)]
pub struct QuicTls;

/// Plain UDP needs nothing built: nodes listen on their veth addresses.
struct PlainUdp {
    addrs: Vec<SocketAddr>,
}

impl PreparedUnderlay for PlainUdp {
    fn node_addr(&self, index: u32) -> SocketAddr {
        self.addrs[index as usize]
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "underlay": "udp",
            "crypto": "TLS 1.3 (rustls, ring), Ed25519 keys pinned, no resumption",
            "socket_buffer_requested_bytes": super::SOCKET_BUFFER,
            "congestion_control": "cubic (quinn default)",
        })
    }
}

impl Stack for QuicTls {
    fn id(&self) -> StackId {
        StackId {
            crypto: super::CryptoKind::Tls,
            underlay: super::UnderlayKind::Udp,
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        match host.namespaces_unavailable() {
            Some(why) => Availability::Unavailable(why),
            None => Availability::Available,
        }
    }

    fn prepare(&self, topology: &Topology) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        let addrs = (0..topology.nodes())
            .map(|i| topology.node_socket_addr(i))
            .collect();
        Ok(Box::new(PlainUdp { addrs }))
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        let transport = transport_config(None);
        let pinned = |p: &super::PeerInfo| tls::PinnedPeer {
            index: p.index,
            spki: p.spki.clone(),
        };
        let mut server = quinn::ServerConfig::with_crypto(tls::server_crypto(
            ctx.identity,
            ctx.peers.iter().map(pinned).collect(),
        )?);
        server.transport_config(transport.clone());
        let bind_err = |source| StackError::Bind {
            addr: ctx.bind,
            source,
        };
        let (socket, rcvbuf) = super::bind_udp(ctx.bind).map_err(bind_err)?;
        tracing::debug!("node {}: UDP receive buffer {rcvbuf} bytes", ctx.index);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let dial = ctx
            .peers
            .iter()
            .map(|p| {
                let mut c = quinn::ClientConfig::new(tls::client_crypto(ctx.identity, pinned(p))?);
                c.transport_config(transport.clone());
                Ok((p.index, c, tls::server_name(p.index)))
            })
            .collect::<Result<_, StackError>>()?;
        Ok(NodeEndpoint { endpoint, dial })
    }
}
