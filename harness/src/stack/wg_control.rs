//! Churn on WireGuard devices from inside a node's namespace: over a userspace daemon's
//! UAPI socket; for kernel WireGuard over netlink from code, or with `wg` and `ip`
//! processes (the scenario's `[churn] automation`). A removed peer's settings are
//! remembered so it can be added back exactly as it was, as an operator's automation would.

use super::{wg_socket, wg_tun, PeerControl, StackError};
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    process::Command,
    sync::Mutex,
    time::{Duration, SystemTime},
};

/// The node index behind a tunnel address ("198.19.0.3/32" is node 2).
fn peer_of_allowed_ip(allowed: &str) -> Option<u32> {
    let ip: Ipv4Addr = allowed.split('/').next()?.parse().ok()?;
    let o = ip.octets();
    let k = (u32::from(o[2]) << 8) | u32::from(o[3]);
    (o[..2] == [198, 19] && k > 0).then(|| k - 1)
}

/// Seconds since the epoch in 2001: UAPI handshake times below this are ages.
const EPOCH_2001: u64 = 1_000_000_000;

fn wanted(peer: u32) -> String {
    format!("{}/32", wg_socket::virtual_ip(peer))
}

fn failed(what: &str, e: impl std::fmt::Display) -> StackError {
    StackError::Setup(format!("{what}: {e}"))
}

