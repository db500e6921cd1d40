//! Interface lifecycles, timed: what an operator's automation does when it brings a
//! WireGuard interface up for a node and tears it down again. Each runs in node 0's
//! namespace beside the run's own interface, with its own name, address and port, and as
//! many peers as a node has.

use super::{
    wg_socket,
    wg_tun::{hex, ip_in, run_keys, uapi, uapi_path, Daemon, QuicWgTun, WG_PORT},
    wg_tunnel::WgLibrary,
    LifecycleTimes, StackError,
};
use crate::topology::Topology;
use std::time::Instant;

/// The lifecycle interface's tunnel address: apart from every node's.
const ADDRESS: &str = "198.19.1.1/24";
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
fn peer_lines(topology: &Topology) -> Vec<([u8; 32], String, String)> {
    let (_, publics) = run_keys(topology.nodes());
    (1..topology.nodes())
        .map(|j| {
            (
                publics[j as usize],
                format!("{}:{WG_PORT}", topology.node_ip(j)),
                format!("{}/32", wg_socket::virtual_ip(j)),
            )
        })
        .collect()
}

fn address_and_up(ns: &str, iface: &str) -> Result<(), StackError> {
    ip_in(ns, &["addr", "add", ADDRESS, "dev", iface])?;
    let mtu = wg_socket::TUNNEL_MTU.to_string();
    ip_in(ns, &["link", "set", iface, "mtu", &mtu, "up"])
}

/// A userspace daemon: start it (until its UAPI socket answers), configure it over UAPI,
/// address the TUN and bring it up, then stop the daemon.
pub fn tun_daemon(
    stack: &QuicWgTun,
    topology: &Topology,
    opts: &super::StackContext<'_>,
) -> Result<LifecycleTimes, StackError> {
    let ns = topology.node_netns(0);
    let iface = scratch_iface(topology);
    let t = Instant::now();
    let mut child = stack.spawn_daemon(topology, 0, &iface, opts.node_exe)?;
    let create_us = us(t);
    let result = (|| -> Result<(u64, u64), StackError> {
        let t = Instant::now();
        let (secrets, _) = run_keys(1);
        let mut req = format!(
            "set=1\nprivate_key={}\nlisten_port={PORT}\nreplace_peers=true\n",
            hex(&secrets[0].to_bytes())
        );
        for (key, endpoint, allowed) in peer_lines(topology) {
            req += &format!(
                "public_key={}\nendpoint={endpoint}\nallowed_ip={allowed}\n",
                hex(&key)
            );
        }
        req += "\n";
        uapi(&uapi_path(&iface), &req)
            .map_err(|e| StackError::Setup(format!("configuring {iface}: {e}")))?;
        let configure_us = us(t);
        let t = Instant::now();
        address_and_up(&ns, &iface)?;
        Ok((configure_us, us(t)))
    })();
    let t = Instant::now();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(uapi_path(&iface));
    let destroy_us = us(t);
    let (configure_us, up_us) = result?;
    Ok(LifecycleTimes {
        create_us,
        configure_us,
        up_us,
        destroy_us,
    })
}

/// What a daemon's lifecycle phases are.
pub fn tun_daemon_phases(daemon: Daemon) -> String {
    let name = match daemon {
        Daemon::Boringtun => "boringtun device (stackbench wg-device)",
        Daemon::Gotatun => "gotatun device (stackbench wg-device --library gotatun)",
        Daemon::WireguardGo => "wireguard-go",
    };
    format!("create: start {name} until its UAPI socket exists; configure: one UAPI set with key, port and every peer; up: ip addr add + ip link set mtu up; destroy: kill the daemon and wait")
}

/// Kernel WireGuard: `ip link add`, `wg setconf`, address and up, `ip link del`.
pub fn kernel(topology: &Topology) -> Result<LifecycleTimes, StackError> {
    let ns = topology.node_netns(0);
    let iface = scratch_iface(topology);
    let t = Instant::now();
    ip_in(&ns, &["link", "add", &iface, "type", "wireguard"])?;
    let create_us = us(t);
    let result = (|| -> Result<(u64, u64), StackError> {
        let t = Instant::now();
        let (secrets, _) = run_keys(1);
        let mut config = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {PORT}\n",
            b64(&secrets[0].to_bytes())
        );
        for (key, endpoint, allowed) in peer_lines(topology) {
            config += &format!(
                "\n[Peer]\nPublicKey = {}\nEndpoint = {endpoint}\nAllowedIPs = {allowed}\n",
                b64(&key)
            );
        }
        super::wg_kernel::wg_setconf(&ns, &iface, &config)?;
        let configure_us = us(t);
        let t = Instant::now();
        address_and_up(&ns, &iface)?;
        Ok((configure_us, us(t)))
    })();
    let t = Instant::now();
    let deleted = ip_in(&ns, &["link", "del", &iface]);
    let destroy_us = us(t);
    let (configure_us, up_us) = result?;
    deleted?;
    Ok(LifecycleTimes {
        create_us,
        configure_us,
        up_us,
        destroy_us,
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
    })
}
