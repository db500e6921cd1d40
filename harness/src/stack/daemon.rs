//! A WireGuard daemon process serving one node's TUN, with its stderr drained.
//!
//! A daemon's stderr is a pipe. Left unread, it fills (64 KiB) and the daemon's next log
//! line blocks its thread; a single-threaded daemon then stops forwarding and answering UAPI
//! while it looks alive. GotaTun logs every packet it cannot write to a TUN that is down,
//! so an interface bounce under load filled the pipe within a second. The drain keeps the
//! last lines, so a daemon that dies is reported with what it said.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Lines of a daemon's stderr kept for its error report.
const TAIL_LINES: usize = 20;

/// What a daemon wrote to stderr: the last lines and how many there were.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
    total: u64,
}

/// A running daemon; dropping it kills it and reaps it.
pub(super) struct DaemonProcess {
    child: Child,
    tail: Arc<Mutex<StderrTail>>,
    /// Ends at the pipe's end of file.
    drain: Option<JoinHandle<()>>,
}

impl DaemonProcess {
    /// Takes over `child`, whose stderr must be piped, and starts draining it.
    pub(super) fn new(mut child: Child) -> Self {
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let drain = child.stderr.take().map(|stderr| {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    if t.lines.len() == TAIL_LINES {
                        t.lines.pop_front();
                    }
                    t.lines.push_back(line);
                    t.total += 1;
                }
            })
        });
        Self { child, tail, drain }
    }

    pub(super) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's exit status, if it has exited.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines the daemon wrote to stderr, and how many it wrote in all.
    pub(super) fn stderr_tail(&self) -> (String, u64) {
        let t = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        (
            t.lines.iter().cloned().collect::<Vec<_>>().join("\n"),
            t.total,
        )
    }

    /// Stops the daemon and reaps it. Its drain ends by itself when the pipe closes, which
    /// a process the daemon forked could delay: the drain is not waited for.
    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What an exited daemon said: its drain is given a moment to read the last lines.
    pub(super) fn exit_report(&mut self) -> String {
        let t0 = std::time::Instant::now();
        while self.drain.as_ref().is_some_and(|d| !d.is_finished())
            && t0.elapsed() < std::time::Duration::from_secs(1)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.stderr_tail().0
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A child that writes far more than a pipe holds must still exit: the drain reads it.
    #[test]
    fn a_chatty_daemon_is_never_blocked_by_its_stderr() {
        let child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 5000 ]; do echo \"line $i of a noisy log\" >&2; i=$((i+1)); done; exit 3"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut d = DaemonProcess::new(child);
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = d.exited() {
                break s;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(60),
                "the child blocked on its stderr"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        let report = d.exit_report();
        let (_, total) = d.stderr_tail();
        assert_eq!(total, 5000);
        assert_eq!(report.lines().count(), TAIL_LINES);
        assert!(report.ends_with("line 4999 of a noisy log"), "{report}");
    }
}
