//! QUIC over WireGuard daemons that serve a TUN device in each node namespace: boringtun
//! (`quic-*+wg-boringtun`, run as `stackbench wg-device`) and wireguard-go (`quic-*+wg-go`).
//! Both are configured over the standard UAPI socket with fresh keys per run; QUIC is plain
//! UDP on the tunnel address, and the kernel routes it through the TUN.

use super::{
    daemon::DaemonProcess, quic_udp::udp_endpoint, wg_netlink::PeerSpec, wg_socket, Automation,
    Availability, NodeContext, NodeEndpoint, PreparedUnderlay, Protocol, Stack, StackError,
    StackId, UnderlayKind,
};
use crate::{check::HostCaps, topology::Topology};
use boringtun::x25519;
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, SocketAddrV4},
    os::unix::{net::UnixStream, process::CommandExt},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// Where userspace WireGuard daemons put their control sockets (shared by all namespaces).
const UAPI_DIR: &str = "/var/run/wireguard";
/// The outer UDP port every node's WireGuard listens on.
pub(super) const WG_PORT: u16 = 51820;
/// boringtun device worker threads: on 2 cores, 1 thread without multi-queue was ~3x faster
/// than the default 4 with multi-queue, which reorders heavily (DESIGN.md).
const BORINGTUN_THREADS: usize = 1;
const DAEMON_START: Duration = Duration::from_secs(5);

/// Which userspace WireGuard serves the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Boringtun,
    /// GotaTun's device (`stackbench wg-device --library gotatun`).
    Gotatun,
    WireguardGo,
}

#[derive(Debug)]
pub struct OverWgTun {
    pub protocol: Protocol,
    pub daemon: Daemon,
}

/// The UAPI socket of interface `iface`.
pub fn uapi_path(iface: &str) -> PathBuf {
    PathBuf::from(UAPI_DIR).join(format!("{iface}.sock"))
}

pub(super) fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends one UAPI request and returns the response lines (without the errno line).
pub fn uapi(path: &std::path::Path, request: &str) -> std::io::Result<Vec<String>> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.as_bytes())?;
    let mut lines = vec![];
    for line in BufReader::new(s).lines() {
        let line = line?;
        if let Some(errno) = line.strip_prefix("errno=") {
            if errno != "0" {
                return Err(std::io::Error::other(format!(
                    "UAPI request failed with errno={errno}"
                )));
            }
            return Ok(lines);
        }
        lines.push(line);
    }
    Err(std::io::Error::other(
        "UAPI connection closed without an errno line",
    ))
}

/// Why no traffic flows to node `index` through the device at `path`, for error messages.
/// The peer is found by its tunnel address, so a peer configured with a wrong key is found.
pub fn diagnose(path: &std::path::Path, index: u32) -> String {
    let lines = match uapi(path, "get=1\n\n") {
        Ok(l) => l,
        Err(e) => {
            return format!(
                "cannot query the WireGuard device at {}: {e}",
                path.display()
            )
        }
    };
    let wanted = format!("allowed_ip={}/32", wg_socket::virtual_ip(index));
    // Each peer's block starts at its public_key line.
    let blocks = lines.split(|l| l.starts_with("public_key=")).skip(1);
    for block in blocks {
        if block.contains(&wanted) {
            let handshake = block
                .iter()
                .find_map(|l| l.strip_prefix("last_handshake_time_sec="));
            return handshake_verdict(index, handshake);
        }
    }
    not_a_peer(index)
}

/// What a peer's last-handshake time (seconds since the epoch, 0 for never) says about it.
pub(super) fn handshake_verdict(index: u32, last_handshake: Option<&str>) -> String {
    match last_handshake {
        Some("0") | None => format!(
            "no WireGuard handshake with node {index} completed: wrong key, or the peer is down"
        ),
        Some(_) => format!("WireGuard session with node {index} is up"),
    }
}

pub(super) fn not_a_peer(index: u32) -> String {
    format!("node {index} is not configured as a WireGuard peer")
}

