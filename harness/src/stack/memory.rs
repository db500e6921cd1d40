//! Peers joined in memory, with no sockets and no clock but the caller's: a QUIC client and
//! server (quinn-proto endpoints) and a pair of WireGuard tunnels (boringtun's or GotaTun's). The
//! benchmarks time handshakes and per-packet crypto with them, so the numbers hold the
//! protocol work alone, without I/O or scheduling.

use super::wg_tunnel::{TunnelMaker, WgLibrary, WgTunnel};
use boringtun::x25519;
use bytes::BytesMut;
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, Event,
    ServerConfig,
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Instant,
};

const CLIENT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 4433);
const SERVER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 4433);
/// A handshake that has not finished after this many exchanges has failed.
const MAX_ROUNDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("connect: {0}")]
    Connect(#[from] quinn_proto::ConnectError),
    #[error("the server refused the connection: {0}")]
    Accept(String),
    #[error("the connection was lost during the handshake: {0}")]
    Lost(quinn_proto::ConnectionError),
    #[error("the handshake did not finish within {MAX_ROUNDS} exchanges")]
    Stuck,
    #[error("WireGuard handshake: {0}")]
    Wireguard(String),
}

/// What one handshake put on the (virtual) wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeTraffic {
    pub datagrams: u32,
    pub client_to_server_bytes: usize,
    pub server_to_client_bytes: usize,
}

/// A QUIC client and server endpoint that exchange datagrams through memory. Each
/// [`QuicPair::handshake`] uses fresh endpoints; the crypto configurations (and so TLS
/// session tickets) persist across handshakes.
pub struct QuicPair {
    client_config: ClientConfig,
    server_config: Arc<ServerConfig>,
    server_name: String,
}

/// One side of a connection under way.
struct Side {
    endpoint: Endpoint,
    conn: Option<(ConnectionHandle, Connection)>,
    connected: bool,
}

impl Side {
    /// Feeds one datagram from `from`; a new connection is accepted (server side).
    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), MemoryError> {
        let mut response = Vec::new();
        match self
            .endpoint
            .handle(now, from, None, None, BytesMut::from(data), &mut response)
        {
            Some(DatagramEvent::NewConnection(incoming)) => {
                let accepted = self
                    .endpoint
                    .accept(incoming, now, &mut response, None)
                    .map_err(|e| MemoryError::Accept(e.cause.to_string()))?;
                self.conn = Some(accepted);
            }
            Some(DatagramEvent::ConnectionEvent(_, event)) => {
                if let Some((_, c)) = &mut self.conn {
                    c.handle_event(event);
                }
            }
            Some(DatagramEvent::Response(_)) | None => {}
        }
        Ok(())
    }

    /// Datagrams this side wants to send now.
    fn transmit(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = vec![];
        let Some((_, c)) = &mut self.conn else {
            return out;
        };
        let mut buf = Vec::new();
        while let Some(t) = c.poll_transmit(now, 1, &mut buf) {
            out.push(buf[..t.size].to_vec());
            buf.clear();
        }
        out
    }

    /// Runs connection ↔ endpoint events and notes when the handshake completed.
    fn settle(&mut self) -> Result<(), MemoryError> {
        let Some((handle, c)) = &mut self.conn else {
            return Ok(());
        };
        while let Some(ev) = c.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(*handle, ev) {
                c.handle_event(back);
            }
        }
        while let Some(ev) = c.poll() {
            match ev {
                Event::Connected => self.connected = true,
                Event::ConnectionLost { reason } => return Err(MemoryError::Lost(reason)),
                _ => {}
            }
        }
        Ok(())
    }
}

impl QuicPair {
    pub fn new(
        client_config: ClientConfig,
        server_config: ServerConfig,
        server_name: String,
    ) -> Self {
        QuicPair {
            client_config,
            server_config: Arc::new(server_config),
            server_name,
        }
    }

    /// One complete handshake: both sides connected and every message that follows it
    /// (session tickets, connection IDs) delivered.
    pub fn handshake(&mut self) -> Result<HandshakeTraffic, MemoryError> {
        let now = Instant::now();
        let endpoint_config = Arc::new(EndpointConfig::default());
        let mut client = Side {
            endpoint: Endpoint::new(endpoint_config.clone(), None, false, None),
            conn: None,
            connected: false,
        };
        let mut server = Side {
            endpoint: Endpoint::new(
                endpoint_config,
                Some(self.server_config.clone()),
                false,
                None,
            ),
            conn: None,
            connected: false,
        };
        client.conn = Some(client.endpoint.connect(
            now,
            self.client_config.clone(),
            SERVER_ADDR,
            &self.server_name,
        )?);
        let mut traffic = HandshakeTraffic::default();
        for _ in 0..MAX_ROUNDS {
            let to_server = client.transmit(now);
            for d in &to_server {
                traffic.client_to_server_bytes += d.len();
                server.receive(now, CLIENT_ADDR, d)?;
            }
            server.settle()?;
            let to_client = server.transmit(now);
            for d in &to_client {
                traffic.server_to_client_bytes += d.len();
                client.receive(now, SERVER_ADDR, d)?;
            }
            client.settle()?;
            traffic.datagrams += (to_server.len() + to_client.len()) as u32;
            if to_server.is_empty() && to_client.is_empty() && client.connected && server.connected
            {
                return Ok(traffic);
            }
        }
        Err(MemoryError::Stuck)
    }
}

