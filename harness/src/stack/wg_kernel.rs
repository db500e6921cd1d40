//! QUIC over kernel WireGuard (`quic-*+wg-kernel`): a `wireguard` interface created in each
//! node namespace and configured with `wg(8)`, fresh keys per run, one peer per other node.
//! QUIC is plain UDP on the tunnel address. The tunnel's CPU is spent in softirq and kernel
//! worker threads, not in any node: the underlay's CPU is the kernel threads' CPU.

use super::{
    quic_udp::udp_endpoint,
    wg_netlink::{self, PeerSpec},
    wg_socket,
    wg_tun::{
        address_and_up, handshake_verdict, iface_name, not_a_peer, run_keys, setup_err,
        tunnel_addr, wg_peers, WG_PORT,
    },
    Automation, Availability, NodeContext, NodeEndpoint, PreparedUnderlay, Protocol, Stack,
    StackError, StackId, UnderlayKind,
};
use crate::{check::HostCaps, topology::Topology};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use std::{
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
};

#[derive(Debug)]
pub struct OverWgKernel {
    pub protocol: Protocol,
}

/// The kernel interfaces of one topology; dropping it deletes them (deleting the namespaces
/// would too, but the underlay cleans up what it made).
struct KernelUnderlay {
    protocol: Protocol,
    /// (namespace, interface) per node.
    ifaces: Vec<(String, String)>,
    kernel: String,
    /// How the interfaces were set up and are taken down.
    automation: Automation,
}

