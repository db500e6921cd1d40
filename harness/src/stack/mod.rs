//! Transport-security stacks: a transport protocol (QUIC with its crypto, or SCTP) × the
//! underlay it runs on.
//!
//! Every stack sits behind [`Stack`]. The controller asks it whether the host can run it and
//! has it build its underlay across the topology; each node asks it for an endpoint.
//! The conformance test (`tests/conformance.rs`) runs every available stack through the
//! same checks.

mod connection;
mod crypto;
mod daemon;
mod lifecycle;
pub mod memory;
pub mod null;
pub mod plain_udp;
mod quic_udp;
pub mod sctp;
pub mod sctp_kernel;
pub mod tls;
mod transport;
mod wg_control;
pub mod wg_costs;
pub mod wg_gotatun;
mod wg_inproc;
mod wg_kernel;
pub mod wg_netlink;
pub mod wg_socket;
pub mod wg_tun;
pub mod wg_tunnel;

pub use connection::{Arrived, Arriving, Conn, Connecting, Endpoint, Incoming, Sent};
pub use quic_udp::OverUdp;
pub use transport::{
    bind_udp, transport_config, transport_config_with, TransportPlan, MAX_UNI_STREAMS,
    SOCKET_BUFFER,
};
pub use wg_inproc::OverWgInproc;
pub use wg_kernel::OverWgKernel;
pub use wg_tun::{wireguard_go, Daemon, OverWgTun};

use crate::check::HostCaps;
use serde::{Deserialize, Serialize};
use std::{fmt, net::SocketAddr, sync::Arc};

/// The transport protocol of a stack, with the crypto it brings itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// QUIC with TLS 1.3 (rustls), peers pinned by public key.
    QuicTls,
    /// QUIC without encryption; WireGuard underneath provides confidentiality and
    /// authenticity.
    QuicNull,
    /// SCTP (usrsctp), which has no crypto of its own: WireGuard underneath, or none.
    Sctp,
}

impl Protocol {
    /// The underlays the protocol runs over: SCTP has no GotaTun variants (their QUIC
    /// stacks already compare GotaTun with boringtun); over kernel WireGuard it is kernel
    /// SCTP, not built yet.
    fn underlays(self) -> Vec<UnderlayKind> {
        match self {
            Protocol::QuicTls | Protocol::QuicNull => UnderlayKind::ALL.to_vec(),
            Protocol::Sctp => vec![
                UnderlayKind::Udp,
                UnderlayKind::WgBoringtun,
                UnderlayKind::WgInproc,
                UnderlayKind::WgGo,
                UnderlayKind::WgKernel,
            ],
        }
    }

    /// Whether the protocol is QUIC (quinn), with TLS or without crypto.
    pub fn is_quic(self) -> bool {
        self != Protocol::Sctp
    }
}

/// What the transport's UDP datagrams travel over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnderlayKind {
    Udp,
    WgBoringtun,
    WgKernel,
    WgInproc,
    WgGotatun,
    /// GotaTun's device serving a TUN.
    WgGotatunTun,
    WgGo,
}

/// A stack's identity; its name is what scenarios, results and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StackId {
    pub protocol: Protocol,
    pub underlay: UnderlayKind,
}

