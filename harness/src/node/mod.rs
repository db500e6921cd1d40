//! The node: one process per namespace. It generates its key, learns its peers from the
//! controller, connects, and at the shared start instant runs the workload: sending its
//! schedule open-loop, receiving and timing every object, then reporting.
//!
//! Each node runs a current-thread tokio runtime: a multi-thread runtime made in-process
//! round trips bimodal on this class of machine (DESIGN.md), and one thread per node keeps
//! per-node CPU accounting meaningful.

mod churn;
mod record_log;
mod recorder;
mod session;
mod standalone;
pub use recorder::Recorder;
pub use standalone::report_file as standalone_report_file;
mod timeline;
mod timer;
mod upgrade;

use crate::{
    control::{self, NodeReport, NodeSetup, PeerInfo, SlotSetup, ToController, ToNode},
    metrics::monotonic_ns,
    stack::{self, tls::NodeIdentity, NodeContext},
};
use anyhow::{anyhow, bail, Context, Result};
use stackbench_core::{
    setup::{dial_order, SetupDeadlines, DIALS_IN_FLIGHT, FALLBACK_AFTER},
    workload::network::Slot,
};
use std::{cell::RefCell, collections::BTreeMap, net::IpAddr, path::PathBuf, rc::Rc};
use tokio::{
    io::{AsyncBufRead, AsyncWrite, BufReader},
    net::{TcpStream, UnixStream},
    task::LocalSet,
};

/// The runtime flavour nodes use, recorded in results.
pub const RUNTIME_FLAVOUR: &str = "tokio current_thread, one per node process";
pub use stackbench_core::node::LAG_LIMIT;

/// Where a node gets its setup and where its report goes.
#[derive(Debug, Clone)]
pub enum ControlSource {
    /// A controller on this host, over a Unix socket (which works across namespaces).
    Unix(PathBuf),
    /// A controller elsewhere, over TCP (`host:port`).
    Tcp(String),
    /// No controller: inputs from a file (`stackbench node-inputs`), the report to a folder.
    Files { inputs: PathBuf, results: PathBuf },
}

impl ControlSource {
    /// `tcp:HOST:PORT`, or a Unix socket's path (optionally `unix:PATH`).
    pub fn parse_control(s: &str) -> ControlSource {
        match s.strip_prefix("tcp:") {
            Some(addr) => ControlSource::Tcp(addr.to_owned()),
            None => ControlSource::Unix(PathBuf::from(s.strip_prefix("unix:").unwrap_or(s))),
        }
    }
}

/// Files a node under a controller keeps for the run.
#[derive(Debug, Default)]
pub struct NodeFiles {
    /// The node's keys persist here, as a real node's do: a process that starts again
    /// after a crash comes back with the same identity.
    pub key_file: Option<PathBuf>,
    /// First deliveries and sealed timeline steps are written here as they happen (see
    /// [`record_log`]) rather than kept until the report.
    pub record_log: Option<PathBuf>,
}

/// Runs node `index` (from the inputs file when there is no controller), keeping `files`.
pub fn main(source: ControlSource, index: u32, files: NodeFiles) -> Result<()> {
    // Linux delays timer wake-ups by up to 50 µs of "slack" by default; the send schedule
    // needs µs precision, and that delay would be charged to every stack.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the node's runtime")?;
    LocalSet::new().block_on(&rt, async move {
        match source {
            ControlSource::Unix(path) => {
                let stream = UnixStream::connect(&path).await.with_context(|| {
                    format!("connecting to the controller at {}", path.display())
                })?;
                let (r, w) = stream.into_split();
                serve(BufReader::new(r), w, index, &files).await
            }
            ControlSource::Tcp(addr) => {
                let stream = TcpStream::connect(&addr)
                    .await
                    .with_context(|| format!("connecting to the controller at tcp:{addr}"))?;
                stream.set_nodelay(true)?;
                let (r, w) = stream.into_split();
                serve(BufReader::new(r), w, index, &files).await
            }
            ControlSource::Files { inputs, results } => standalone::run(&inputs, &results).await,
        }
    })
}

