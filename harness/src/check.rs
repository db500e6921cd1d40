//! What this host can do: privileges, namespaces, TUN, kernel WireGuard, netem and tools.
//! Stacks judge their availability from it, and `stackbench check` prints it.

use serde::Serialize;
use std::{collections::BTreeMap, process::Command};

/// A capability: present, or absent with the reason and, where there is one, the fix.
pub type Capability = Result<String, String>;

#[derive(Debug, Clone, Serialize)]
pub struct HostCaps {
    /// "root", "user namespace (rootless)" or "unprivileged".
    pub privileges: String,
    /// Whether a normal user could run stackbench rootless here.
    pub user_namespaces: Capability,
    pub netns: Capability,
    pub tun: Capability,
    pub kernel_wireguard: Capability,
    /// Kernel SCTP sockets (the VM's kernel has them; this project's host kernel has not).
    pub kernel_sctp: Capability,
    /// usrsctp, the userspace SCTP library the host's SCTP stacks load.
    pub usrsctp: Capability,
    pub netem: Capability,
    pub tbf: Capability,
    /// Tool name → version line, or how to install it.
    pub tools: BTreeMap<&'static str, Capability>,
}

/// Tools the stacks use, with the command that installs each on Debian/Ubuntu.
const TOOLS: &[(&str, &[&str], &str)] = &[
    ("ip", &["-V"], "apt-get install iproute2"),
    ("tc", &["-V"], "apt-get install iproute2"),
    ("wg", &["--version"], "apt-get install wireguard-tools"),
    ("ethtool", &["--version"], "apt-get install ethtool"),
    ("ping", &["-V"], "apt-get install iputils-ping"),
    (
        "wireguard-go",
        &["--version"],
        "apt-get install wireguard-go",
    ),
    (
        "boringtun-cli",
        &["--version"],
        "cargo install boringtun-cli",
    ),
];

/// The distribution's package of the wireguard-go on the PATH, e.g. "Debian package
/// 0.0.20231211-1~bpo12+1": the binary's own version line lags its releases (the 2023-12
/// release still says v0.0.20230223).
pub fn wireguard_go_package() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "wireguard-go"])
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .map_or_else(
            || "not from a Debian package".into(),
            |o| {
                format!(
                    "Debian package {}",
                    String::from_utf8_lossy(&o.stdout).trim()
                )
            },
        )
}

pub(crate) fn tool_version(name: &str, args: &[&str], install: &str) -> Capability {
    match Command::new(name).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            Ok(String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned())
        }
        Err(_) => Err(format!("{name} not found; install it with: {install}")),
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Unprivileged user namespaces, from the kernel's sysctls.
fn user_namespaces() -> Capability {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("disabled (kernel.unprivileged_userns_clone=0); enable with: sysctl kernel.unprivileged_userns_clone=1".into());
    }
    match read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok()) {
        Some(0) => Err("disabled (user.max_user_namespaces=0); enable with: sysctl user.max_user_namespaces=10000".into()),
        Some(n) => Ok(format!("enabled (user.max_user_namespaces={n}): non-root runs work")),
        None => Err("unknown: /proc/sys/user/max_user_namespaces is unreadable".into()),
    }
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Whether this kernel has SCTP. A module that is not loaded is reported, not loaded: an
/// SCTP socket would load it, and the host is not the run's to change.
fn kernel_sctp() -> Capability {
    // SAFETY: socket(2) with constant arguments; the descriptor is closed at once. Creating
    // it loads the sctp module where the kernel has it as a module, as `ip link add type
    // wireguard` does for WireGuard.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd >= 0 {
        // SAFETY: a descriptor this function opened.
        unsafe { libc::close(fd) };
        return Ok("SCTP sockets can be created".into());
    }
    let err = std::io::Error::last_os_error();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let module = std::path::Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/net/sctp");
    Err(if std::path::Path::new("/sys/module/sctp").exists() {
        format!("kernel SCTP sockets cannot be created ({err})")
    } else if module.is_dir() {
        format!(
            "the sctp module did not load ({} has it; {err}): modprobe sctp",
            module.display()
        )
    } else {
        "kernel has no SCTP (no sctp module); the VM's kernel has it (stackbench vm run)".into()
    })
}

