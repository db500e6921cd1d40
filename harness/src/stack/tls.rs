//! QUIC's TLS 1.3 crypto with peers pinned by public key.
//!
//! The seed's network authenticates node keys out of band, so there is no PKI: each node
//! has a fresh self-signed Ed25519 certificate per run, and a verifier accepts exactly the
//! scenario's node keys (the one expected node when dialling, any other node when
//! accepting). There is no accept-anything verifier. Session resumption and tickets are off,
//! so every connection measures a full handshake.

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use std::{fmt, sync::Arc};

/// ALPN protocol id of stackbench's object transfer.
pub const ALPN: &[u8] = b"stackbench/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the node key: {0}")]
    KeyGen(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

/// A node's keys, fresh for every run: a TLS key pair with its self-signed certificate,
/// and a WireGuard (X25519) key.
pub struct NodeIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// DER SubjectPublicKeyInfo, the value peers pin.
    pub spki: Vec<u8>,
    pub wg_secret: boringtun::x25519::StaticSecret,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "NodeIdentity({})", fingerprint(&self.spki))
    }
}

impl NodeIdentity {
    /// A fresh Ed25519 identity for node `index`.
    pub fn generate(index: u32) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let params = rcgen::CertificateParams::new(vec![server_name(index)])?;
        let cert = params.self_signed(&key)?;
        Ok(NodeIdentity {
            cert: cert.der().clone(),
            spki: key.public_key_der(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            wg_secret: boringtun::x25519::StaticSecret::random_from_rng(rand::rngs::OsRng),
        })
    }

    /// The secret keys, for a node that will start from a file.
    pub fn export(&self) -> stackbench_core::control::NodeKeys {
        stackbench_core::control::NodeKeys {
            cert_der: self.cert.to_vec(),
            key_pkcs8: self.key.secret_pkcs8_der().to_vec(),
            wg_secret: self.wg_secret.to_bytes(),
        }
    }

    /// The identity whose keys were exported to `keys`.
    pub fn import(keys: &stackbench_core::control::NodeKeys) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::try_from(keys.key_pkcs8.as_slice())?;
        Ok(NodeIdentity {
            cert: CertificateDer::from(keys.cert_der.clone()),
            spki: key.public_key_der(),
            key: PrivatePkcs8KeyDer::from(keys.key_pkcs8.clone()),
            wg_secret: boringtun::x25519::StaticSecret::from(keys.wg_secret),
        })
    }

    pub fn wg_public(&self) -> [u8; 32] {
        boringtun::x25519::PublicKey::from(&self.wg_secret).to_bytes()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// The TLS server name a node's certificate carries.
pub fn server_name(index: u32) -> String {
    format!("node-{index}")
}

/// Short, printable SHA-256 fingerprint of a public key.
pub fn fingerprint(spki: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, spki);
    let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A peer's pinned key.
#[derive(Debug, Clone)]
pub struct PinnedPeer {
    pub index: u32,
    pub spki: Vec<u8>,
}

#[derive(thiserror::Error)]
#[error("peer presented key {presented}, which is not {expected}")]
struct KeyNotPinned {
    presented: String,
    expected: String,
}

/// rustls shows this error with `Debug`; make that the readable sentence.
impl fmt::Debug for KeyNotPinned {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Accepts a certificate only if its public key is one of `allowed`.
#[derive(Debug)]
struct PinnedVerifier {
    allowed: Vec<PinnedPeer>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(allowed: Vec<PinnedPeer>, provider: &CryptoProvider) -> Arc<Self> {
        Arc::new(PinnedVerifier {
            allowed,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let ee = webpki::EndEntityCert::try_from(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = ee.subject_public_key_info();
        if self.allowed.iter().any(|p| p.spki == spki.as_ref()) {
            return Ok(());
        }
        let expected = match self.allowed.as_slice() {
            [one] => format!("node {}'s pinned key {}", one.index, fingerprint(&one.spki)),
            many => format!("any of the {} pinned node keys", many.len()),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(KeyNotPinned {
                presented: fingerprint(spki.as_ref()),
                expected,
            })),
        )))
    }
}

/// The signature methods both verifier traits require: TLS 1.3 only, checked with the
/// provider's algorithms.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not offered".into()))
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }
    signature_checks!();
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }
    signature_checks!();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether TLS session resumption (and 0-RTT) is allowed. Stacks run with it off, so every