/// The node's identity: the one in `key_file` when an earlier process of this node wrote
/// it (a restart after a crash), else a fresh one, saved there when there is a file. The
/// file is created exclusively, readable by its owner only.
fn identity(index: u32, key_file: Option<&std::path::Path>) -> Result<NodeIdentity> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = key_file else {
        return Ok(NodeIdentity::generate(index)?);
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let keys: control::NodeKeys = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the node's keys from {}", path.display()))?;
            return Ok(NodeIdentity::import(&keys)?);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let identity = NodeIdentity::generate(index)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the node's key file {}", path.display()))?;
    f.write_all(&serde_json::to_vec(&identity.export())?)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(identity)
}

/// Runs one repetition as the controller at the other end of `r` and `w` directs.
async fn serve<R, W>(mut r: R, mut w: W, index: u32, files: &NodeFiles) -> Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let identity = Rc::new(identity(index, files.key_file.as_deref())?);
    let pid = std::process::id();
    control::send(
        &mut w,
        &ToController::Hello {
            index,
            pid,
            spki: identity.spki.clone(),
            wg_public: identity.wg_public(),
        },
    )
    .await?;
    let setup = match control::recv(&mut r).await? {
        Some(ToNode::Setup(s)) => s,
        Some(other) => bail!("expected setup from the controller, got {other:?}"),
        None => return Ok(()), // The controller gave up before setup.
    };
    let outcome = repetition(index, &identity, &setup, files, &mut r, &mut w).await;
    let (msg, _keep_alive) = match outcome {
        Ok(Some((report, keep))) => (ToController::Report(Box::new(report)), Some(keep)),
        Ok(None) => return Ok(()),
        Err(e) => (
            ToController::Failed {
                error: format!("{e:#}"),
            },
            None,
        ),
    };
    control::send(&mut w, &msg).await?;
    // Keep connections open until every node has reported, then leave.
    let _ = control::recv::<_, ToNode>(&mut r).await;
    Ok(())
}

/// The node's state, held open after reporting so that peers still draining are not cut
/// off.
type KeepAlive = Rc<session::Node>;

async fn repetition<R, W>(
    index: u32,
    identity: &Rc<NodeIdentity>,
    setup: &NodeSetup,
    files: &NodeFiles,
    r: &mut R,
    w: &mut W,
) -> Result<Option<(NodeReport, KeepAlive)>>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let eps = build_endpoints(index, identity, setup)?;
    control::send(w, &ToController::Bound).await?;
    match control::recv(r).await? {
        Some(ToNode::Connect) => {}
        Some(ToNode::Rejoin { start_ns, firing }) => {
            let node = session::Node::new(
                index,
                identity.clone(),
                setup,
                eps,
                Connected::none(),
                start_ns,
            )?;
            keep_record_log(&node, files)?;
            churn::rejoin(&node, firing)?;
            let report = session::workload(&node).await?;
            return Ok(Some((report, node)));
        }
        _ => return Ok(None),
    }
    let connected = connect_all(index, &eps, setup).await?;
    control::send(
        w,
        &ToController::Ready {
            handshake_us: connected.handshake_us.clone(),
        },
    )
    .await?;
    let start_ns = match control::recv(r).await? {
        Some(ToNode::Start { start_ns }) => start_ns,
        _ => return Ok(None),
    };
    let node = session::Node::new(index, identity.clone(), setup, eps, connected, start_ns)?;
    keep_record_log(&node, files)?;
    let report = session::workload(&node).await?;
    Ok(Some((report, node)))
}

/// Sends what `node` records as the run goes to its record log, when it keeps one.
fn keep_record_log(node: &session::Node, files: &NodeFiles) -> Result<()> {
    if let Some(path) = &files.record_log {
        let log = record_log::RecordLog::create(path)?;
        node.rec.borrow_mut().keep_log(log);
    }
    Ok(())
}

