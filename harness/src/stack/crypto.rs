//! QUIC configurations for a stack's crypto: TLS 1.3 with pinned keys, or null crypto.
//! Every underlay builds its endpoints through here, so stacks differ only where they must.

use super::{
    null, tls, transport::transport_config_with, CryptoKind, Dial, NodeContext, PeerInfo,
    StackError,
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
    crypto: CryptoKind,
    ctx: &NodeContext<'_>,
    max_udp_payload: Option<u16>,
) -> Result<(quinn::ServerConfig, Vec<Dial>), StackError> {
    let transport = transport_config_with(max_udp_payload, &ctx.transport);
    let resumption = || match ctx.resumption {
        true => tls::Resumption::on(),
        false => tls::Resumption::Off,
    };
    let mut server = match crypto {
        CryptoKind::Tls => quinn::ServerConfig::with_crypto(tls::server_crypto_with(
            ctx.identity,
            ctx.peers.iter().map(pinned).collect(),
            resumption(),
        )?),
        CryptoKind::Null => quinn::ServerConfig::with_crypto(Arc::new(null::NullServer)),
    };
    server.transport_config(transport.clone());
    let dial = ctx
        .peers
        .iter()
        .map(|p| {
            let client = |resumption| -> Result<quinn::ClientConfig, StackError> {
                let mut c = match crypto {
                    CryptoKind::Tls => quinn::ClientConfig::new(tls::client_crypto_with(
                        ctx.identity,
                        pinned(p),
                        resumption,
                    )?),
                    CryptoKind::Null => quinn::ClientConfig::new(Arc::new(null::NullClient)),
                };
                c.transport_config(transport.clone());
                Ok(c)
            };
            let resuming = match (crypto, ctx.resumption) {
                (CryptoKind::Tls, true) => Some(client(resumption())?),
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
pub fn describe(crypto: CryptoKind) -> &'static str {
    match crypto {
        CryptoKind::Tls => "TLS 1.3 (rustls, ring), Ed25519 keys pinned, no resumption",
        CryptoKind::Null => {
            "none: plaintext packets with an xxh3 integrity tag over the full packet number"
        }
    }
}