impl Drop for KernelUnderlay {
    fn drop(&mut self) {
        for (ns, iface) in &self.ifaces {
            let deleted = match self.automation {
                Automation::Library => {
                    wg_netlink::in_ns(ns, || wg_netlink::delete_link(iface)).is_ok()
                }
                Automation::Processes => false,
            };
            if !deleted {
                let _ = Command::new("ip")
                    .args(["-n", ns, "link", "del", iface])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl PreparedUnderlay for KernelUnderlay {
    fn node_addr(&self, index: u32) -> SocketAddr {
        tunnel_addr(index)
    }
    /// Kernel WireGuard's crypto runs in kernel worker threads, not in any node: their CPU is
    /// the tunnel's (on a busy shared host it also includes other kernel work).
    fn process_cpu_seconds(&self) -> f64 {
        crate::metrics::kernel_threads_cpu_seconds()
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "underlay": "kernel WireGuard interface per node namespace",
            "kernel": self.kernel,
            "crypto": super::crypto::describe(self.protocol),
            "transport": match self.protocol {
                Protocol::Sctp => super::sctp_kernel::TRANSPORT,
                p => super::crypto::transport(p),
            },
            "tunnel_mtu": wg_socket::TUNNEL_MTU,
            "quic_max_udp_payload": wg_socket::MAX_QUIC_PAYLOAD,
            "configured_over": match self.automation {
                Automation::Library => "netlink from code (wireguard-control, rtnetlink)",
                Automation::Processes => "ip(8) and wg(8) setconf processes",
            },
            "cpu_accounting": "underlay CPU = all kernel threads (kworkers run wg-crypt); plus host softirq",
        })
    }
}

/// The `wg setconf` text of an interface: its key, its port and its peers.
pub(super) fn wg_config(secret: &[u8; 32], port: u16, peers: &[PeerSpec]) -> String {
    let mut c = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = {port}\n",
        B64.encode(secret)
    );
    for p in peers {
        c += &format!(
            "\n[Peer]\nPublicKey = {}\nEndpoint = {}\nAllowedIPs = {}/32\n",
            B64.encode(p.public),
            p.endpoint,
            p.allowed
        );
    }
    c
}

/// Runs `wg setconf IFACE /dev/stdin` inside `netns`, feeding it `config` (keys never touch disk).
pub(super) fn wg_setconf(netns: &str, iface: &str, config: &str) -> Result<(), StackError> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "wg", "setconf", iface, "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| setup_err(format!("running wg in {netns}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.as_bytes())
            .map_err(|e| setup_err(format!("writing wg's configuration: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| setup_err(format!("waiting for wg in {netns}: {e}")))?;
    if !out.status.success() {
        return Err(setup_err(format!(
            "wg setconf {iface} in {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Why no traffic flows to node `index`, from `wg show all dump` in this node's namespace.
fn diagnose(index: u32) -> String {
    let out = match Command::new("wg").args(["show", "all", "dump"]).output() {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            return format!(
                "wg show failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )
        }
        Err(e) => return format!("cannot run wg show: {e}"),
    };
    peer_state(&String::from_utf8_lossy(&out), index)
}

/// Reads node `index`'s peer line out of `wg show all dump` output, found by its tunnel
/// address (so a peer configured with a wrong key is found too).
fn peer_state(dump: &str, index: u32) -> String {
    let wanted = format!("{}/32", wg_socket::virtual_ip(index));
    // Peer lines: iface, public key, preshared key, endpoint, allowed ips, latest handshake, ...
    dump.lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f.len() >= 9 && f[4].split(',').any(|ip| ip == wanted))
        .map(|f| handshake_verdict(index, Some(f[5])))
        .unwrap_or_else(|| not_a_peer(index))
}

impl Stack for OverWgKernel {
    fn id(&self) -> StackId {
        StackId {
            protocol: self.protocol,
            underlay: UnderlayKind::WgKernel,
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        let not_probed = Err("wg(8) was not probed".to_owned());
        Availability::with_namespaces(host)
            .requiring(&host.kernel_wireguard)
            .requiring(host.tools.get("wg").unwrap_or(&not_probed))
    }

    fn prepare(
        &self,
        topology: &Topology,
        opts: &super::StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        let n = topology.nodes();
        let (secrets, publics) = run_keys(n);
        let mut u = KernelUnderlay {
            protocol: self.protocol,
            ifaces: vec![],
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            automation: opts.automation,
        };
        for i in 0..n {
            let ns = topology.node_netns(i);
            let iface = iface_name(topology, i);
            let peers = wg_peers(topology, opts, &publics, i);
            let secret = secrets[i as usize].to_bytes();
            match opts.automation {
                Automation::Processes => {
                    super::wg_tun::ip_in(&ns, &["link", "add", &iface, "type", "wireguard"])?;
                    u.ifaces.push((ns.clone(), iface.clone()));
                    wg_setconf(&ns, &iface, &wg_config(&secret, WG_PORT, &peers))?;
                }
                Automation::Library => {
                    wg_netlink::in_ns(&ns, || wg_netlink::create_wireguard(&iface))?;
                    u.ifaces.push((ns.clone(), iface.clone()));
                    wg_netlink::in_ns(&ns, || {
                        wg_netlink::configure(&iface, secret, WG_PORT, &peers)
                    })?;
                }
            }
            address_and_up(topology, i, &iface, opts.automation)?;
        }
        Ok(Box::new(u))
    }

    fn lifecycle(
        &self,
        topology: &Topology,
        opts: &super::StackContext<'_>,
    ) -> Result<(String, Option<super::LifecycleTimes>), StackError> {
        Ok((
            super::lifecycle::kernel_phases(opts.automation),
            Some(super::lifecycle::kernel(topology, opts.automation)?),
        ))
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        let (diagnose, control) = diagnose_and_control(ctx.automation);
        udp_endpoint(
            self.protocol,
            ctx,
            Some(wg_socket::MAX_QUIC_PAYLOAD),
            Some(diagnose),
            control,
        )
    }
}

/// What a node on kernel WireGuard diagnoses failed connections with, and drives its peers
/// and interface with during churn (netlink or `wg`/`ip` processes, as `automation` says).
pub(super) fn diagnose_and_control(
    automation: super::Automation,
) -> (super::Diagnose, std::sync::Arc<dyn super::PeerControl>) {
    let control: std::sync::Arc<dyn super::PeerControl> = match automation {
        super::Automation::Library => std::sync::Arc::new(super::wg_control::NetlinkControl::new()),
        super::Automation::Processes => {
            std::sync::Arc::new(super::wg_control::WgToolControl::new())
        }
    };
    (std::sync::Arc::new(diagnose), control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_every_peer_with_its_tunnel_address() {
        let peer = |i: u32, key: u8| PeerSpec {
            public: [key; 32],
            endpoint: format!("198.18.0.{}:51820", i + 1)
                .parse()
                .expect("literal address"),
            allowed: wg_socket::virtual_ip(i),
        };
        let peers = vec![peer(1, 1), peer(2, 2)];
        let c = wg_config(&[7; 32], 51820, &peers);
        assert!(c.starts_with("[Interface]\nPrivateKey = BwcH"), "{c}");
        assert!(c.contains("ListenPort = 51820"));
        assert_eq!(c.matches("[Peer]").count(), 2);
        assert!(c.contains(&format!(
            "Endpoint = 198.18.0.3:51820\nAllowedIPs = {}/32",
            wg_socket::virtual_ip(2)
        )));
    }

    #[test]
    fn dump_parsing_finds_the_peer_by_tunnel_address() {
        let ip1 = wg_socket::virtual_ip(1);
        let ip2 = wg_socket::virtual_ip(2);
        let dump = format!(
            "sbx-w0\tPRIV\tPUB\t51820\toff\n\
             sbx-w0\tK1\t(none)\t198.18.0.2:51820\t{ip1}/32\t0\t0\t1480\toff\n\
             sbx-w0\tK2\t(none)\t198.18.0.3:51820\t{ip2}/32\t1764000000\t100\t200\toff\n"
        );
        assert!(peer_state(&dump, 1).contains("no WireGuard handshake with node 1"));
        assert!(peer_state(&dump, 2).contains("session with node 2 is up"));
        assert!(peer_state(&dump, 3).contains("not configured"));
    }
}
