//! `quic-tls` and `quic-null`: quinn straight on UDP over the node's veth. `quic-null` is the
//! insecure control: it shows what QUIC costs without any crypto.

use super::{
    crypto, Availability, Endpoint, NodeContext, NodeEndpoint, PreparedUnderlay, Protocol, Stack,
    StackError, StackId, UnderlayKind,
};
use crate::{check::HostCaps, topology::Topology};
use std::{net::SocketAddr, sync::Arc};

/// QUIC with the given crypto directly on UDP.
#[derive(Debug)]
pub struct OverUdp {
    pub protocol: Protocol,
}

/// Plain UDP needs nothing built: nodes listen on their veth addresses.
struct PlainUdp {
    addrs: Vec<SocketAddr>,
    protocol: Protocol,
}

impl PreparedUnderlay for PlainUdp {
    fn node_addr(&self, index: u32) -> SocketAddr {
        self.addrs[index as usize]
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "underlay": "udp",
            "crypto": crypto::describe(self.protocol),
            "transport": super::crypto::transport(self.protocol),
            "socket_buffer_requested_bytes": super::SOCKET_BUFFER,
        })
    }
}

impl Stack for OverUdp {
    fn id(&self) -> StackId {
        StackId {
            protocol: self.protocol,
            underlay: UnderlayKind::Udp,
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        Availability::with_namespaces(host).with_protocol(self.protocol, host)
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
            protocol: self.protocol,
        }))
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        udp_endpoint(self.protocol, ctx, None, None, Arc::new(super::NoPeers))
    }
}

/// An endpoint on an ordinary UDP socket at `ctx.bind` (a veth or a tunnel address), whose
/// datagrams carry at most `max_udp_payload` bytes (the link's MTU less IP and UDP when
/// `None`).
pub fn udp_endpoint(
    protocol: Protocol,
    ctx: &NodeContext<'_>,
    max_udp_payload: Option<u16>,
    diagnose: Option<super::Diagnose>,
    control: Arc<dyn super::PeerControl>,
) -> Result<NodeEndpoint, StackError> {
    let bind_err = bind_error(ctx.bind);
    let (socket, rcvbuf) = super::plain_udp::bind(ctx.bind, ctx.datagrams).map_err(bind_err)?;
    tracing::debug!("node {}: UDP receive buffer {rcvbuf} bytes", ctx.index);
    endpoint_on(protocol, ctx, socket, max_udp_payload, diagnose, control)
}

/// The endpoint of `protocol` on a datagram socket (UDP, or the in-process WireGuard).
pub fn endpoint_on(
    protocol: Protocol,
    ctx: &NodeContext<'_>,
    socket: Arc<dyn quinn::AsyncUdpSocket>,
    max_udp_payload: Option<u16>,
    diagnose: Option<super::Diagnose>,
    control: Arc<dyn super::PeerControl>,
) -> Result<NodeEndpoint, StackError> {
    let bind_err = bind_error(ctx.bind);
    let (endpoint, dial) = match protocol {
        Protocol::Sctp => {
            let mtu = max_udp_payload.unwrap_or(super::sctp::UDP_PAYLOAD_ON_ETHERNET);
            let ep = super::sctp::endpoint::SctpEndpoint::new(
                socket,
                super::sctp::engine::Scheduler::Priority,
                mtu.into(),
                crate::workload::HEADER_LEN,
            )
            .map_err(|e| StackError::Setup(e.to_string()))?;
            (Endpoint::Sctp(ep), vec![])
        }
        Protocol::QuicTls | Protocol::QuicNull => {
            let (server, dial) = crypto::quic_configs(protocol, ctx, max_udp_payload)?;
            let ep = quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                Some(server),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(bind_err)?;
            (Endpoint::Quic(ep), dial)
        }
    };
    Ok(NodeEndpoint {
        endpoint,
        dial,
        diagnose,
        control,
    })
}

/// Turns an I/O error on the socket at `addr` into the stack's error for it.
fn bind_error(addr: SocketAddr) -> impl Fn(std::io::Error) -> StackError + Copy {
    move |source| StackError::Bind { addr, source }
}