/// Where node `index`'s QUIC endpoint listens inside the tunnel.
pub(super) fn tunnel_addr(index: u32) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        wg_socket::virtual_ip(index),
        crate::topology::QUIC_PORT,
    ))
}

/// The daemons of one topology; dropping it stops them and removes their sockets.
struct TunUnderlay {
    protocol: Protocol,
    daemon: Daemon,
    /// Behind a lock so that a shared underlay can still ask whether a daemon has exited.
    children: Mutex<Vec<DaemonProcess>>,
    ifaces: Vec<String>,
    version: String,
    /// The offloads the daemon turned on for its TUN (node 0's), as ethtool reports them.
    tun_offloads: serde_json::Value,
}

/// The wireguard-go binary the stack runs: `STACKBENCH_WIREGUARD_GO`, to compare builds,
/// or the one on the PATH.
pub fn wireguard_go() -> std::ffi::OsString {
    std::env::var_os("STACKBENCH_WIREGUARD_GO").unwrap_or_else(|| "wireguard-go".into())
}

/// `keys`' states in `ethtool -k` output.
fn offloads_of(text: &str, keys: &[&str]) -> serde_json::Value {
    serde_json::Value::Object(
        text.lines()
            .filter_map(|l| l.trim().split_once(": "))
            .filter(|(k, _)| keys.contains(k))
            .map(|(k, v)| (k.to_owned(), v.trim().into()))
            .collect(),
    )
}

/// The TUN offloads that matter to a WireGuard daemon, as `ethtool -k` shows them in node
/// `index`'s namespace: checksum and segmentation offload (wireguard-go turns them on since
/// its 2023 releases; older builds and boringtun leave them off).
fn tun_offloads(topology: &Topology, index: u32, iface: &str) -> serde_json::Value {
    const KEYS: [&str; 5] = [
        "tx-checksumming",
        "tcp-segmentation-offload",
        "tx-udp-segmentation",
        "generic-segmentation-offload",
        "generic-receive-offload",
    ];
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topology.node_netns(index),
            "ethtool",
            "-k",
            iface,
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => offloads_of(&String::from_utf8_lossy(&o.stdout), &KEYS),
        Ok(o) => format!(
            "unknown: ethtool -k {iface} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )
        .into(),
        Err(e) => format!("unknown: ethtool not run ({e})").into(),
    }
}

impl Drop for TunUnderlay {
    fn drop(&mut self) {
        let children = self
            .children
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for c in children {
            c.stop();
        }
        for i in &self.ifaces {
            let _ = std::fs::remove_file(uapi_path(i));
        }
    }
}

impl PreparedUnderlay for TunUnderlay {
    fn node_addr(&self, index: u32) -> SocketAddr {
        tunnel_addr(index)
    }
    fn process_cpu_seconds(&self) -> f64 {
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| crate::metrics::pid_cpu_seconds(c.id()))
            .sum()
    }
    fn process_failure(&self) -> Option<String> {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        let failures: Vec<String> = children
            .iter_mut()
            .zip(&self.ifaces)
            .enumerate()
            .filter_map(|(i, (child, iface))| {
                let status = child.exited()?;
                let (tail, lines) = child.stderr_tail();
                Some(format!(
                    "node {i}'s WireGuard daemon for {iface} exited during the run ({status}); the last of its {lines} stderr lines:\n{tail}"
                ))
            })
            .collect();
        (!failures.is_empty()).then(|| failures.join("\n"))
    }
    fn wg_uapi(&self, index: u32) -> Option<PathBuf> {
        Some(uapi_path(self.ifaces.get(index as usize)?))
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "underlay": match self.daemon {
                Daemon::Boringtun => "boringtun 0.7 device serving a TUN (stackbench wg-device)",
                Daemon::Gotatun => "gotatun 0.10 device serving a TUN (stackbench wg-device --library gotatun)",
                Daemon::WireguardGo => "wireguard-go serving a TUN",
            },
            "daemon_version": self.version,
            "tun_offloads": self.tun_offloads,
            "threads": match self.daemon { Daemon::Boringtun | Daemon::Gotatun => serde_json::json!(BORINGTUN_THREADS), Daemon::WireguardGo => serde_json::json!("GOMAXPROCS default") },
            "multi_queue_tun": false,
            "crypto": super::crypto::describe(self.protocol),
            "transport": super::crypto::transport(self.protocol),
            "tunnel_mtu": wg_socket::TUNNEL_MTU,
            "quic_max_udp_payload": wg_socket::MAX_QUIC_PAYLOAD,
            "configured_over": "UAPI",
        })
    }
}