impl UnderlayKind {
    const ALL: [UnderlayKind; 7] = [
        UnderlayKind::Udp,
        UnderlayKind::WgBoringtun,
        UnderlayKind::WgKernel,
        UnderlayKind::WgInproc,
        UnderlayKind::WgGotatun,
        UnderlayKind::WgGotatunTun,
        UnderlayKind::WgGo,
    ];
    /// What the underlay adds to a stack's name, e.g. "+wg-inproc".
    pub fn suffix(self) -> &'static str {
        match self {
            UnderlayKind::Udp => "",
            UnderlayKind::WgBoringtun => "+wg-boringtun",
            UnderlayKind::WgKernel => "+wg-kernel",
            UnderlayKind::WgInproc => "+wg-inproc",
            UnderlayKind::WgGotatun => "+wg-gotatun",
            UnderlayKind::WgGotatunTun => "+wg-gotatun-tun",
            UnderlayKind::WgGo => "+wg-go",
        }
    }
    /// What an operator must grant for this underlay on a production node. The harness adds a
    /// network namespace per node to every stack, which root or an unprivileged user
    /// namespace provides; that is the harness's need, not the stack's.
    pub fn privileges(self) -> &'static str {
        match self {
            UnderlayKind::Udp | UnderlayKind::WgInproc | UnderlayKind::WgGotatun => {
                "none beyond a UDP socket"
            }
            UnderlayKind::WgBoringtun | UnderlayKind::WgGotatunTun | UnderlayKind::WgGo => {
                "a TUN device (CAP_NET_ADMIN once, or a persistent device)"
            }
            UnderlayKind::WgKernel => "the kernel WireGuard module + CAP_NET_ADMIN",
        }
    }
}

impl StackId {
    /// Every stack of the design, in report order.
    pub fn all() -> Vec<StackId> {
        let mut v = vec![];
        for protocol in [Protocol::QuicTls, Protocol::QuicNull, Protocol::Sctp] {
            for underlay in protocol.underlays() {
                v.push(StackId { protocol, underlay });
            }
        }
        v
    }

    pub fn name(&self) -> String {
        let c = match self.protocol {
            Protocol::QuicTls => "quic-tls",
            Protocol::QuicNull => "quic-null",
            Protocol::Sctp => "sctp",
        };
        format!("{c}{}", self.underlay.suffix())
    }

    /// What the operator must grant or install to run the stack.
    pub fn privileges(&self) -> String {
        match self.protocol {
            Protocol::Sctp if self.underlay == UnderlayKind::WgKernel => {
                "the kernel WireGuard and SCTP (sctp) modules + CAP_NET_ADMIN".to_owned()
            }
            Protocol::Sctp => format!(
                "{} + libusrsctp2 (userspace SCTP, no kernel module)",
                self.underlay.privileges()
            ),
            Protocol::QuicTls | Protocol::QuicNull => self.underlay.privileges().to_owned(),
        }
    }

    pub fn parse(name: &str) -> Option<StackId> {
        StackId::all().into_iter().find(|s| s.name() == name)
    }

    /// Whether the stack has a network interface of its own (a TUN or a kernel device),
    /// which automation creates, configures and removes.
    pub fn has_interface(&self) -> bool {
        matches!(
            self.underlay,
            UnderlayKind::WgBoringtun
                | UnderlayKind::WgGotatunTun
                | UnderlayKind::WgGo
                | UnderlayKind::WgKernel
        )
    }

    /// Whether the transport runs inside WireGuard.
    pub fn uses_wireguard(&self) -> bool {
        self.underlay != UnderlayKind::Udp
    }

    /// Whether the stack authenticates peers (TLS keys, or WireGuard keys underneath).
    pub fn authenticates_peers(&self) -> bool {
        !self.is_insecure()
    }

    /// A transport without crypto over plain UDP (QUIC without crypto, or SCTP): a control,
    /// never a candidate.
    pub fn is_insecure(&self) -> bool {
        self.protocol != Protocol::QuicTls && self.underlay == UnderlayKind::Udp
    }
}

impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether a stack can run on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Availability {
    Available,
    Unavailable(String),
}

impl Availability {
    /// This availability, unless `cap` is missing: then unavailable for `cap`'s reason.
    pub fn requiring(self, cap: &crate::check::Capability) -> Availability {
        match (self, cap) {
            (Availability::Available, Err(why)) => Availability::Unavailable(why.clone()),
            (a, _) => a,
        }
    }