/// This node's endpoint for the stack in `slot` of its setup.
fn build_endpoint(
    index: u32,
    identity: &NodeIdentity,
    setup: &NodeSetup,
    slot: Slot,
) -> Result<stack::NodeEndpoint> {
    let ss = setup
        .slots
        .get(slot as usize)
        .ok_or_else(|| anyhow!("node {index}: the setup has no stack slot {slot}"))?;
    let stack = stack::by_name(&ss.stack).ok_or_else(|| anyhow!("unknown stack {}", ss.stack))?;
    let ctx = NodeContext {
        index,
        identity,
        bind: ss.bind,
        wg_listen: ss.wg_listen,
        wg_uapi: ss.wg_uapi.clone(),
        peers: &ss.peers,
        resumption: setup.plan.churn.resumes(),
        transport: setup.plan.transport,
        automation: setup.plan.churn.automation,
        datagrams: match setup.simulated {
            true => stack::plain_udp::DatagramIo::Plain,
            false => stack::plain_udp::DatagramIo::Batched,
        },
    };
    stack
        .endpoint(&ctx)
        .with_context(|| format!("node {index}: building the {} endpoint", ss.stack))
}

/// One endpoint per stack slot this node speaks at the start (`None` in the others).
fn build_endpoints(
    index: u32,
    identity: &NodeIdentity,
    setup: &NodeSetup,
) -> Result<Vec<Option<stack::NodeEndpoint>>> {
    let speaks = setup
        .plan
        .network
        .speaks
        .get(index as usize)
        .cloned()
        .unwrap_or_else(|| vec![0]);
    let mut eps: Vec<Option<stack::NodeEndpoint>> = (0..setup.slots.len()).map(|_| None).collect();
    for slot in speaks {
        eps[slot as usize] = Some(build_endpoint(index, identity, setup, slot)?);
    }
    Ok(eps)
}

/// The connections a node set up, each with the stack slot it is on, and what that took.
pub(crate) struct Connected {
    pub conns: BTreeMap<u32, (Slot, stack::Conn)>,
    /// Handshake times of this node's own dials, µs.
    pub handshake_us: Vec<u64>,
    /// Dials on a preferred stack that failed, and the stack that served instead.
    pub fallbacks: Vec<String>,
}

impl Connected {
    /// No connections yet: a node that rejoins after a crash dials its peers as it runs.
    fn none() -> Connected {
        Connected {
            conns: BTreeMap::new(),
            handshake_us: vec![],
            fallbacks: vec![],
        }
    }
}

