//! The node processes of one repetition: spawned into their namespaces, watched for death,
//! talked to over the control socket, and killed on drop whatever happened.

use crate::{
    control::{self, ToController, ToNode},
    topology::Topology,
};
use anyhow::{anyhow, bail, Context, Result};
use std::{
    collections::VecDeque,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{unix::OwnedWriteHalf, UnixListener},
    sync::mpsc,
};

mod run_phase;
pub use run_phase::RunOutcome;

const STDERR_TAIL: usize = 12;

/// Something that happened to a node.
#[derive(Debug)]
pub enum NodeEvent {
    Message(u32, ToController),
    Connected(u32, OwnedWriteHalf),
    Exited(u32, ExitStatus, Vec<String>),
}

/// The running nodes of one repetition.
pub struct NodeSet {
    pids: Vec<Option<u32>>,
    netns: Vec<String>,
    writers: Vec<Option<OwnedWriteHalf>>,
    events: mpsc::UnboundedReceiver<NodeEvent>,
    tx: mpsc::UnboundedSender<NodeEvent>,
    exe: PathBuf,
    sock: PathBuf,
    verbose: bool,
    /// Each node's keys for the repetition (0600; removed with the set).
    key_files: Vec<PathBuf>,
    /// Each node's record log (0600; read when the node reports, removed with the set).
    record_logs: Vec<PathBuf>,
    accept: tokio::task::JoinHandle<()>,
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(9)) => "was killed by signal 9 (SIGKILL)".into(),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({status})"),
    }
}

impl NodeSet {
    /// Starts one node per namespace, each told to report to the socket at `sock`.
    pub fn spawn(topology: &Topology, exe: &Path, sock: &Path, verbose: bool) -> Result<NodeSet> {
        let _ = std::fs::remove_file(sock);
        let listener = UnixListener::bind(sock)
            .with_context(|| format!("binding control socket {}", sock.display()))?;
        let (tx, events) = mpsc::unbounded_channel();
        let n = topology.nodes();
        let mut set = NodeSet {
            pids: vec![None; n as usize],
            netns: (0..n).map(|i| topology.node_netns(i)).collect(),
            writers: (0..n).map(|_| None).collect(),
            events,
            tx: tx.clone(),
            exe: exe.to_owned(),
            sock: sock.to_owned(),
            verbose,
            key_files: (0..n)
                .map(|i| sock.with_extension(format!("n{i}.key")))
                .collect(),
            record_logs: (0..n)
                .map(|i| sock.with_extension(format!("n{i}.records")))
                .collect(),
            // The accept loop owns the socket; the controller removes its file at the end.
            accept: tokio::spawn(accept_loop(listener, tx, n)),
        };
        for i in 0..n {
            set.start(topology, i)?;
        }
        Ok(set)
    }