/// Node `index`'s WireGuard peers: every other node of the topology.
pub(super) fn wg_peers(
    topology: &Topology,
    opts: &super::StackContext<'_>,
    publics: &[[u8; 32]],
    index: u32,
) -> Vec<PeerSpec> {
    (0..topology.nodes())
        .filter(|&j| j != index)
        .map(|j| PeerSpec {
            public: opts.keys.wg_key(index, j, publics[j as usize]),
            endpoint: SocketAddr::new(topology.node_ip(j).into(), WG_PORT),
            allowed: wg_socket::virtual_ip(j),
        })
        .collect()
}

/// Node `index`'s WireGuard interface name: unique per run and node, because userspace
/// daemons' UAPI sockets are shared by all namespaces.
pub(super) fn iface_name(topology: &Topology, index: u32) -> String {
    format!("{}w{index}", topology.prefix())
}

/// Fresh WireGuard key pairs for `n` nodes: the secrets and their public keys.
pub(super) fn run_keys(n: u32) -> (Vec<x25519::StaticSecret>, Vec<[u8; 32]>) {
    let secrets: Vec<x25519::StaticSecret> = (0..n)
        .map(|_| x25519::StaticSecret::random_from_rng(rand::rngs::OsRng))
        .collect();
    let publics = secrets
        .iter()
        .map(|s| x25519::PublicKey::from(s).to_bytes())
        .collect();
    (secrets, publics)
}

/// Gives node `index`'s WireGuard interface its tunnel address and MTU, and brings it up.
pub(super) fn address_and_up(
    topology: &Topology,
    index: u32,
    iface: &str,
    automation: Automation,
) -> Result<(), StackError> {
    let ns = topology.node_netns(index);
    let address = wg_socket::virtual_ip(index);
    match automation {
        Automation::Processes => up(automation, &ns, iface, address),
        Automation::Library => {
            super::wg_netlink::in_ns(&ns, || up(automation, &ns, iface, address))
        }
    }
}

/// Gives `iface` (in `ns`, which a library call must already be inside) `address`/24 and
/// the tunnel MTU, and brings it up.
pub(super) fn up(
    automation: Automation,
    ns: &str,
    iface: &str,
    address: std::net::Ipv4Addr,
) -> Result<(), StackError> {
    let mtu = wg_socket::TUNNEL_MTU;
    match automation {
        Automation::Processes => {
            ip_in(ns, &["addr", "add", &format!("{address}/24"), "dev", iface])?;
            ip_in(ns, &["link", "set", iface, "mtu", &mtu.to_string(), "up"])
        }
        Automation::Library => {
            super::wg_netlink::add_address(iface, address, 24)?;
            super::wg_netlink::set_link(iface, true, Some(mtu as u32))
        }
    }
}