    /// This availability, unless `protocol` needs a library the host lacks (SCTP, usrsctp).
    pub fn with_protocol(self, protocol: Protocol, host: &HostCaps) -> Availability {
        match protocol {
            Protocol::Sctp => self.requiring(&host.usrsctp),
            Protocol::QuicTls | Protocol::QuicNull => self,
        }
    }

    /// Available wherever the harness can build network namespaces.
    pub fn with_namespaces(host: &HostCaps) -> Availability {
        match host.namespaces_unavailable() {
            Some(why) => Availability::Unavailable(why),
            None => Availability::Available,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("stack {0} is not available: {1}")]
    Unavailable(String, String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("setting up the underlay: {0}")]
    Setup(String),
    #[error("binding the QUIC endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A node's view of the run, from which its stack builds the endpoint.
#[derive(Debug)]
pub struct NodeContext<'a> {
    pub index: u32,
    pub identity: &'a tls::NodeIdentity,
    /// Where this node's QUIC endpoint listens.
    pub bind: SocketAddr,
    /// Where this node's in-process WireGuard listens, for stacks that have one.
    pub wg_listen: Option<SocketAddr>,
    /// This node's WireGuard daemon, for stacks that have one.
    pub wg_uapi: Option<WgUapi>,
    pub peers: &'a [PeerInfo],
    /// TLS servers issue tickets and accept 0-RTT; dials get a resuming configuration.
    pub resumption: bool,
    /// The scenario's QUIC settings.
    pub transport: TransportPlan,
    /// How churn drives WireGuard peers and interfaces.
    pub automation: Automation,
    /// How the node's UDP sockets move datagrams.
    pub datagrams: plain_udp::DatagramIo,
}

/// How to dial one peer.
#[derive(Clone)]
pub struct Dial {
    pub peer: u32,
    /// Pinned to that peer; a full handshake every time.
    pub config: quinn::ClientConfig,
    /// Pinned too, keeping session tickets across connections (TLS with resumption only).
    pub resuming: Option<quinn::ClientConfig>,
    pub server_name: String,
}

pub use stackbench_core::control::{PeerInfo, WgUapi};

/// Explains, for error messages, why a peer may be unreachable through the underlay.
pub type Diagnose = Arc<dyn Fn(u32) -> String + Send + Sync>;

/// A node's endpoint and how to dial each peer it initiates to (QUIC's configurations;
/// SCTP dials need none).
pub struct NodeEndpoint {
    pub endpoint: Endpoint,
    pub dial: Vec<Dial>,
    pub diagnose: Option<Diagnose>,
    /// What churn does to the underlay, from inside the node.
    pub control: Arc<dyn PeerControl>,
}

/// Churn's operations on a node's underlay, run from inside the node's namespace. They
/// block (a UAPI request, a `wg` or `ip` command), so nodes run them off their event loop.
pub trait PeerControl: Send + Sync {
    /// Removes `peer` from the underlay (a WireGuard peer), if the underlay has peers.
    fn remove_peer(&self, peer: u32) -> Result<(), StackError>;
    /// Adds `peer` back as it was before [`PeerControl::remove_peer`].
    fn add_peer(&self, peer: u32) -> Result<(), StackError>;
    /// Sets the tunnel interface up or down: `Ok(false)` when the stack has none.
    fn set_interface(&self, up: bool) -> Result<bool, StackError>;
    /// Each peer's last completed WireGuard handshake, for spotting rekeys.
    fn last_handshakes(&self) -> Vec<(u32, std::time::SystemTime)>;
    /// Whether the operations block (talk to another process); in-memory ones run inline.
    fn blocks(&self) -> bool {
        true
    }
}

/// The control of an underlay without peers or interfaces (plain UDP).
pub struct NoPeers;

impl PeerControl for NoPeers {
    fn remove_peer(&self, _peer: u32) -> Result<(), StackError> {
        Ok(())
    }
    fn add_peer(&self, _peer: u32) -> Result<(), StackError> {
        Ok(())
    }
    fn set_interface(&self, _up: bool) -> Result<bool, StackError> {
        Ok(false)
    }
    fn last_handshakes(&self) -> Vec<(u32, std::time::SystemTime)> {
        vec![]
    }
    fn blocks(&self) -> bool {
        false
    }
}

impl fmt::Debug for NodeEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "NodeEndpoint({} dials)", self.dial.len())
    }
}