    /// Starts node `i`'s process (again, after a crash: with the same key file).
    pub fn start(&mut self, topology: &Topology, i: u32) -> Result<()> {
        let mut cmd = topology.command_in(i, &self.exe);
        cmd.arg("node")
            .arg("--control")
            .arg(&self.sock)
            .arg("--index")
            .arg(i.to_string())
            .arg("--key-file")
            .arg(&self.key_files[i as usize])
            .arg("--record-log")
            .arg(&self.record_logs[i as usize]);
        if self.verbose {
            cmd.arg("-v");
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: guard_child makes only async-signal-safe calls.
        unsafe { cmd.pre_exec(|| crate::process::guard_child()) };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting node {i} in {}", topology.node_netns(i)))?;
        self.pids[i as usize] = child.id();
        self.writers[i as usize] = None;
        let stderr = child.stderr.take();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut tail = VecDeque::new();
            if let Some(err) = stderr {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    tracing::debug!("node {i}: {l}");
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(l);
                }
            }
            let status = child
                .wait()
                .await
                .unwrap_or_else(|_| ExitStatus::from_raw(-1));
            let _ = tx.send(NodeEvent::Exited(i, status, tail.into()));
        });
        Ok(())
    }

    /// Puts back into `r` what node `i` wrote to its record log, when it kept one, and
    /// removes the log.
    fn read_record_log(&self, i: u32, r: &mut crate::control::NodeReport) -> Result<()> {
        let Some(logged) = r.logged else {
            return Ok(());
        };
        let path = &self.record_logs[i as usize];
        let what = || format!("{}: its record log {}", self.who(i), path.display());
        let text = std::fs::read_to_string(path).with_context(what)?;
        stackbench_core::record_log::restore(&text, logged, r).with_context(what)?;
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    fn who(&self, i: u32) -> String {
        let pid = self
            .pids
            .get(i as usize)
            .copied()
            .flatten()
            .map_or("?".into(), |p| p.to_string());
        format!("node {i} (pid {pid}, netns {})", self.netns[i as usize])
    }

    /// Waits for the next event, or fails when `deadline` passes first.
    async fn next(&mut self, deadline: tokio::time::Instant, phase: &str) -> Result<NodeEvent> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => bail!("all node watchers ended during {phase}"),
            Err(_) => bail!("deadline passed during {phase}"),
        }
    }

    /// What node `i`'s death says, with its last output.
    fn death(&mut self, i: u32, status: ExitStatus, tail: &[String], phase: &str) -> String {
        let who = self.who(i);
        self.pids[i as usize] = None;
        self.writers[i as usize] = None;
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("; its last output:\n    {}", tail.join("\n    "))
        };
        format!("{who} {} during {phase}{tail}", describe_exit(status))
    }

    /// Handles an event every phase treats alike; returns the message if it was one.
    fn common(&mut self, ev: NodeEvent, phase: &str) -> Result<Option<(u32, ToController)>> {
        match ev {
            NodeEvent::Connected(i, w) => {
                self.writers[i as usize] = Some(w);
                Ok(None)
            }
            NodeEvent::Exited(i, status, tail) => bail!("{}", self.death(i, status, &tail, phase)),
            NodeEvent::Message(i, ToController::Failed { error }) => {
                bail!("{} failed during {phase}: {error}", self.who(i))
            }
            NodeEvent::Message(i, m) => Ok(Some((i, m))),
        }
    }

    /// Collects one message per node, choosing with `want`, within `timeout`.
    pub async fn gather<T>(
        &mut self,
        phase: &str,
        timeout: Duration,
        mut want: impl FnMut(ToController) -> Option<T>,
        mut on_tick: impl FnMut(),
    ) -> Result<Vec<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let n = self.pids.len();
        let mut got: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while got.iter().any(Option::is_none) {
            let ev = tokio::select! {
                ev = self.next(deadline, phase) => ev.map_err(|e| {
                    let missing: Vec<String> = got.iter().enumerate().filter(|(_, g)| g.is_none()).map(|(i, _)| self.who(i as u32)).collect();
                    anyhow!("{e} ({timeout:?}): no answer from {} — hung or unreachable", missing.join(", "))
                })?,
                _ = tick.tick() => { on_tick(); continue; }
            };
            if let Some((i, m)) = self.common(ev, phase)? {
                let what = format!("{m:?}");
                got[i as usize] = Some(want(m).ok_or_else(|| {
                    anyhow!(
                        "{} sent an unexpected message during {phase}: {what:.120}",
                        self.who(i)
                    )
                })?);
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    pub async fn send_all(&mut self, msg: impl Fn(u32) -> ToNode) -> Result<()> {
        for i in 0..self.writers.len() as u32 {
            self.send(i, &msg(i)).await?;
        }
        Ok(())
    }

    /// Sends `msg` to node `i`.
    pub async fn send(&mut self, i: u32, msg: &ToNode) -> Result<()> {
        let who = self.who(i);
        let w = self.writers[i as usize]
            .as_mut()
            .ok_or_else(|| anyhow!("{who} has not connected"))?;
        control::send(w, msg)
            .await
            .with_context(|| format!("sending to {who}"))
    }

    /// Asks nodes to leave and waits briefly for them; stragglers are killed on drop.
    pub async fn shutdown(mut self) {
        for w in self.writers.iter_mut().flatten() {
            let _ = control::send(w, &ToNode::Shutdown).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.pids.iter().any(Option::is_some) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(NodeEvent::Exited(i, ..))) => self.pids[i as usize] = None,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}

impl Drop for NodeSet {
    fn drop(&mut self) {
        self.accept.abort();
        for f in self.key_files.iter().chain(&self.record_logs) {
            let _ = std::fs::remove_file(f);
        }
        for pid in self.pids.iter().flatten() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child,
            // so it cannot have been reused by another process.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Accepts node processes' control connections, for as long as the set lives: a node
/// started again after a crash connects anew.
async fn accept_loop(listener: UnixListener, tx: mpsc::UnboundedSender<NodeEvent>, nodes: u32) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (r, w) = stream.into_split();
            let mut r = BufReader::new(r);
            let index = match control::recv::<_, ToController>(&mut r).await {
                Ok(Some(hello @ ToController::Hello { index, .. })) if index < nodes => {
                    let _ = tx.send(NodeEvent::Connected(index, w));
                    let _ = tx.send(NodeEvent::Message(index, hello));
                    index
                }
                _ => return,
            };
            loop {
                let m = match control::recv::<_, ToController>(&mut r).await {
                    Ok(Some(m)) => m,
                    Ok(None) => return,
                    // A message this controller cannot read fails the node, saying why,
                    // instead of leaving the run to time out on it.
                    Err(e) => ToController::Failed {
                        error: format!("its control message could not be read: {e}"),
                    },
                };
                if tx.send(NodeEvent::Message(index, m)).is_err() {
                    return;
                }
            }
        });
    }
}
