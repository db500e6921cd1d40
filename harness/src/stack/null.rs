//! Null QUIC crypto: no encryption and no authentication, for QUIC running inside WireGuard,
//! which already provides both (the seed's "insecure QUIC on top of WireGuard").
//!
//! The handshake keeps TLS 1.3's shape (Initial → Handshake → 1-RTT), because quinn's state
//! machine expects it, and only carries the transport parameters. Packets are left in the
//! clear but carry an 8-byte xxh3 tag over the *full* packet number, header and payload:
//! an AEAD would also reject packets whose truncated packet number was decoded wrongly (after
//! heavy reordering); without that check quinn acknowledges packets that were never sent and
//! the connection dies. The tag detects accidents, not attacks: WireGuard handles those.

use bytes::BytesMut;
use quinn_proto::{
    crypto::{self, CryptoError, ExportKeyingMaterialError, KeyPair, Keys, UnsupportedVersion},
    transport_parameters::TransportParameters,
    ConnectError, ConnectionId, Side, TransportError,
};
use std::{any::Any, sync::Arc};
use xxhash_rust::xxh3::Xxh3;

const TAG_LEN: usize = 8;

/// Handshake messages: type, 2-byte length, body.
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const PARAMETERS: u8 = 3;
const FINISHED: u8 = 4;

/// Null crypto's packet key: plaintext plus an 8-byte xxh3 tag over packet number, header
/// and payload.
pub struct NullPacketKey;

fn tag(packet: u64, header: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
    let mut h = Xxh3::with_seed(packet);
    h.update(header);
    h.update(payload);
    h.digest().to_be_bytes()
}

impl crypto::PacketKey for NullPacketKey {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        let (header, rest) = buf.split_at_mut(header_len);
        let (payload, tag_out) = rest.split_at_mut(rest.len() - TAG_LEN);
        tag_out.copy_from_slice(&tag(packet, header, payload));
    }

    fn decrypt(
        &self,
        packet: u64,
        header: &[u8],
        payload: &mut BytesMut,
    ) -> Result<(), CryptoError> {
        if payload.len() < TAG_LEN {
            return Err(CryptoError);
        }
        let body_len = payload.len() - TAG_LEN;
        if payload[body_len..] != tag(packet, header, &payload[..body_len]) {
            return Err(CryptoError);
        }
        payload.truncate(body_len);
        Ok(())
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }
    fn confidentiality_limit(&self) -> u64 {
        u64::MAX
    }
    fn integrity_limit(&self) -> u64 {
        u64::MAX
    }
}

struct NullHeaderKey;

impl crypto::HeaderKey for NullHeaderKey {
    fn decrypt(&self, _pn_offset: usize, _packet: &mut [u8]) {}
    fn encrypt(&self, _pn_offset: usize, _packet: &mut [u8]) {}
    fn sample_size(&self) -> usize {
        0
    }
}

fn packet_keys() -> KeyPair<Box<dyn crypto::PacketKey>> {
    KeyPair {
        local: Box::new(NullPacketKey),
        remote: Box::new(NullPacketKey),
    }
}

fn keys() -> Keys {
    Keys {
        header: KeyPair {
            local: Box::new(NullHeaderKey),
            remote: Box::new(NullHeaderKey),
        },
        packet: packet_keys(),
    }
}

fn protocol_error(msg: &str) -> TransportError {
    TransportError {
        code: quinn_proto::TransportErrorCode::PROTOCOL_VIOLATION,
        frame: None,
        reason: format!("null crypto handshake: {msg}"),
    }
}

/// One side of a null-crypto handshake.
struct NullSession {
    side: Side,
    params: TransportParameters,
    peer_params: Option<TransportParameters>,
    /// Handshake bytes received but not yet parsed into whole messages.
    inbox: Vec<u8>,
    /// Messages sent so far (each side sends at most two), and keys handed out.
    sent: u8,
    /// The client's ServerHello arrived: move to Handshake keys at the next write.
    upgrade: bool,
    handshaking: bool,
}

impl NullSession {
    fn new(side: Side, params: TransportParameters) -> Self {
        NullSession {
            side,
            params,
            peer_params: None,
            inbox: Vec::new(),
            sent: 0,
            upgrade: false,
            handshaking: true,
        }
    }

    fn emit(&self, kind: u8, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        if kind == CLIENT_HELLO || kind == PARAMETERS {
            self.params.write(&mut body);
        }
        out.push(kind);
        // Transport parameters are a few hundred bytes at most.
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }

    fn on_message(&mut self, kind: u8, mut body: &[u8]) -> Result<bool, TransportError> {
        let expected_params = match self.side {
            Side::Server => CLIENT_HELLO,
            Side::Client => PARAMETERS,
        };
        match kind {
            k if k == expected_params && self.peer_params.is_none() => {
                // quinn's reader takes the reading side (it validates what the peer may send).
                let p = TransportParameters::read(self.side, &mut body)
                    .map_err(|e| protocol_error(&format!("bad transport parameters: {e:?}")))?;
                self.peer_params = Some(p);
                Ok(true)
            }
            SERVER_HELLO if self.side == Side::Client => {
                self.upgrade = true;
                Ok(false)
            }
            FINISHED if self.side == Side::Server => {
                self.handshaking = false;
                Ok(false)
            }
            other => Err(protocol_error(&format!("unexpected message type {other}"))),
        }
    }
}