/// Runs a command and fails with its stderr.
fn run(cmd: &mut Command, what: &str) -> Result<String, StackError> {
    let out = cmd.output().map_err(|e| failed(what, e))?;
    if !out.status.success() {
        return Err(failed(what, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn set_link(iface: &str, up: bool) -> Result<bool, StackError> {
    let state = if up { "up" } else { "down" };
    run(
        Command::new("ip").args(["link", "set", "dev", iface, state]),
        &format!("ip link set {iface} {state}"),
    )
    .map(|_| true)
}

/// A userspace daemon (boringtun, GotaTun, wireguard-go) through its UAPI socket; its TUN
/// goes up and down over rtnetlink, or with `ip link` when automation is by processes.
pub struct UapiControl {
    path: PathBuf,
    iface: String,
    automation: super::Automation,
    /// Removed peers: the UAPI lines that add each back.
    removed: Mutex<BTreeMap<u32, String>>,
}

impl UapiControl {
    pub fn new(path: PathBuf, automation: super::Automation) -> UapiControl {
        let iface = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        UapiControl {
            path,
            iface,
            automation,
            removed: Mutex::default(),
        }
    }

    /// Each peer's block of a UAPI `get`, from its public_key line on.
    fn blocks(&self) -> Result<Vec<Vec<String>>, StackError> {
        let lines = wg_tun::uapi(&self.path, "get=1\n\n").map_err(|e| failed("UAPI get", e))?;
        let mut blocks: Vec<Vec<String>> = vec![];
        for l in lines {
            if l.starts_with("public_key=") {
                blocks.push(vec![]);
            }
            if let Some(b) = blocks.last_mut() {
                b.push(l);
            }
        }
        Ok(blocks)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent between statements; a panic elsewhere cannot break it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerControl for UapiControl {
    fn remove_peer(&self, peer: u32) -> Result<(), StackError> {
        let block = self
            .blocks()?
            .into_iter()
            .find(|b| {
                b.iter()
                    .any(|l| l == &format!("allowed_ip={}", wanted(peer)))
            })
            .ok_or_else(|| failed("UAPI remove", format!("node {peer} is not a peer")))?;
        let keep = [
            "public_key=",
            "endpoint=",
            "allowed_ip=",
            "persistent_keepalive_interval=",
        ];
        let add: String = block
            .iter()
            .filter(|l| keep.iter().any(|k| l.starts_with(k)))
            .map(|l| format!("{l}\n"))
            .collect();
        let key = &block[0]; // Blocks start with their public_key line.
        wg_tun::uapi(&self.path, &format!("set=1\n{key}\nremove=true\n\n"))
            .map_err(|e| failed("UAPI remove", e))?;
        lock(&self.removed).insert(peer, add);
        Ok(())
    }

    fn add_peer(&self, peer: u32) -> Result<(), StackError> {
        let add = lock(&self.removed)
            .remove(&peer)
            .ok_or_else(|| failed("UAPI add", format!("node {peer} was not removed")))?;
        wg_tun::uapi(&self.path, &format!("set=1\n{add}\n"))
            .map(|_| ())
            .map_err(|e| failed("UAPI add", e))
    }

    fn set_interface(&self, up: bool) -> Result<bool, StackError> {
        match self.automation {
            super::Automation::Library => {
                super::wg_netlink::set_link(&self.iface, up, None).map(|()| true)
            }
            super::Automation::Processes => set_link(&self.iface, up),
        }
    }

    fn last_handshakes(&self) -> Vec<(u32, SystemTime)> {
        let field = |b: &[String], k: &str| -> Option<u64> {
            b.iter().find_map(|l| l.strip_prefix(k)?.parse().ok())
        };
        self.blocks()
            .unwrap_or_default()
            .iter()
            .filter_map(|b| {
                let peer = b
                    .iter()
                    .find_map(|l| peer_of_allowed_ip(l.strip_prefix("allowed_ip=")?))?;
                let sec = field(b, "last_handshake_time_sec=").filter(|s| *s > 0)?;
                let nsec = field(b, "last_handshake_time_nsec=").unwrap_or(0);
                let t = Duration::new(sec, nsec as u32);
                // boringtun's device reports the time since the handshake, where the UAPI
                // (and wireguard-go) give the time since the epoch.
                Some((
                    peer,
                    match sec < EPOCH_2001 {
                        true => SystemTime::now() - t,
                        false => SystemTime::UNIX_EPOCH + t,
                    },
                ))
            })
            .collect()
    }
}

/// Kernel WireGuard through `wg` and `ip`, the node's namespace's only WireGuard device.
pub struct WgToolControl {
    removed: Mutex<BTreeMap<u32, Vec<String>>>,
    /// The device's name, found once: every `wg` run is a process.
    iface: std::sync::OnceLock<String>,
}

impl WgToolControl {
    pub fn new() -> WgToolControl {
        WgToolControl {
            removed: Mutex::default(),
            iface: std::sync::OnceLock::new(),
        }
    }

    fn iface(&self) -> Result<String, StackError> {
        if let Some(i) = self.iface.get() {
            return Ok(i.clone());
        }
        let out = run(
            Command::new("wg").args(["show", "interfaces"]),
            "wg show interfaces",
        )?;
        let iface = out
            .split_whitespace()
            .next()
            .map(str::to_owned)
            .ok_or_else(|| failed("wg show interfaces", "no WireGuard device here"))?;
        Ok(self.iface.get_or_init(|| iface).clone())
    }

    /// Peer lines of `wg show IFACE dump`: key, psk, endpoint, allowed ips, handshake, ...
    fn peers(iface: &str) -> Result<Vec<Vec<String>>, StackError> {
        let out = run(
            Command::new("wg").args(["show", iface, "dump"]),
            "wg show dump",
        )?;
        Ok(out
            .lines()
            .skip(1) // The device's own line.
            .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
            .filter(|f| f.len() >= 8)
            .collect())
    }
}

impl Default for WgToolControl {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerControl for WgToolControl {
    fn remove_peer(&self, peer: u32) -> Result<(), StackError> {
        let iface = self.iface()?;
        let f = Self::peers(&iface)?
            .into_iter()
            .find(|f| f[3].split(',').any(|a| a == wanted(peer)))
            .ok_or_else(|| failed("wg set remove", format!("node {peer} is not a peer")))?;
        run(
            Command::new("wg").args(["set", &iface, "peer", &f[0], "remove"]),
            "wg set remove",
        )?;
        let add = vec![
            "set".into(),
            iface,
            "peer".into(),
            f[0].clone(),
            "endpoint".into(),
            f[2].clone(),
            "allowed-ips".into(),
            f[3].clone(),
        ];
        lock(&self.removed).insert(peer, add);
        Ok(())
    }

    fn add_peer(&self, peer: u32) -> Result<(), StackError> {
        let add = lock(&self.removed)
            .remove(&peer)
            .ok_or_else(|| failed("wg set", format!("node {peer} was not removed")))?;
        run(Command::new("wg").args(&add), "wg set peer").map(|_| ())
    }

    fn set_interface(&self, up: bool) -> Result<bool, StackError> {
        set_link(&self.iface()?, up)
    }

    fn last_handshakes(&self) -> Vec<(u32, SystemTime)> {
        let Ok(iface) = self.iface() else {
            return vec![];
        };
        Self::peers(&iface)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| {
                let peer = f[3].split(',').find_map(peer_of_allowed_ip)?;
                let sec: u64 = f[4].parse().ok().filter(|s| *s > 0)?;
                Some((peer, SystemTime::UNIX_EPOCH + Duration::from_secs(sec)))
            })
            .collect()
    }
}

/// Kernel WireGuard over netlink from code ([`super::wg_netlink`]): the node's namespace's
/// only WireGuard device, as [`WgToolControl`] drives it with processes.
pub struct NetlinkControl {
    removed: Mutex<BTreeMap<u32, super::wg_netlink::PeerSpec>>,
    iface: std::sync::OnceLock<String>,
}

impl NetlinkControl {
    pub fn new() -> NetlinkControl {
        NetlinkControl {
            removed: Mutex::default(),
            iface: std::sync::OnceLock::new(),
        }
    }

    fn iface(&self) -> Result<String, StackError> {
        if let Some(i) = self.iface.get() {
            return Ok(i.clone());
        }
        let iface = super::wg_netlink::devices()?
            .into_iter()
            .next()
            .ok_or_else(|| failed("netlink", "no WireGuard device here"))?;
        Ok(self.iface.get_or_init(|| iface).clone())
    }
}

impl Default for NetlinkControl {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerControl for NetlinkControl {
    fn remove_peer(&self, peer: u32) -> Result<(), StackError> {
        let iface = self.iface()?;
        let spec = super::wg_netlink::peers(&iface)?
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| p.allowed == wg_socket::virtual_ip(peer))
            .ok_or_else(|| failed("netlink remove", format!("node {peer} is not a peer")))?;
        super::wg_netlink::remove_peer(&iface, spec.public)?;
        lock(&self.removed).insert(peer, spec);
        Ok(())
    }

    fn add_peer(&self, peer: u32) -> Result<(), StackError> {
        let spec = lock(&self.removed)
            .remove(&peer)
            .ok_or_else(|| failed("netlink add", format!("node {peer} was not removed")))?;
        super::wg_netlink::add_peer(&self.iface()?, &spec)
    }

    fn set_interface(&self, up: bool) -> Result<bool, StackError> {
        super::wg_netlink::set_link(&self.iface()?, up, None).map(|()| true)
    }

    fn last_handshakes(&self) -> Vec<(u32, SystemTime)> {
        let Ok(iface) = self.iface() else {
            return vec![];
        };
        super::wg_netlink::peers(&iface)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(p, at)| {
                let peer = peer_of_allowed_ip(&format!("{}/32", p.allowed))?;
                Some((peer, at.filter(|t| *t > SystemTime::UNIX_EPOCH)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_addresses_name_their_nodes() {
        assert_eq!(peer_of_allowed_ip("198.19.0.3/32"), Some(2));
        assert_eq!(peer_of_allowed_ip("198.19.0.1"), Some(0));
        // Simulated networks go past 254 nodes.
        assert_eq!(peer_of_allowed_ip("198.19.3.233/32"), Some(1000));
        assert_eq!(peer_of_allowed_ip(&wanted(1000)), Some(1000));
        assert_eq!(peer_of_allowed_ip("10.0.0.3/32"), None);
        assert_eq!(peer_of_allowed_ip("198.19.0.0/32"), None);
        assert_eq!(peer_of_allowed_ip(&wanted(7)), Some(7));
    }
}