/// A WireGuard tunnel between two fresh key pairs, of one library, joined in memory.
pub struct WgPair {
    pub library: WgLibrary,
    pub initiator: Box<dyn WgTunnel>,
    pub responder: Box<dyn WgTunnel>,
    /// Kept alive with the tunnels: what a node's tunnels share.
    _makers: (Box<dyn TunnelMaker>, Box<dyn TunnelMaker>),
    scratch: Vec<u8>,
}

/// The (virtual) addresses each side of a [`WgPair`] sees the other at.
pub const WG_INITIATOR_ADDR: SocketAddr = CLIENT_ADDR;
pub const WG_RESPONDER_ADDR: SocketAddr = SERVER_ADDR;

impl WgPair {
    /// Two tunnels that know each other's keys; no handshake yet.
    pub fn new(library: WgLibrary) -> WgPair {
        let a = x25519::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let b = x25519::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let (pa, pb) = (x25519::PublicKey::from(&a), x25519::PublicKey::from(&b));
        let (ma, mb) = (library.tunnels(&a), library.tunnels(&b));
        WgPair {
            library,
            initiator: ma.tunnel(pb, 1),
            responder: mb.tunnel(pa, 0),
            _makers: (ma, mb),
            scratch: vec![0u8; 65_536],
        }
    }

    /// The Noise IK exchange, started by the initiator's first packet: initiation, response,
    /// then the initiator's keepalive and the packet that waited, which confirm the session
    /// to the responder.
    pub fn handshake(&mut self) -> Result<(), MemoryError> {
        let wg = |what: &str| MemoryError::Wireguard(format!("{}: {what}", self.library));
        let probe = ip_packet(100);
        let mut out = vec![0u8; 2048];
        let mut init = vec![];
        let sealed = self
            .initiator
            .seal(&probe, &mut out, &mut |p| init.push(p.to_vec()))
            .map_err(|e| wg(&e))?;
        if sealed.is_some() || init.len() != 1 {
            return Err(wg("the first packet did not start a handshake"));
        }
        let response = exchange(
            &mut *self.responder,
            WG_INITIATOR_ADDR,
            &init,
            &mut self.scratch,
        )
        .0;
        let (confirm, _) = exchange(
            &mut *self.initiator,
            WG_RESPONDER_ADDR,
            &response,
            &mut self.scratch,
        );
        let (_, opened) = exchange(
            &mut *self.responder,
            WG_INITIATOR_ADDR,
            &confirm,
            &mut self.scratch,
        );
        // GotaTun pads a packet that waited to a multiple of 16 bytes, as WireGuard may.
        if !matches!(&opened[..], [p] if p.get(..probe.len()) == Some(&probe[..])) {
            return Err(wg(&format!(
                "the responder opened {} packets, not the one that waited for the handshake",
                opened.len()
            )));
        }
        Ok(())
    }

    /// The inner packet the responder opens from `datagram`, if any.
    pub fn open_responder(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let mut opened = None;
        self.responder.open(
            WG_INITIATOR_ADDR,
            datagram,
            &mut self.scratch,
            &mut |_| {},
            &mut |p| opened = Some(p.to_vec()),
        );
        opened
    }
}

/// Opens each of `datagrams` on `tunnel`: what it sends back and the inner packets.
fn exchange(
    tunnel: &mut dyn WgTunnel,
    from: SocketAddr,
    datagrams: &[Vec<u8>],
    scratch: &mut [u8],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut sent, mut opened) = (vec![], vec![]);
    for d in datagrams {
        tunnel.open(from, d, scratch, &mut |p| sent.push(p.to_vec()), &mut |p| {
            opened.push(p.to_vec())
        });
    }
    (sent, opened)
}

/// A QUIC packet-protection key pair as quinn uses it per packet: one seals, the other
/// (same secret, other side) opens.
pub struct QuicPacketKeys {
    /// The AEAD, and whether a stack uses it.
    pub name: &'static str,
    pub seal: Box<dyn quinn_proto::crypto::PacketKey>,
    pub open: Box<dyn quinn_proto::crypto::PacketKey>,
}