/// Dials higher-numbered peers, a few at a time in a seeded order, each on the first stack
/// of this node's that the peer speaks (falling back along the others), and accepts
/// lower-numbered ones on any of this node's endpoints as they come, all within deadlines
/// scaled to the network's size.
async fn connect_all(
    index: u32,
    eps: &[Option<stack::NodeEndpoint>],
    setup: &NodeSetup,
) -> Result<Connected> {
    let net = &setup.plan.network;
    let deadlines = SetupDeadlines::for_connections(setup.plan.fanout.graph.edges().count());
    let peers = setup.peers(index);
    let to_dial: Vec<u32> = peers
        .iter()
        .map(|p| p.index)
        .filter(|p| *p > index)
        .collect();
    let order = dial_order(&to_dial, index, setup.plan.seed);
    let dial_deadline = tokio::time::Instant::now() + deadlines.dial;
    let fallbacks = RefCell::new(vec![]);
    let dial_all = async {
        let mut dials = tokio::task::JoinSet::new();
        // Starts attempt `attempt` at `peer`: on its `attempt`-th shared stack.
        let start = |dials: &mut tokio::task::JoinSet<_>, peer: u32, attempt: usize| {
            let options = net.shared_slots(index, peer);
            let slot = *options
                .get(attempt)
                .ok_or_else(|| anyhow!("node {index} shares no stack with its neighbour {peer}"))?;
            let ep = eps
                .get(slot as usize)
                .and_then(Option::as_ref)
                .ok_or_else(|| anyhow!("node {index} has no endpoint for slot {slot}"))?;
            let deadline = if attempt + 1 < options.len() {
                dial_deadline.min(tokio::time::Instant::now() + FALLBACK_AFTER)
            } else {
                dial_deadline
            };
            let connecting = dial(index, ep, &setup.slots[slot as usize], peer, deadline)?;
            dials.spawn_local(async move { (peer, attempt, slot, connecting.await) });
            anyhow::Ok(())
        };
        let mut out = Vec::new();
        let mut next = order.iter();
        loop {
            while dials.len() < DIALS_IN_FLIGHT {
                let Some(&peer) = next.next() else { break };
                start(&mut dials, peer, 0)?;
            }
            let Some(joined) = dials.join_next().await else {
                break;
            };
            let (peer, attempt, slot, result) =
                joined.map_err(|e| anyhow!("dial task failed: {e}"))?;
            match result {
                Ok((peer, c, us)) => out.push((peer, slot, c, us)),
                Err(e) if attempt + 1 < net.shared_slots(index, peer).len() => {
                    let next_slot = net.shared_slots(index, peer)[attempt + 1];
                    fallbacks.borrow_mut().push(format!(
                        "{e:#}; fell back to {}",
                        setup.slots[next_slot as usize].stack
                    ));
                    start(&mut dials, peer, attempt + 1)?;
                }
                Err(e) => return Err(e),
            }
        }
        anyhow::Ok(out)
    };
    let expected_in = peers.iter().filter(|p| p.index < index).count();
    let accept = async {
        let got = RefCell::new(Vec::new());
        let listening: Vec<(Slot, &stack::Endpoint, PeerAddresses)> = eps
            .iter()
            .zip(&setup.slots)
            .enumerate()
            .filter_map(|(slot, (ep, ss))| {
                ep.as_ref()
                    .map(|ep| (slot as Slot, &ep.endpoint, PeerAddresses::new(&ss.peers)))
            })
            .collect();
        match tokio::time::timeout(
            deadlines.accept,
            accept_peers(index, &listening, expected_in, &got),
        )
        .await
        {
            Ok(r) => r.map(|()| got.into_inner()),
            Err(_) => {
                let got = got.borrow();
                let diagnose = eps.iter().flatten().find_map(|ep| ep.diagnose.clone());
                let missing: Vec<String> = peers
                    .iter()
                    .filter(|p| p.index < index && !got.iter().any(|(g, _, _)| *g == p.index))
                    .map(|p| match &diagnose {
                        Some(d) => format!("node {} ({})", p.index, d(p.index)),
                        None => format!("node {}", p.index),
                    })
                    .collect();
                bail!(
                    "node {index}: {} never connected within {:?}",
                    missing.join(", "),
                    deadlines.accept
                )
            }
        }
    };
    let (dialled, mut accepted) = tokio::try_join!(dial_all, accept)?;
    let mut handshake_us = Vec::new();
    for (peer, slot, c, us) in dialled {
        handshake_us.push(us);
        accepted.push((peer, slot, c));
    }
    Ok(Connected {
        conns: accepted
            .into_iter()
            .map(|(peer, slot, c)| (peer, (slot, c)))
            .collect(),
        handshake_us,
        fallbacks: fallbacks.into_inner(),
    })
}

