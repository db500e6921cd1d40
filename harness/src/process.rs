//! Child processes the run owns (nodes, WireGuard daemons): each in its own process group,
//! so a terminal's Ctrl-C reaches only the controller, which stops them in order; and each
//! dies with the controller, even when the controller is killed with SIGKILL.

/// To be run between fork and exec.
///
/// # Safety
/// Only async-signal-safe calls (setpgid, prctl); meant for `pre_exec`.
pub unsafe fn guard_child() -> std::io::Result<()> {
    // SAFETY: setpgid and prctl are async-signal-safe and take plain integers.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    Ok(())
}
