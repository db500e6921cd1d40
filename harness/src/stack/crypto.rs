//! QUIC configurations for a stack's crypto: TLS 1.3 with pinned keys, or null crypto.
//! Every underlay builds its endpoints through here, so stacks differ only where they must.

use super::{
    null, tls, transport::transport_config_with, Dial, NodeContext, PeerInfo, Protocol, StackError,
};
use std::sync::Arc;

fn pinned(p: &PeerInfo) -> tls::PinnedPeer {
    tls::PinnedPeer {
        index: p.index,
        spki: p.spki.clone(),
    }
}

/// The server configuration and, per peer, how to dial it. With `ctx.resumption`, TLS
/// servers issue tickets and accept 0-RTT, and each dial gets a resuming configuration too.
pub fn quic_configs(
    protocol: Protocol,
    ctx: &NodeContext<'_>,
    max_udp_payload: Option<u16>,
) -> Result<(quinn::ServerConfig, Vec<Dial>), StackError> {
    let transport = transport_config_with(max_udp_payload, &ctx.transport);
    let resumption = || match ctx.resumption {
        true => tls::Resumption::on(),
        false => tls::Resumption::Off,
    };
    let mut server = match protocol {
        Protocol::QuicTls => quinn::ServerConfig::with_crypto(tls::server_crypto_with(
            ctx.identity,
            ctx.peers.iter().map(pinned).collect(),
            resumption(),
        )?),
        Protocol::QuicNull => quinn::ServerConfig::with_crypto(Arc::new(null::NullServer)),
        Protocol::Sctp => return Err(StackError::Setup("SCTP has no QUIC configuration".into())),
    };
    server.transport_config(transport.clone());
    let dial = ctx
        .peers
        .iter()
        .map(|p| {
            let client = |resumption| -> Result<quinn::ClientConfig, StackError> {
                let mut c = match protocol {
                    Protocol::QuicTls => quinn::ClientConfig::new(tls::client_crypto_with(
                        ctx.identity,
                        pinned(p),
                        resumption,
                    )?),
                    Protocol::QuicNull | Protocol::Sctp => {
                        quinn::ClientConfig::new(Arc::new(null::NullClient))
                    }
                };
                c.transport_config(transport.clone());
                Ok(c)
            };
            let resuming = match (protocol, ctx.resumption) {
                (Protocol::QuicTls, true) => Some(client(resumption())?),
                _ => None,
            };
            Ok(Dial {
                peer: p.index,
                config: client(tls::Resumption::Off)?,
                resuming,
                server_name: tls::server_name(p.index),
            })
        })
        .collect::<Result<_, StackError>>()?;
    Ok((server, dial))
}

/// How a stack's crypto is described in results.
pub fn describe(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::QuicTls => "TLS 1.3 (rustls, ring), Ed25519 keys pinned, no resumption",
        Protocol::QuicNull => {
            "none: plaintext packets with an xxh3 integrity tag over the full packet number"
        }
        Protocol::Sctp => "none: SCTP's CRC32c checksum only",
    }
}

/// How a stack's transport is described in results.
pub fn transport(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::QuicTls | Protocol::QuicNull => {
            "QUIC (quinn 0.11), cubic, one uni stream per object at its class's priority"
        }
        Protocol::Sctp => {
            "SCTP (usrsctp 0.9) in UDP datagrams (RFC 6951 framing, fixed ports), one stream per \
             priority, SCTP_SS_PRIORITY with I-DATA, RTO initial/min/max 500/200/10000 ms"
        }
    }
}