/// The underlay a stack built across a topology; dropped, it is torn down.
pub trait PreparedUnderlay: Send {
    /// The address peers use to reach node `index`'s QUIC endpoint.
    fn node_addr(&self, index: u32) -> SocketAddr;
    /// The stack's configuration as it should be recorded in results.
    fn describe(&self) -> serde_json::Value;
    /// Where node `index`'s in-process WireGuard listens, if the stack has one.
    fn wg_endpoint(&self, _index: u32) -> Option<SocketAddr> {
        None
    }
    /// CPU seconds used so far by processes the underlay runs (WireGuard daemons), which are
    /// part of the stack's cost but not of any node's.
    fn process_cpu_seconds(&self) -> f64 {
        0.0
    }
    /// Node `index`'s WireGuard UAPI socket, where a daemon serves the tunnel (for diagnosing
    /// failed connections).
    fn wg_uapi(&self, _index: u32) -> Option<WgUapi> {
        None
    }
    /// Why a process the underlay runs is no longer running, if one has exited: a
    /// repetition whose tunnel daemon died measured a broken underlay, not the stack.
    fn process_failure(&self) -> Option<String> {
        None
    }
}

/// Out-of-band key distribution as the run carries it out: which WireGuard public key a
/// node holds for another. The seed's network authenticates node keys by other means;
/// stackbench's controller is that means, and a stack that configures tunnels from outside
/// the nodes asks it.
pub trait KeyDistribution: Send + Sync {
    /// The key node `holder` is given for node `of`, whose real key is `real`.
    fn wg_key(&self, holder: u32, of: u32, real: [u8; 32]) -> [u8; 32];
}

/// What a stack's controller side needs of the run, in a type of the stack layer's own.
#[derive(Clone, Copy)]
pub struct StackContext<'a> {
    /// The stackbench binary (for the daemons it serves, such as `wg-device`).
    pub node_exe: &'a std::path::Path,
    pub keys: &'a dyn KeyDistribution,
    /// The stack's slot in a network of several stacks (0 alone): stacks whose sockets sit
    /// on the node's own address offset their ports by it, so two can share a node.
    pub slot: u8,
    /// How interfaces and peers are driven (lifecycle samples time both ways).
    pub automation: Automation,
}

pub use stackbench_core::scenario::churn::Automation;

impl std::fmt::Debug for StackContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackContext")
            .field("node_exe", &self.node_exe)
            .finish_non_exhaustive()
    }
}