/// connection is a full handshake, unless a churn scenario asks for resumed dials; the
/// benchmarks also time resumed handshakes.
#[derive(Debug, Clone)]
pub enum Resumption {
    Off,
    /// The server issues a ticket per connection and the client keeps them in memory. The
    /// server's store counts the sessions it resumed, so a measurement can prove that its
    /// handshakes really were resumed.
    On(Arc<ResumingStore>),
}

impl Resumption {
    pub fn on() -> Resumption {
        Resumption::On(Arc::new(ResumingStore::default()))
    }
}

/// The server's session store, counting the handshakes it resumed.
#[derive(Debug)]
pub struct ResumingStore {
    inner: Arc<dyn rustls::server::StoresServerSessions>,
    resumed: std::sync::atomic::AtomicU64,
}

impl Default for ResumingStore {
    fn default() -> Self {
        ResumingStore {
            inner: rustls::server::ServerSessionMemoryCache::new(256),
            resumed: Default::default(),
        }
    }
}

impl ResumingStore {
    /// Sessions resumed so far.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl rustls::server::StoresServerSessions for ResumingStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.inner.take(key);
        if v.is_some() {
            self.resumed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        v
    }
    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// Crypto for dialling `peer`: TLS 1.3 only, no resumption, peer pinned, our key presented.
pub fn client_crypto(
    me: &NodeIdentity,
    peer: PinnedPeer,
) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, TlsError> {
    client_crypto_with(me, peer, Resumption::Off)
}

/// [`client_crypto`] with a choice of resumption.
pub fn client_crypto_with(
    me: &NodeIdentity,
    peer: PinnedPeer,
    resumption: Resumption,
) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, TlsError> {
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(PinnedVerifier::new(vec![peer], &provider))
        .with_client_auth_cert(vec![me.cert.clone()], me.key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = match resumption {
        Resumption::Off => rustls::client::Resumption::disabled(),
        Resumption::On(_) => rustls::client::Resumption::in_memory_sessions(64),
    };
    // Early data is only sent when the dialler asks for 0-RTT (quinn's `into_0rtt`).
    cfg.enable_early_data = matches!(resumption, Resumption::On(_));
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(cfg))
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(Arc::new(quic))
}

/// Crypto for accepting any of `peers`: client certificates required and pinned, no tickets.
pub fn server_crypto(
    me: &NodeIdentity,
    peers: Vec<PinnedPeer>,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, TlsError> {
    server_crypto_with(me, peers, Resumption::Off)
}

/// [`server_crypto`] with a choice of resumption (one ticket per connection when on).
pub fn server_crypto_with(
    me: &NodeIdentity,
    peers: Vec<PinnedPeer>,
    resumption: Resumption,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, TlsError> {
    let provider = provider();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(PinnedVerifier::new(peers, &provider))
        .with_single_cert(vec![me.cert.clone()], me.key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    match resumption {
        Resumption::Off => cfg.send_tls13_tickets = 0,
        Resumption::On(store) => {
            cfg.send_tls13_tickets = 1;
            cfg.session_storage = store;
            // QUIC requires exactly this value to accept 0-RTT (RFC 9001 §4.6.1).
            cfg.max_early_data_size = u32::MAX;
        }
    }
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(cfg))
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(Arc::new(quic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_exactly_the_listed_keys() {
        let a = NodeIdentity::generate(0).expect("keygen");
        let b = NodeIdentity::generate(1).expect("keygen");
        let v = PinnedVerifier::new(
            vec![PinnedPeer {
                index: 1,
                spki: b.spki.clone(),
            }],
            &provider(),
        );
        assert!(v.check(&b.cert).is_ok(), "the pinned key is accepted");
        let err = v
            .check(&a.cert)
            .expect_err("an unpinned key is refused")
            .to_string();
        assert!(err.contains("not node 1's pinned key"), "{err}");
        assert!(err.contains(&fingerprint(&a.spki)), "{err}");
    }

    #[test]
    fn configs_build() {
        let a = NodeIdentity::generate(0).expect("keygen");
        let b = NodeIdentity::generate(1).expect("keygen");
        client_crypto(
            &a,
            PinnedPeer {
                index: 1,
                spki: b.spki.clone(),
            },
        )
        .expect("client config");
        server_crypto(
            &a,
            vec![PinnedPeer {
                index: 1,
                spki: b.spki,
            }],
        )
        .expect("server config");
    }
}
