//! A microsecond-precise async sleep on CLOCK_MONOTONIC. tokio's timer wheel rounds to
//! milliseconds, which would add up to 1 ms of harness-made delay to every scheduled object.
//! Waking a thread from idle costs 35-60 µs more on this class of VM, so the sleep ends
//! [`SPIN_NS`] early and yields to other tasks until the deadline: a real node sending an
//! object is already awake, and the generator's wake-up must not be charged to the stack.

use crate::metrics::monotonic_ns;
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};
use tokio::io::unix::AsyncFd;

/// How long before a deadline the timer stops sleeping and starts yielding.
pub const SPIN_NS: u64 = 100_000;
/// Waits shorter than this never spin: the thread is busy enough not to go idle, and
/// spinning would take CPU from real work.
const SPIN_AFTER_IDLE_NS: u64 = 1_000_000;

pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
    spin_ns: std::cell::Cell<u64>,
    /// Whether the last [`SPIN_NS`] before a deadline are spent yielding: not under a
    /// simulator, where time stands still while a process spins.
    spins: bool,
}

impl PreciseTimer {
    /// A timer that spins before deadlines when `spins` (see [`SPIN_NS`]).
    pub fn new(spins: bool) -> io::Result<Self> {
        // SAFETY: timerfd_create has no pointer arguments; the result is checked below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open and unchanged
        // for its whole lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(PreciseTimer {
            fd,
            spin_ns: std::cell::Cell::new(0),
            spins,
        })
    }

    /// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns`. When the wait is long enough
    /// for the thread to go idle, the last [`SPIN_NS`] are spent yielding (other tasks keep
    /// running); the time spent so is added to [`PreciseTimer::spin_ns`], so reports can
    /// take it out of the node's CPU.
    pub async fn sleep_until(&self, deadline_ns: u64) -> io::Result<()> {
        let now = monotonic_ns();
        if !self.spins || deadline_ns.saturating_sub(now) < SPIN_AFTER_IDLE_NS {
            return self.block_until(deadline_ns).await;
        }
        self.block_until(deadline_ns - SPIN_NS).await?;
        let spin_start = monotonic_ns();
        while monotonic_ns() < deadline_ns {
            tokio::task::yield_now().await;
        }
        self.spin_ns
            .set(self.spin_ns.get() + monotonic_ns().saturating_sub(spin_start));
        Ok(())
    }

    /// Total time spent busy-waiting so far.
    pub fn spin_ns(&self) -> u64 {
        self.spin_ns.get()
    }

    async fn block_until(&self, deadline_ns: u64) -> io::Result<()> {
        if monotonic_ns() >= deadline_ns {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and pointer to an owned itimerspec; old value not requested.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|fd| {
                let mut expirations = 0u64;
                // SAFETY: reading 8 bytes into an owned u64 from a valid timerfd.
                let n = unsafe {
                    libc::read(
                        fd.get_ref().as_raw_fd(),
                        (&mut expirations as *mut u64).cast(),
                        8,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match res {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