/// The packet keys of every TLS 1.3 suite the stacks' crypto provider (rustls with ring)
/// offers, and null crypto's. quic-tls negotiates AES-256-GCM: it leads ring's list on both
/// sides.
pub fn quic_packet_keys() -> Vec<QuicPacketKeys> {
    use rustls::{crypto::ring::cipher_suite as cs, quic, Side};
    let suites: [(&'static str, rustls::SupportedCipherSuite); 3] = [
        ("aes-256-gcm (quic-tls)", cs::TLS13_AES_256_GCM_SHA384),
        ("aes-128-gcm", cs::TLS13_AES_128_GCM_SHA256),
        ("chacha20-poly1305", cs::TLS13_CHACHA20_POLY1305_SHA256),
    ];
    let mut keys: Vec<QuicPacketKeys> = suites
        .into_iter()
        .filter_map(|(name, suite)| {
            let q = suite.tls13()?.quic_suite()?;
            let cid = [7u8; 8];
            Some(QuicPacketKeys {
                name,
                seal: Box::new(q.keys(&cid, Side::Client, quic::Version::V1).local.packet),
                open: Box::new(q.keys(&cid, Side::Server, quic::Version::V1).remote.packet),
            })
        })
        .collect();
    keys.push(QuicPacketKeys {
        name: "null-xxh3 (quic-null)",
        seal: Box::new(super::null::NullPacketKey),
        open: Box::new(super::null::NullPacketKey),
    });
    keys
}

/// An IPv4+UDP packet of `total` bytes (at least 28) carrying zeros, as WireGuard carries it.
pub fn ip_packet(total: usize) -> Vec<u8> {
    let mut p = vec![0u8; total.max(super::wg_socket::INNER_HEADER)];
    let payload = p.len() - super::wg_socket::INNER_HEADER;
    super::wg_socket::write_inner_header(
        &mut p,
        std::net::SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 4433),
        std::net::SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 4433),
        payload,
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{null, tls, transport_config};

    fn tls_pair(resumption: tls::Resumption) -> QuicPair {
        let a = tls::NodeIdentity::generate(0).expect("keygen");
        let b = tls::NodeIdentity::generate(1).expect("keygen");
        let pin = |id: &tls::NodeIdentity, index| tls::PinnedPeer {
            index,
            spki: id.spki.clone(),
        };
        let mut client = ClientConfig::new(
            tls::client_crypto_with(&a, pin(&b, 1), resumption.clone()).expect("client config"),
        );
        client.transport_config(transport_config(None));
        let server = ServerConfig::with_crypto(
            tls::server_crypto_with(&b, vec![pin(&a, 0)], resumption).expect("server config"),
        );
        QuicPair::new(client, server, tls::server_name(1))
    }

    #[test]
    fn tls_handshakes_complete_and_resume_when_allowed() {
        let mut full = tls_pair(tls::Resumption::Off);
        full.handshake().expect("full handshake");
        full.handshake().expect("second full handshake");
        let on = tls::Resumption::on();
        let tls::Resumption::On(store) = &on else {
            unreachable!("on() is On")
        };
        let store = store.clone();
        let mut resuming = tls_pair(on);
        resuming.handshake().expect("handshake that earns a ticket");
        assert_eq!(store.resumed(), 0, "the first handshake is full");
        resuming.handshake().expect("resumed handshake");
        resuming
            .handshake()
            .expect("resumed again with the newer ticket");
        assert_eq!(store.resumed(), 2, "later handshakes resume");
    }

    #[test]
    fn every_packet_key_opens_what_its_pair_sealed() {
        let keys = quic_packet_keys();
        assert_eq!(keys.len(), 4);
        for k in keys {
            let header = [0x40u8, 1, 2, 3, 4];
            let body = b"vote: block 17 is valid";
            let mut packet = header.to_vec();
            packet.extend_from_slice(body);
            packet.resize(packet.len() + k.seal.tag_len(), 0);
            k.seal.encrypt(9, &mut packet, header.len());
            let mut payload = BytesMut::from(&packet[header.len()..]);
            k.open.decrypt(9, &header, &mut payload).expect(k.name);
            assert_eq!(&payload[..], body, "{}", k.name);
            let mut wrong_pn = BytesMut::from(&packet[header.len()..]);
            assert!(
                k.open.decrypt(10, &header, &mut wrong_pn).is_err(),
                "{}: the packet number is bound",
                k.name
            );
        }
    }

    #[test]
    fn null_crypto_handshakes_complete() {
        let mut pair = QuicPair::new(
            ClientConfig::new(Arc::new(null::NullClient)),
            ServerConfig::with_crypto(Arc::new(null::NullServer)),
            "node1".into(),
        );
        let t = pair.handshake().expect("null handshake");
        assert!(t.datagrams >= 2, "{t:?}");
    }
}
