//! Running without root: the controller re-executes itself inside a new user + network +
//! mount namespace where it holds CAP_NET_ADMIN, with a private tmpfs on /run so that
//! `ip netns` works. Everything the run creates lives and dies inside that namespace.

use anyhow::{bail, Context, Result};
use std::{ffi::CString, os::unix::process::CommandExt, process::Command};

const MARK: &str = "STACKBENCH_ROOTLESS";

/// Whether this process is the re-executed, namespaced controller.
pub fn inside() -> bool {
    std::env::var_os(MARK).is_some()
}

/// As a non-root user, replaces this process with itself inside fresh namespaces; as root,
/// or already inside, returns at once.
pub fn reexec_if_needed() -> Result<()> {
    if crate::check::euid() == 0 || inside() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the stackbench executable")?;
    let err = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    bail!(
        "running without root needs `unshare` (util-linux) and unprivileged user namespaces \
         (sysctl kernel.unprivileged_userns_clone=1); starting it failed: {err}"
    )
}

/// Inside the namespaces: a private /run, so namespace names and sockets are ours alone.
pub fn prepare_private_run() -> Result<()> {
    if !inside() {
        return Ok(());
    }
    let c = |s: &str| CString::new(s).context("static path");
    let (src, target, fstype) = (c("tmpfs")?, c("/run")?, c("tmpfs")?);
    // SAFETY: all pointers are valid NUL-terminated strings; data may be null.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "mounting a private tmpfs on /run: {}",
            std::io::Error::last_os_error()
        );
    }
    std::fs::create_dir_all("/run/netns").context("creating /run/netns")?;
    Ok(())
}
