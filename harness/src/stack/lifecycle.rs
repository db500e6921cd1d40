//! Interface lifecycles, timed: what an operator's automation does when it brings a
//! WireGuard interface up for a node and tears it down again. Each runs in node 0's
//! namespace beside the run's own interface, with its own name, address and port, and as
//! many peers as a node has.

use super::{
    wg_netlink::{self, PeerSpec},
    wg_socket,
    wg_tun::{hex, ip_in, run_keys, uapi, uapi_path, Daemon, OverWgTun, WG_PORT},
    wg_tunnel::WgLibrary,
    Automation, LifecycleTimes, StackError,
};
use crate::topology::Topology;
use std::{net::SocketAddr, time::Instant};

/// The lifecycle interface's tunnel address: apart from every node's.
const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 19, 1, 1);
/// Its WireGuard port: apart from the node's own.
const PORT: u16 = WG_PORT + 1;

fn us(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// The scratch interface's name: the run's prefix, so nothing else is touched.
fn scratch_iface(topology: &Topology) -> String {
    format!("{}lc", topology.prefix())
}

/// Peers as node 0 would have them: fresh keys, the other nodes' endpoints.
fn peers(topology: &Topology) -> Vec<PeerSpec> {
    let (_, publics) = run_keys(topology.nodes());
    (1..topology.nodes())
        .map(|j| PeerSpec {
            public: publics[j as usize],
            endpoint: SocketAddr::from((topology.node_ip(j), WG_PORT)),
            allowed: wg_socket::virtual_ip(j),
        })
        .collect()
}

fn wg_in(ns: &str, args: &[String]) -> Result<(), StackError> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "wg"])
        .args(args)
        .output()
        .map_err(|e| StackError::Setup(format!("running wg in {ns}: {e}")))?;
    if !out.status.success() {
        return Err(StackError::Setup(format!(
            "wg {} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Remove the first peer and add it back, as churn does: `wg set` processes, or from code
/// (netlink for kernel WireGuard, UAPI for a daemon).
fn peer_change(
    automation: Automation,
    ns: &str,
    iface: &str,
    kernel: bool,
    peer: &PeerSpec,
) -> Result<(), StackError> {
    match (automation, kernel) {
        (Automation::Processes, _) => {
            let key = b64(&peer.public);
            wg_in(
                ns,
                &[
                    "set".into(),
                    iface.into(),
                    "peer".into(),
                    key.clone(),
                    "remove".into(),
                ],
            )?;
            wg_in(
                ns,
                &[
                    "set".into(),
                    iface.into(),
                    "peer".into(),
                    key,
                    "endpoint".into(),
                    peer.endpoint.to_string(),
                    "allowed-ips".into(),
                    format!("{}/32", peer.allowed),
                ],
            )
        }
        (Automation::Library, true) => {
            wg_netlink::remove_peer(iface, peer.public)?;
            wg_netlink::add_peer(iface, peer)
        }
        (Automation::Library, false) => {
            let key = hex(&peer.public);
            let path = uapi_path(iface);
            let err = |e| StackError::Setup(format!("UAPI on {iface}: {e}"));
            uapi(&path, &format!("set=1\npublic_key={key}\nremove=true\n\n")).map_err(err)?;
            uapi(
                &path,
                &format!(
                    "set=1\npublic_key={key}\nendpoint={}\nallowed_ip={}/32\n\n",
                    peer.endpoint, peer.allowed
                ),
            )
            .map_err(err)
            .map(|_| ())
        }
    }
}

/// Times bringing the scratch interface up, then a peer change on it: (up, peer change) µs.
fn up_then_peer_change(
    automation: Automation,
    ns: &str,
    iface: &str,
    kernel: bool,
    peer: &PeerSpec,
) -> Result<(u64, u64), StackError> {
    let t = Instant::now();
    super::wg_tun::up(automation, ns, iface, ADDRESS)?;
    let up_us = us(t);
    let t = Instant::now();
    peer_change(automation, ns, iface, kernel, peer)?;
    Ok((up_us, us(t)))
}

/// A userspace daemon: start it (until its UAPI socket answers), configure it (one UAPI
/// set, or `wg setconf`), address the TUN and bring it up, change a peer, then stop the
/// daemon.
pub fn tun_daemon(
    stack: &OverWgTun,
    topology: &Topology,
    opts: &super::StackContext<'_>,
) -> Result<LifecycleTimes, StackError> {
    let ns = topology.node_netns(0);
    let iface = scratch_iface(topology);
    let peers = peers(topology);
    let (secrets, _) = run_keys(1);
    let secret = secrets[0].to_bytes();
    let automation = opts.automation;
    let t = Instant::now();
    let mut child = stack.spawn_daemon(topology, 0, &iface, opts.node_exe)?;
    let create_us = us(t);
    let result = wg_netlink::in_ns(&ns, || {
        let t = Instant::now();
        match automation {
            Automation::Library => {
                let mut req = format!(
                    "set=1\nprivate_key={}\nlisten_port={PORT}\nreplace_peers=true\n",
                    hex(&secret)
                );
                for p in &peers {
                    req += &format!(
                        "public_key={}\nendpoint={}\nallowed_ip={}/32\n",
                        hex(&p.public),
                        p.endpoint,
                        p.allowed
                    );
                }
                req += "\n";
                uapi(&uapi_path(&iface), &req)
                    .map_err(|e| StackError::Setup(format!("configuring {iface}: {e}")))?;
            }
            Automation::Processes => super::wg_kernel::wg_setconf(
                &ns,
                &iface,
                &super::wg_kernel::wg_config(&secret, PORT, &peers),
            )?,
        }
        let configure_us = us(t);
        let (up_us, peer_change_us) =
            up_then_peer_change(automation, &ns, &iface, false, &peers[0])?;
        Ok((configure_us, up_us, peer_change_us))
    });
    let t = Instant::now();
    child.stop();
    let _ = std::fs::remove_file(uapi_path(&iface));
    let destroy_us = us(t);
    let (configure_us, up_us, peer_change_us) = result?;
    Ok(LifecycleTimes {
        create_us,
        configure_us,
        up_us,
        destroy_us,
        peer_change_us,
    })
}

/// What a daemon's lifecycle phases are, done as `automation` says.
pub fn tun_daemon_phases(daemon: Daemon, automation: Automation) -> String {
    let name = match daemon {
        Daemon::Boringtun => "boringtun device (stackbench wg-device)",
        Daemon::Gotatun => "gotatun device (stackbench wg-device --library gotatun)",
        Daemon::WireguardGo => "wireguard-go",
    };
    match automation {
        Automation::Library => format!("create: start {name} until its UAPI socket exists; configure: one UAPI set with key, port and every peer; up: rtnetlink address + link mtu up; peer change: UAPI remove + add; destroy: kill the daemon and wait"),
        Automation::Processes => format!("create: start {name} until its UAPI socket exists; configure: wg setconf; up: ip addr add + ip link set mtu up; peer change: wg set remove + add; destroy: kill the daemon and wait"),
    }
}

/// What kernel WireGuard's lifecycle phases are, done as `automation` says.
pub fn kernel_phases(automation: Automation) -> String {
    match automation {
        Automation::Library => "netlink from code (wireguard-control, rtnetlink): create: RTM_NEWLINK type wireguard; configure: WG_CMD_SET_DEVICE with key, port and every peer; up: RTM_NEWADDR + RTM_SETLINK mtu up; peer change: remove + add over WG_CMD_SET_DEVICE; destroy: RTM_DELLINK".into(),
        Automation::Processes => "processes: create: ip link add type wireguard; configure: wg setconf with key, port and every peer; up: ip addr add + ip link set mtu up; peer change: wg set remove + add; destroy: ip link del".into(),
    }
}

/// Kernel WireGuard, every phase from inside node 0's namespace.
pub fn kernel(topology: &Topology, automation: Automation) -> Result<LifecycleTimes, StackError> {
    let ns = topology.node_netns(0);
    let iface = scratch_iface(topology);
    let peers = peers(topology);
    let (secrets, _) = run_keys(1);
    let secret = secrets[0].to_bytes();
    wg_netlink::in_ns(&ns, || {
        let t = Instant::now();
        match automation {
            Automation::Processes => ip_in(&ns, &["link", "add", &iface, "type", "wireguard"])?,
            Automation::Library => wg_netlink::create_wireguard(&iface)?,
        }
        let create_us = us(t);
        let result = (|| -> Result<(u64, u64, u64), StackError> {
            let t = Instant::now();
            match automation {
                Automation::Processes => super::wg_kernel::wg_setconf(
                    &ns,
                    &iface,
                    &super::wg_kernel::wg_config(&secret, PORT, &peers),
                )?,
                Automation::Library => wg_netlink::configure(&iface, secret, PORT, &peers)?,
            }
            let configure_us = us(t);
            let (up_us, peer_change_us) =
                up_then_peer_change(automation, &ns, &iface, true, &peers[0])?;
            Ok((configure_us, up_us, peer_change_us))
        })();
        let t = Instant::now();
        let deleted = match automation {
            Automation::Processes => ip_in(&ns, &["link", "del", &iface]),
            Automation::Library => wg_netlink::delete_link(&iface),
        };
        let destroy_us = us(t);
        let (configure_us, up_us, peer_change_us) = result?;
        deleted?;
        Ok(LifecycleTimes {
            create_us,
            configure_us,
            up_us,
            destroy_us,
            peer_change_us,
        })
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine};
    STANDARD.encode(bytes)
}

/// In-process WireGuard: a tunnel per peer (create and configure are one), a UDP socket
/// (up), and dropping them (destroy). No namespace, no privilege.
pub fn in_process(topology: &Topology, library: WgLibrary) -> Result<LifecycleTimes, StackError> {
    let (secrets, publics) = run_keys(topology.nodes());
    let t = Instant::now();
    let maker = library.tunnels(&secrets[0]);
    let tunnels: Vec<_> = (1..topology.nodes())
        .map(|j| maker.tunnel(boringtun::x25519::PublicKey::from(publics[j as usize]), j))
        .collect();
    let create_us = us(t);
    let t = Instant::now();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let socket = super::bind_udp(addr).map_err(|source| StackError::Bind { addr, source })?;
    let up_us = us(t);
    let t = Instant::now();
    drop((tunnels, maker, socket));
    Ok(LifecycleTimes {
        create_us,
        configure_us: 0,
        up_us,
        destroy_us: us(t),
        peer_change_us: 0,
    })
}