pub(super) fn ip_in(netns: &str, args: &[&str]) -> Result<(), StackError> {
    let out = Command::new("ip")
        .arg("-n")
        .arg(netns)
        .args(args)
        .output()
        .map_err(|e| setup_err(format!("ip: {e}")))?;
    if !out.status.success() {
        return Err(setup_err(format!(
            "ip -n {netns} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

pub(super) fn setup_err(msg: String) -> StackError {
    StackError::Setup(msg)
}

impl OverWgTun {
    pub(super) fn spawn_daemon(
        &self,
        topology: &Topology,
        index: u32,
        iface: &str,
        exe: &std::path::Path,
    ) -> Result<DaemonProcess, StackError> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &topology.node_netns(index)]);
        match self.daemon {
            Daemon::Boringtun | Daemon::Gotatun => {
                let library = match self.daemon {
                    Daemon::Gotatun => "gotatun",
                    _ => "boringtun",
                };
                cmd.arg(exe).args([
                    "wg-device",
                    "--iface",
                    iface,
                    "--threads",
                    &BORINGTUN_THREADS.to_string(),
                    "--library",
                    library,
                ]);
            }
            Daemon::WireguardGo => {
                cmd.arg(wireguard_go()).args(["-f", iface]);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: guard_child makes only async-signal-safe calls.
        unsafe { cmd.pre_exec(|| crate::process::guard_child()) };
        let mut child = DaemonProcess::new(cmd.spawn().map_err(|e| {
            setup_err(format!(
                "starting the WireGuard daemon for node {index}: {e}"
            ))
        })?);
        let sock = uapi_path(iface);
        let t0 = Instant::now();
        // Until the daemon answers there: the socket file exists a moment before it listens.
        while UnixStream::connect(&sock).is_err() {
            if let Some(status) = child.exited() {
                return Err(setup_err(format!(
                    "the WireGuard daemon for node {index} exited ({status}): {}",
                    child.exit_report().trim()
                )));
            }
            if t0.elapsed() > DAEMON_START {
                child.stop();
                return Err(setup_err(format!("the WireGuard daemon for node {index} did not create {} within {DAEMON_START:?}", sock.display())));
            }
            // Fine-grained: the interface lifecycle measurement times this wait.
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(child)
    }

    fn daemon_version(&self) -> String {
        match self.daemon {
            Daemon::Boringtun => "boringtun 0.7.1 (crate, device feature)".into(),
            Daemon::Gotatun => format!(
                "gotatun 0.10 (crate, device and tun features; {} crypto)",
                super::wg_gotatun::CRYPTO_BACKEND
            ),
            Daemon::WireguardGo => {
                let binary = wireguard_go();
                let line = Command::new(&binary)
                    .arg("--version")
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_owned()
                    })
                    .unwrap_or_default();
                match std::env::var_os("STACKBENCH_WIREGUARD_GO") {
                    Some(b) => format!(
                        "{line} ({}, from STACKBENCH_WIREGUARD_GO)",
                        b.to_string_lossy()
                    ),
                    None => format!("{line} ({})", crate::check::wireguard_go_package()),
                }
            }
        }
    }
}

impl Stack for OverWgTun {
    fn id(&self) -> StackId {
        let underlay = match self.daemon {
            Daemon::Boringtun => UnderlayKind::WgBoringtun,
            Daemon::Gotatun => UnderlayKind::WgGotatunTun,
            Daemon::WireguardGo => UnderlayKind::WgGo,
        };
        StackId {
            protocol: self.protocol,
            underlay,
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        let a = Availability::with_namespaces(host)
            .requiring(&host.tun)
            .with_protocol(self.protocol, host);
        match (self.daemon, host.tools.get("wireguard-go")) {
            (Daemon::WireguardGo, Some(tool)) => a.requiring(tool),
            _ => a,
        }
    }

    fn prepare(
        &self,
        topology: &Topology,
        opts: &super::StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        let n = topology.nodes();
        let (secrets, publics) = run_keys(n);
        let mut u = TunUnderlay {
            protocol: self.protocol,
            daemon: self.daemon,
            children: Mutex::new(vec![]),
            ifaces: vec![],
            version: self.daemon_version(),
            tun_offloads: serde_json::Value::Null,
        };
        for i in 0..n {
            let iface = iface_name(topology, i);
            u.children
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.spawn_daemon(topology, i, &iface, opts.node_exe)?);
            u.ifaces.push(iface.clone());
            let mut req = format!(
                "set=1\nprivate_key={}\nlisten_port={WG_PORT}\nreplace_peers=true\n",
                hex(&secrets[i as usize].to_bytes())
            );
            for p in wg_peers(topology, opts, &publics, i) {
                req += &format!(
                    "public_key={}\nendpoint={}\nallowed_ip={}/32\n",
                    hex(&p.public),
                    p.endpoint,
                    p.allowed
                );
            }
            req += "\n";
            uapi(&uapi_path(&iface), &req)
                .map_err(|e| setup_err(format!("configuring {iface} for node {i}: {e}")))?;
            address_and_up(topology, i, &iface, opts.automation)?;
        }
        if let Some(first) = u.ifaces.first() {
            u.tun_offloads = tun_offloads(topology, 0, first);
        }
        Ok(Box::new(u))
    }

    fn lifecycle(
        &self,
        topology: &Topology,
        opts: &super::StackContext<'_>,
    ) -> Result<(String, Option<super::LifecycleTimes>), StackError> {
        Ok((
            super::lifecycle::tun_daemon_phases(self.daemon, opts.automation),
            Some(super::lifecycle::tun_daemon(self, topology, opts)?),
        ))
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        let diagnose: Option<super::Diagnose> = ctx.wg_uapi.clone().map(|path| {
            let d: super::Diagnose = std::sync::Arc::new(move |peer: u32| diagnose(&path, peer));
            d
        });
        let control: std::sync::Arc<dyn super::PeerControl> = match &ctx.wg_uapi {
            Some(path) => std::sync::Arc::new(super::wg_control::UapiControl::new(
                path.clone(),
                ctx.automation,
            )),
            None => std::sync::Arc::new(super::NoPeers),
        };
        udp_endpoint(
            self.protocol,
            ctx,
            Some(wg_socket::MAX_QUIC_PAYLOAD),
            diagnose,
            control,
        )
    }
}

/// `stackbench wg-device`: serves a boringtun device until killed (GotaTun's:
/// [`super::wg_gotatun::run_device`]).
pub fn run_boringtun_device(iface: &str, threads: usize) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = boringtun::device::DeviceConfig {
        n_threads: threads,
        use_connected_socket: true,
        use_multi_queue: false,
        uapi_fd: -1,
    };
    let mut handle = boringtun::device::DeviceHandle::new(iface, config)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("creating boringtun device {iface}"))?;
    handle.wait();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon that dies mid-run is named, with what it last said; live ones are not.
    #[test]
    fn a_dead_daemon_is_reported_with_its_last_words() {
        let spawn = |script: &str| {
            DaemonProcess::new(
                Command::new("sh")
                    .args(["-c", script])
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("sh runs"),
            )
        };
        let mut u = TunUnderlay {
            protocol: Protocol::QuicNull,
            daemon: Daemon::Gotatun,
            children: Mutex::new(vec![
                spawn("sleep 60"),
                spawn("echo 'TUN gone' >&2; exit 1"),
            ]),
            // Names no real socket: Drop removes these files.
            ifaces: vec!["sbtest-none0".into(), "sbtest-none1".into()],
            version: String::new(),
            tun_offloads: serde_json::Value::Null,
        };
        let t0 = Instant::now();
        let failure = loop {
            if let Some(f) = u.process_failure() {
                break f;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the exit was never seen"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            failure.starts_with("node 1's WireGuard daemon for sbtest-none1 exited"),
            "{failure}"
        );
        assert!(!failure.contains("node 0"), "{failure}");
        // The drain may lag the exit by a moment; the line arrives with it.
        let lines = u.children.get_mut().expect("unpoisoned")[1].exit_report();
        assert_eq!(lines, "TUN gone");
    }

    #[test]
    fn offloads_are_read_from_ethtool_as_it_prints_them() {
        // Abridged `ethtool -k` of wireguard-go 0.0.20220316's TUN.
        let text = "Features for wg0:\nrx-checksumming: off [fixed]\ntx-checksumming: off\n\ttx-checksum-ip-generic: off [requested on]\ntcp-segmentation-offload: off\ngeneric-segmentation-offload: on\ntx-udp-segmentation: off [requested on]\n";
        let v = offloads_of(text, &["tx-checksumming", "tx-udp-segmentation", "absent"]);
        assert_eq!(
            v,
            serde_json::json!({"tx-checksumming": "off", "tx-udp-segmentation": "off [requested on]"})
        );
    }
}
