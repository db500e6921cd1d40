//! WireGuard automation from code, without spawning `ip` or `wg`: kernel WireGuard devices
//! through wireguard-control's kernel backend (generic netlink), and links and addresses
//! through rtnetlink requests, for kernel devices and TUN daemons alike. Every call acts
//! in the calling thread's network namespace: a node process is already in its own; the
//! controller runs these on a thread inside the node's (`in_netns`).

use super::StackError;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_request::netlink_request_rtnl;
use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::SystemTime,
};
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

pub use crate::link::probe::in_netns;

fn failed(what: &str, e: impl std::fmt::Display) -> StackError {
    StackError::Setup(format!("netlink: {what}: {e}"))
}

fn name(iface: &str) -> Result<InterfaceName, StackError> {
    iface
        .parse()
        .map_err(|e| failed(&format!("interface name {iface:?}"), e))
}

/// `iface`'s index in this thread's namespace.
fn index(iface: &str) -> Result<u32, StackError> {
    let c = std::ffi::CString::new(iface).map_err(|e| failed("interface name", e))?;
    // SAFETY: a NUL-terminated name that lives for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(failed(
            &format!("no interface {iface}"),
            io::Error::last_os_error(),
        )),
        i => Ok(i),
    }
}

fn rtnl(message: RouteNetlinkMessage, flags: u16, what: &str) -> Result<(), StackError> {
    netlink_request_rtnl(message, Some(NLM_F_REQUEST | NLM_F_ACK | flags))
        .map(|_| ())
        .map_err(|e| failed(what, e))
}

/// `ip link add IFACE type wireguard`.
pub fn create_wireguard(iface: &str) -> Result<(), StackError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(iface.into()));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Wireguard,
        )]));
    rtnl(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("creating {iface}"),
    )
}

/// `ip link del IFACE`.
pub fn delete_link(iface: &str) -> Result<(), StackError> {
    let mut m = LinkMessage::default();
    m.header.index = index(iface)?;
    rtnl(
        RouteNetlinkMessage::DelLink(m),
        0,
        &format!("deleting {iface}"),
    )
}

/// `ip link set IFACE mtu MTU up` (or down, with `mtu` `None`).
pub fn set_link(iface: &str, up: bool, mtu: Option<u32>) -> Result<(), StackError> {
    let mut m = LinkMessage::default();
    m.header.index = index(iface)?;
    m.header.change_mask = LinkFlags::Up;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    if let Some(mtu) = mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    rtnl(
        RouteNetlinkMessage::SetLink(m),
        0,
        &format!("setting {iface} {}", if up { "up" } else { "down" }),
    )
}

/// `ip addr add ADDRESS/PREFIX dev IFACE`.
pub fn add_address(iface: &str, address: Ipv4Addr, prefix: u8) -> Result<(), StackError> {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix;
    m.header.index = index(iface)?;
    m.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address)),
        AddressAttribute::Address(IpAddr::V4(address)),
    ];
    rtnl(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("adding {address}/{prefix} to {iface}"),
    )
}

/// One peer as WireGuard is told of it.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub public: [u8; 32],
    pub endpoint: SocketAddr,
    pub allowed: Ipv4Addr,
}

fn peer_builder(p: &PeerSpec) -> PeerConfigBuilder {
    PeerConfigBuilder::new(&Key(p.public))
        .set_endpoint(p.endpoint)
        .add_allowed_ip(IpAddr::V4(p.allowed), 32)
}

fn apply(update: DeviceUpdate, iface: &str, what: &str) -> Result<(), StackError> {
    update
        .apply(&name(iface)?, Backend::Kernel)
        .map_err(|e| failed(&format!("{what} on {iface}"), e))
}

/// `wg setconf`: key, port and every peer, replacing any there were.
pub fn configure(
    iface: &str,
    secret: [u8; 32],
    port: u16,
    peers: &[PeerSpec],
) -> Result<(), StackError> {
    let update = DeviceUpdate::new()
        .set_private_key(Key(secret))
        .set_listen_port(port)
        .replace_peers()
        .add_peers(&peers.iter().map(peer_builder).collect::<Vec<_>>());
    apply(update, iface, "configuring")
}

/// `wg set IFACE peer KEY endpoint E allowed-ips A`.
pub fn add_peer(iface: &str, peer: &PeerSpec) -> Result<(), StackError> {
    apply(
        DeviceUpdate::new().add_peer(peer_builder(peer)),
        iface,
        "adding a peer",
    )
}

/// `wg set IFACE peer KEY remove`.
pub fn remove_peer(iface: &str, public: [u8; 32]) -> Result<(), StackError> {
    apply(
        DeviceUpdate::new().remove_peer_by_key(&Key(public)),
        iface,
        "removing a peer",
    )
}

/// The kernel WireGuard devices in this namespace.
pub fn devices() -> Result<Vec<String>, StackError> {
    Device::list(Backend::Kernel)
        .map(|v| v.iter().map(|n| n.as_str_lossy().into_owned()).collect())
        .map_err(|e| failed("listing WireGuard devices", e))
}

/// Each peer of `iface`: its spec (when it has one tunnel address and an endpoint) and last
/// handshake.
pub fn peers(iface: &str) -> Result<Vec<(PeerSpec, Option<SystemTime>)>, StackError> {
    let d = Device::get(&name(iface)?, Backend::Kernel)
        .map_err(|e| failed(&format!("reading {iface}"), e))?;
    Ok(d.peers
        .into_iter()
        .filter_map(|p| {
            let allowed = match p.config.allowed_ips.first()?.address {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => return None,
            };
            Some((
                PeerSpec {
                    public: p.config.public_key.0,
                    endpoint: p.config.endpoint?,
                    allowed,
                },
                p.stats.last_handshake_time,
            ))
        })
        .collect())
}

/// Runs `f` on a thread inside `ns`, as a node's own automation would run.
pub fn in_ns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> Result<T, StackError> + Send,
) -> Result<T, StackError> {
    let mut result = None;
    in_netns(ns, || {
        result = Some(f());
        Ok(())
    })
    .map_err(|e| StackError::Setup(format!("entering {ns}: {e}")))?;
    result.unwrap_or_else(|| Err(StackError::Setup(format!("nothing ran in {ns}"))))
}