/// Each tool the stacks (and `shadow`) use: its version line, or how to install it.
pub fn probe_tools() -> BTreeMap<&'static str, Capability> {
    let mut tools: BTreeMap<_, _> = TOOLS
        .iter()
        .map(|(n, a, i)| {
            // wireguard-go: the binary the stack will run, and the package it came from.
            let v = match *n {
                "wireguard-go" => {
                    let binary = crate::stack::wireguard_go();
                    let from = match std::env::var_os("STACKBENCH_WIREGUARD_GO") {
                        Some(b) => {
                            format!("{}, from STACKBENCH_WIREGUARD_GO", b.to_string_lossy())
                        }
                        None => wireguard_go_package(),
                    };
                    tool_version(&binary.to_string_lossy(), a, i)
                        .map(|line| format!("{line} ({from})"))
                }
                _ => tool_version(n, a, i),
            };
            (*n, v)
        })
        .collect();
    tools.insert("shadow", crate::shadow::installed());
    tools
}

impl HostCaps {
    /// Probes the host, using a scratch namespace named `<prefix>-probe` that is removed again.
    pub fn probe(prefix: &str) -> HostCaps {
        let tools = probe_tools();
        let privileges = if crate::rootless::inside() {
            "user namespace (rootless)"
        } else if euid() == 0 {
            "root"
        } else {
            "unprivileged"
        }
        .to_owned();
        let mut caps = HostCaps {
            privileges,
            user_namespaces: user_namespaces(),
            netns: Err("not probed".into()),
            tun: Err("not probed".into()),
            kernel_wireguard: Err("not probed".into()),
            kernel_sctp: kernel_sctp(),
            usrsctp: crate::stack::sctp::engine::usrsctp()
                .map(|_| format!("{} loads and starts", crate::stack::sctp::ffi::LIBRARY))
                .map_err(|e| e.to_string()),
            netem: Err("not probed".into()),
            tbf: Err("not probed".into()),
            tools,
        };
        if caps.tools["ip"].is_err() {
            caps.netns = Err("ip not found; install it with: apt-get install iproute2".into());
            return caps;
        }
        let ns = format!("{prefix}-probe");
        if let Err(e) = sh(&["ip", "netns", "add", &ns]) {
            caps.netns = Err(format!(
                "cannot create a network namespace ({e}); run as root, or as a user where unprivileged user namespaces are enabled (sysctl kernel.unprivileged_userns_clone=1)"
            ));
            return caps;
        }
        caps.netns = Ok("ip netns add works".into());
        caps.tun = sh(&[
            "ip", "-n", &ns, "tuntap", "add", "dev", "sbprobe0", "mode", "tun",
        ])
        .map(|()| "TUN devices can be created".into())
        .map_err(|e| {
            format!("cannot create a TUN device: {e} (is /dev/net/tun present? modprobe tun)")
        });
        caps.kernel_wireguard = sh(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            "sbprobe1",
            "type",
            "wireguard",
        ])
        .map(|()| "kernel WireGuard interfaces can be created".into())
        .map_err(|e| format!("kernel has no WireGuard support ({e})"));
        let tc = |qdisc: &[&str]| {
            let mut args = vec![
                "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root",
            ];
            args.extend_from_slice(qdisc);
            sh(&args)
        };
        caps.netem = tc(&["netem", "delay", "1ms"])
            .map(|()| "netem qdisc available".into())
            .map_err(|e| {
                format!("no netem qdisc ({e}); delay and loss need the userspace emulator")
            });
        let _ = sh(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "lo", "root",
        ]);
        caps.tbf = tc(&["tbf", "rate", "10mbit", "burst", "32kb", "latency", "50ms"])
            .map(|()| "tbf qdisc available".into())
            .map_err(|e| format!("no tbf qdisc ({e}); rate limits are impossible"));
        let _ = sh(&["ip", "netns", "del", &ns]);
        caps
    }

    /// Why namespace-based stacks cannot run here, if they cannot.
    pub fn namespaces_unavailable(&self) -> Option<String> {
        self.netns.as_ref().err().cloned()
    }

    /// Why a scenario's link shaping cannot be applied, if it cannot.
    pub fn shaping_unavailable(&self) -> Option<String> {
        self.tbf.as_ref().err().cloned()
    }

    /// A host about which nothing is known (for listing stacks without probing).
    pub fn probe_nothing() -> HostCaps {
        Self::unprobed("not probed", BTreeMap::new())
    }

    pub fn none_for_tests() -> HostCaps {
        Self::unprobed("test", BTreeMap::new())
    }

    /// A host whose kernel was not probed (each capability says `why`), with `tools`.
    pub fn unprobed(why: &str, tools: BTreeMap<&'static str, Capability>) -> HostCaps {
        HostCaps {
            privileges: "unprivileged".into(),
            user_namespaces: Err(why.into()),
            netns: Err(why.into()),
            tun: Err(why.into()),
            kernel_wireguard: Err(why.into()),
            kernel_sctp: Err(why.into()),
            usrsctp: Err(why.into()),
            netem: Err(why.into()),
            tbf: Err(why.into()),
            tools,
        }
    }
}