impl crypto::Session for NullSession {
    fn initial_keys(&self, _dst_cid: &ConnectionId, _side: Side) -> Keys {
        keys()
    }
    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        self.peer_params.map(|_| Box::new(()) as Box<dyn Any>)
    }
    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        None
    }
    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn crypto::PacketKey>)> {
        None
    }
    fn early_data_accepted(&self) -> Option<bool> {
        None
    }
    fn is_handshaking(&self) -> bool {
        self.handshaking
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inbox.extend_from_slice(buf);
        let mut ready = false;
        while self.inbox.len() >= 3 {
            let len = u16::from_be_bytes([self.inbox[1], self.inbox[2]]) as usize;
            if self.inbox.len() < 3 + len {
                break;
            }
            let msg: Vec<u8> = self.inbox.drain(..3 + len).collect();
            ready |= self.on_message(msg[0], &msg[3..])?;
        }
        Ok(ready)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        Ok(self.peer_params)
    }

    fn write_handshake(&mut self, out: &mut Vec<u8>) -> Option<Keys> {
        match (self.side, self.sent) {
            // Client, Initial space: the hello, then Handshake keys once the server answered.
            (Side::Client, 0) => {
                self.emit(CLIENT_HELLO, out);
                self.sent = 1;
                None
            }
            (Side::Client, 1) if self.upgrade => {
                self.sent = 2;
                Some(keys())
            }
            // Client, Handshake space: finish once the server's parameters are in.
            (Side::Client, 2) if self.peer_params.is_some() => {
                self.emit(FINISHED, out);
                self.sent = 3;
                self.handshaking = false;
                Some(keys())
            }
            // Server: hello in Initial, parameters in Handshake, then 1-RTT.
            (Side::Server, 0) if self.peer_params.is_some() => {
                self.emit(SERVER_HELLO, out);
                self.sent = 1;
                Some(keys())
            }
            (Side::Server, 1) => {
                self.emit(PARAMETERS, out);
                self.sent = 2;
                Some(keys())
            }
            _ => None,
        }
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn crypto::PacketKey>>> {
        Some(packet_keys())
    }
    fn is_valid_retry(
        &self,
        _orig_dst_cid: &ConnectionId,
        _header: &[u8],
        _payload: &[u8],
    ) -> bool {
        false // The server never sends Retry.
    }
    fn export_keying_material(
        &self,
        _: &mut [u8],
        _: &[u8],
        _: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        Err(ExportKeyingMaterialError)
    }
}

/// Client side of null crypto.
#[derive(Debug)]
pub struct NullClient;

impl crypto::ClientConfig for NullClient {
    fn start_session(
        self: Arc<Self>,
        _version: u32,
        _server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        Ok(Box::new(NullSession::new(Side::Client, *params)))
    }
}

/// Server side of null crypto.
#[derive(Debug)]
pub struct NullServer;

impl crypto::ServerConfig for NullServer {
    fn initial_keys(
        &self,
        _version: u32,
        _dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        Ok(keys())
    }
    fn retry_tag(&self, _version: u32, _orig_dst_cid: &ConnectionId, _packet: &[u8]) -> [u8; 16] {
        [0; 16]
    }
    fn start_session(
        self: Arc<Self>,
        _version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(NullSession::new(Side::Server, *params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::crypto::PacketKey;

    #[test]
    fn tag_binds_the_full_packet_number() {
        let k = NullPacketKey;
        let header = [0x40u8, 1, 2, 3];
        let mut buf = header.to_vec();
        buf.extend_from_slice(b"payload");
        buf.extend_from_slice(&[0; TAG_LEN]);
        k.encrypt(1000, &mut buf, header.len());
        let payload = || BytesMut::from(&buf[header.len()..]);
        let mut ok = payload();
        assert!(k.decrypt(1000, &header, &mut ok).is_ok());
        assert_eq!(&ok[..], b"payload");
        // Same truncated bits, different full packet number: must be rejected.
        assert!(k.decrypt(1000 + 256, &header, &mut payload()).is_err());
        let mut flipped = payload();
        flipped[0] ^= 1;
        assert!(k.decrypt(1000, &header, &mut flipped).is_err());
        assert!(k.decrypt(1000, &[0x41, 1, 2, 3], &mut payload()).is_err());
        assert!(k
            .decrypt(1000, &header, &mut BytesMut::from(&[1u8, 2][..]))
            .is_err());
    }

    fn params() -> TransportParameters {
        // An empty parameter list is valid: every parameter takes its default.
        TransportParameters::read(Side::Server, &mut &[][..]).expect("empty parameters")
    }

    #[test]
    fn garbage_handshake_is_an_error_not_a_panic() {
        let mut s = NullSession::new(Side::Server, params());
        assert!(
            crypto::Session::read_handshake(&mut s, &[CLIENT_HELLO, 0, 3, 0xff, 0xff, 0xff])
                .is_err()
        );
        let mut s = NullSession::new(Side::Server, params());
        assert!(crypto::Session::read_handshake(&mut s, &[9, 0, 0]).is_err());
    }
}