/// Starts dialling `peer` on `ep`, the endpoint of stack slot `slot`; the future resolves
/// to the connection and how long its handshake took, µs, or to an error naming the peer
/// and, where the stack can tell, why.
fn dial(
    index: u32,
    ep: &stack::NodeEndpoint,
    slot: &SlotSetup,
    peer: u32,
    deadline: tokio::time::Instant,
) -> Result<impl std::future::Future<Output = Result<(u32, stack::Conn, u64)>>> {
    let d = ep.dial.iter().find(|d| d.peer == peer);
    let addr = slot
        .peers
        .iter()
        .find(|p| p.index == peer)
        .map(|p| p.addr)
        .ok_or_else(|| anyhow!("no address for node {peer}"))?;
    let t0 = monotonic_ns();
    let within = deadline.saturating_duration_since(tokio::time::Instant::now());
    let connecting = ep.endpoint.connect(d, false, addr)?;
    let diagnose = ep.diagnose.clone();
    let stack = slot.stack.clone();
    Ok(async move {
        let what = || format!("node {index}: connecting to node {peer} at {addr} ({stack})");
        let c = tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| {
                let why = diagnose
                    .as_ref()
                    .map_or_else(|| format!("is node {peer} alive?"), |d| d(peer));
                anyhow!("{}: no answer within {within:?} ({why})", what())
            })?
            .with_context(what)?;
        Ok((peer, c, (monotonic_ns() - t0) / 1000))
    })
}

/// Which peer a connection comes from. Each node dials from the socket it listens on, so
/// its full address names it; in namespaces each node also has an address of its own,
/// which names it where a tunnel rewrites the port.
pub(crate) struct PeerAddresses {
    by_addr: BTreeMap<std::net::SocketAddr, u32>,
    by_ip: BTreeMap<IpAddr, Option<u32>>,
}

impl PeerAddresses {
    pub(crate) fn new(peers: &[PeerInfo]) -> PeerAddresses {
        let mut by_ip = BTreeMap::new();
        for p in peers {
            by_ip
                .entry(p.addr.ip())
                .and_modify(|e| *e = None) // shared by several peers: not a name
                .or_insert(Some(p.index));
        }
        PeerAddresses {
            by_addr: peers.iter().map(|p| (p.addr, p.index)).collect(),
            by_ip,
        }
    }

    pub(crate) fn get(&self, remote: std::net::SocketAddr) -> Option<u32> {
        self.by_addr
            .get(&remote)
            .copied()
            .or_else(|| self.by_ip.get(&remote.ip()).copied().flatten())
    }
}

/// Accepts connections from lower-numbered peers on any of `listening`'s endpoints (each
/// with its stack slot) into `got` until `expected` have come, completing their handshakes
/// concurrently.
async fn accept_peers(
    index: u32,
    listening: &[(Slot, &stack::Endpoint, PeerAddresses)],
    expected: usize,
    got: &RefCell<Vec<(u32, Slot, stack::Conn)>>,
) -> Result<()> {
    let (tx, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    // Dropped (and so aborted) when enough have come.
    let mut listeners = tokio::task::JoinSet::new();
    for (k, (_, endpoint, _)) in listening.iter().enumerate() {
        let (endpoint, tx) = ((*endpoint).clone(), tx.clone());
        listeners.spawn_local(async move {
            while let Some(i) = endpoint.accept().await {
                if tx.send((k, i)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut handshakes = tokio::task::JoinSet::new();
    while got.borrow().len() < expected {
        tokio::select! {
            next = incoming.recv() => {
                let (k, incoming) = next.ok_or_else(|| anyhow!("endpoints closed"))?;
                let remote = incoming.remote_address();
                handshakes.spawn_local(async move { (k, remote, incoming.accept(false).await) });
            }
            Some(done) = handshakes.join_next() => {
                let (k, remote, result) = done.map_err(|e| anyhow!("accept task failed: {e}"))?;
                match result {
                    Ok(c) => {
                        let (slot, _, addrs) = &listening[k];
                        let peer = addrs
                            .get(remote)
                            .ok_or_else(|| anyhow!("connection from unknown address {remote}"))?;
                        got.borrow_mut().push((peer, *slot, c));
                    }
                    // The dialling side reports its own failure; keep waiting for the others.
                    Err(e) => tracing::warn!("node {index}: refused connection from {remote}: {e:#}"),
                }
            }
        }
    }
    Ok(())
}