/// A transport-security stack under test.
pub trait Stack: Send + Sync {
    fn id(&self) -> StackId;
    /// Whether this host can run the stack, and if not, why.
    fn availability(&self, host: &HostCaps) -> Availability;
    /// Controller side: builds the underlay across `topology`'s namespaces.
    fn prepare(
        &self,
        topology: &crate::topology::Topology,
        opts: &StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError>;
    /// Node side: the endpoint of one node, inside its namespace.
    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError>;
    /// Times one interface lifecycle (create, configure, bring up, destroy) beside the
    /// run's own interfaces, with as many peers as a node has. `None` when the stack has
    /// no interface of its own; the text says what the phases are.
    fn lifecycle(
        &self,
        _topology: &crate::topology::Topology,
        _opts: &StackContext<'_>,
    ) -> Result<(String, Option<LifecycleTimes>), StackError> {
        Ok(("no interface: QUIC binds a UDP socket".into(), None))
    }
}

pub use stackbench_core::schema::churn::LifecycleTimes;

/// Every stack of the design, in report order.
pub fn registry() -> Vec<Arc<dyn Stack>> {
    StackId::all()
        .into_iter()
        .map(|id| -> Arc<dyn Stack> {
            match (id.protocol, id.underlay) {
                (protocol, UnderlayKind::Udp) => Arc::new(OverUdp { protocol }),
                (protocol, UnderlayKind::WgInproc) => Arc::new(OverWgInproc {
                    protocol,
                    library: wg_tunnel::WgLibrary::Boringtun,
                }),
                (protocol, UnderlayKind::WgGotatun) => Arc::new(OverWgInproc {
                    protocol,
                    library: wg_tunnel::WgLibrary::Gotatun,
                }),
                (protocol, UnderlayKind::WgBoringtun) => Arc::new(OverWgTun {
                    protocol,
                    daemon: Daemon::Boringtun,
                }),
                (protocol, UnderlayKind::WgGotatunTun) => Arc::new(OverWgTun {
                    protocol,
                    daemon: Daemon::Gotatun,
                }),
                (protocol, UnderlayKind::WgGo) => Arc::new(OverWgTun {
                    protocol,
                    daemon: Daemon::WireguardGo,
                }),
                (Protocol::Sctp, UnderlayKind::WgKernel) => {
                    Arc::new(sctp_kernel::KernelSctpOverWgKernel)
                }
                (protocol, UnderlayKind::WgKernel) => Arc::new(OverWgKernel { protocol }),
            }
        })
        .collect()
}

/// The stack called `name`, if the design has one.
pub fn by_name(name: &str) -> Option<Arc<dyn Stack>> {
    registry().into_iter().find(|s| s.id().name() == name)
}

/// All stack names, for scenario validation and `stackbench list`.
pub fn names() -> Vec<String> {
    StackId::all().iter().map(StackId::name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let names = names();
        assert_eq!(names.len(), 19, "14 QUIC stacks and 5 SCTP");
        let set: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
        for n in &names {
            assert_eq!(
                StackId::parse(n).map(|s| s.name()).as_deref(),
                Some(n.as_str())
            );
        }
        assert!(names.contains(&"quic-tls".to_string()));
        assert!(names.contains(&"quic-null+wg-inproc".to_string()));
        assert!(names.contains(&"quic-tls+wg-gotatun".to_string()));
        assert!(StackId::parse("quic-null").is_some_and(|s| s.is_insecure()));
        assert!(StackId::parse("quic-null+wg-kernel").is_some_and(|s| !s.is_insecure()));
    }

    #[test]
    fn kernel_stacks_say_why_they_cannot_run() {
        let mut host = HostCaps::none_for_tests();
        host.netns = Ok("test".into());
        host.kernel_wireguard = Err("kernel has no WireGuard support (Unknown device type)".into());
        for name in ["quic-tls+wg-kernel", "quic-null+wg-kernel"] {
            let s = by_name(name).expect("designed stack");
            match s.availability(&host) {
                Availability::Unavailable(r) => assert!(r.contains("no WireGuard support"), "{r}"),
                Availability::Available => panic!("{name} claims availability without the module"),
            }
        }
        host.kernel_wireguard = Ok("test".into());
        host.tools.insert(
            "wg",
            Err("wg not found; install it with: apt-get install wireguard-tools".into()),
        );
        match by_name("quic-tls+wg-kernel")
            .expect("designed stack")
            .availability(&host)
        {
            Availability::Unavailable(r) => {
                assert!(r.contains("apt-get install wireguard-tools"), "{r}")
            }
            Availability::Available => panic!("wg-kernel claims availability without wg(8)"),
        }
        host.tools.insert("wg", Ok("wireguard-tools v1.0".into()));
        assert_eq!(
            by_name("quic-tls+wg-kernel")
                .expect("designed stack")
                .availability(&host),
            Availability::Available
        );
    }
}
