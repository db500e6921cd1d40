//! `quic-tls` and `quic-null`: quinn straight on UDP over the node's veth. `quic-null` is the
//! insecure control: it shows what QUIC costs without any crypto.

use super::{
    crypto, Availability, CryptoKind, NodeContext, NodeEndpoint, PreparedUnderlay, Stack,
    StackError, StackId, UnderlayKind,
};
use crate::{check::HostCaps, topology::Topology};
use std::{net::SocketAddr, sync::Arc};

/// QUIC with the given crypto directly on UDP.
#[derive(Debug)]
pub struct QuicUdp {
    pub crypto: CryptoKind,
}

/// Plain UDP needs nothing built: nodes listen on their veth addresses.
struct PlainUdp {
    addrs: Vec<SocketAddr>,
    crypto: CryptoKind,
}

impl PreparedUnderlay for PlainUdp {
    fn node_addr(&self, index: u32) -> SocketAddr {
        self.addrs[index as usize]
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "underlay": "udp",
            "crypto": crypto::describe(self.crypto),
            "socket_buffer_requested_bytes": super::SOCKET_BUFFER,
            "congestion_control": "cubic (quinn default)",
        })
    }
}

impl Stack for QuicUdp {
    fn id(&self) -> StackId {
        StackId {
            crypto: self.crypto,
            underlay: UnderlayKind::Udp,
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        Availability::with_namespaces(host)
    }

    fn prepare(
        &self,
        topology: &Topology,
        opts: &super::StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        let addrs = (0..topology.nodes())
            .map(|i| {
                let mut a = topology.node_socket_addr(i);
                a.set_port(a.port() + opts.slot as u16);
                a
            })
            .collect();
        Ok(Box::new(PlainUdp {
            addrs,
            crypto: self.crypto,
        }))
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        udp_endpoint(self.crypto, ctx, None, None, Arc::new(super::NoPeers))
    }
}

/// A QUIC endpoint on an ordinary UDP socket at `ctx.bind` (a veth or a tunnel address).
pub fn udp_endpoint(
    crypto: CryptoKind,
    ctx: &NodeContext<'_>,
    max_udp_payload: Option<u16>,
    diagnose: Option<super::Diagnose>,
    control: Arc<dyn super::PeerControl>,
) -> Result<NodeEndpoint, StackError> {
    let (server, dial) = crypto::quic_configs(crypto, ctx, max_udp_payload)?;
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
    Ok(NodeEndpoint {
        endpoint,
        dial,
        diagnose,
        control,
    })
}
