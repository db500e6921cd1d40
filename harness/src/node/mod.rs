//! The node: one process per namespace. It generates its key, learns its peers from the
//! controller, connects, and at the shared start instant runs the workload: sending its
//! schedule open-loop, receiving and timing every object, then reporting.
//!
//! Each node runs a current-thread tokio runtime: a multi-thread runtime made in-process
//! round trips bimodal on this class of machine (DESIGN.md), and one thread per node keeps
//! per-node CPU accounting meaningful.

mod churn;
mod recorder;
mod session;
pub use recorder::Recorder;
mod timer;

use crate::{
    control::{self, NodeReport, NodeSetup, ToController, ToNode},
    metrics::monotonic_ns,
    stack::{self, tls::NodeIdentity, NodeContext},
};
use anyhow::{anyhow, bail, Context, Result};
use std::{collections::BTreeMap, net::IpAddr, path::Path, rc::Rc, time::Duration};
use tokio::{io::BufReader, net::UnixStream, task::LocalSet};

/// The runtime flavour nodes use, recorded in results.
pub const RUNTIME_FLAVOUR: &str = "tokio current_thread, one per node process";
pub use stackbench_core::node::LAG_LIMIT;
/// How long connecting to all peers may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepting waits longer than dialling, so a failed dial reports first, with its reason.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(12);

/// Runs node `index`, controlled over the Unix socket at `control`.
pub fn main(control: &Path, index: u32) -> Result<()> {
    // Linux delays timer wake-ups by up to 50 µs of "slack" by default; the send schedule
    // needs µs precision, and that delay would be charged to every stack.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the node's runtime")?;
    LocalSet::new().block_on(&rt, run(control, index))
}

async fn run(control: &Path, index: u32) -> Result<()> {
    let stream = UnixStream::connect(control)
        .await
        .with_context(|| format!("connecting to the controller at {}", control.display()))?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let identity = Rc::new(NodeIdentity::generate(index)?);
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
    let outcome = repetition(index, &identity, &setup, &mut r, &mut w).await;
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

async fn repetition(
    index: u32,
    identity: &Rc<NodeIdentity>,
    setup: &NodeSetup,
    r: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
) -> Result<Option<(NodeReport, KeepAlive)>> {
    let ep = build_endpoint(index, identity, setup)?;
    control::send(w, &ToController::Bound).await?;
    match control::recv(r).await? {
        Some(ToNode::Connect) => {}
        _ => return Ok(None),
    }
    let (conns, handshake_us) = connect_all(index, &ep, setup).await?;
    control::send(w, &ToController::Ready { handshake_us }).await?;
    let start_ns = match control::recv(r).await? {
        Some(ToNode::Start { start_ns }) => start_ns,
        _ => return Ok(None),
    };
    let node = session::Node::new(index, identity.clone(), setup, ep, conns, start_ns)?;
    let report = session::workload(&node).await?;
    Ok(Some((report, node)))
}

/// This node's endpoint for the setup's stack.
fn build_endpoint(
    index: u32,
    identity: &NodeIdentity,
    setup: &NodeSetup,
) -> Result<stack::NodeEndpoint> {
    let stack =
        stack::by_name(&setup.stack).ok_or_else(|| anyhow!("unknown stack {}", setup.stack))?;
    let ctx = NodeContext {
        index,
        identity,
        bind: setup.bind,
        wg_listen: setup.wg_listen,
        wg_uapi: setup.wg_uapi.clone(),
        peers: &setup.peers,
        resumption: setup.plan.churn.resumes(),
        transport: setup.plan.transport,
    };
    stack
        .endpoint(&ctx)
        .with_context(|| format!("node {index}: building the {} endpoint", setup.stack))
}

/// Dials higher-numbered peers, accepts lower-numbered ones.
async fn connect_all(
    index: u32,
    ep: &stack::NodeEndpoint,
    setup: &NodeSetup,
) -> Result<(BTreeMap<u32, quinn::Connection>, Vec<u64>)> {
    let by_ip: BTreeMap<IpAddr, u32> = setup.peers.iter().map(|p| (p.addr.ip(), p.index)).collect();
    let mut dials = tokio::task::JoinSet::new();
    for d in &ep.dial {
        let peer = d.peer;
        if peer <= index {
            continue;
        }
        let addr = setup
            .peers
            .iter()
            .find(|p| p.index == peer)
            .map(|p| p.addr)
            .ok_or_else(|| anyhow!("no address for node {peer}"))?;
        let t0 = monotonic_ns();
        let connecting = ep
            .endpoint
            .connect_with(d.config.clone(), addr, &d.server_name)?;
        let diagnose = ep.diagnose.clone();
        dials.spawn_local(async move {
            let what = || format!("node {index}: connecting to node {peer} at {addr}");
            let c = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| {
                    let why = diagnose
                        .as_ref()
                        .map_or_else(|| format!("is node {peer} alive?"), |d| d(peer));
                    anyhow!("{}: no answer within {CONNECT_TIMEOUT:?} ({why})", what())
                })?
                .with_context(what)?;
            anyhow::Ok((peer, c, (monotonic_ns() - t0) / 1000))
        });
    }
    let expected_in = setup.peers.iter().filter(|p| p.index < index).count();
    let accept = async {
        let mut got = Vec::new();
        match tokio::time::timeout(
            ACCEPT_TIMEOUT,
            accept_peers(index, &ep.endpoint, &by_ip, expected_in, &mut got),
        )
        .await
        {
            Ok(r) => r.map(|()| got),
            Err(_) => {
                let missing: Vec<String> = setup
                    .peers
                    .iter()
                    .filter(|p| p.index < index && !got.iter().any(|(g, _)| *g == p.index))
                    .map(|p| match &ep.diagnose {
                        Some(d) => format!("node {} ({})", p.index, d(p.index)),
                        None => format!("node {}", p.index),
                    })
                    .collect();
                bail!(
                    "node {index}: {} never connected within {ACCEPT_TIMEOUT:?}",
                    missing.join(", ")
                )
            }
        }
    };
    let dial_all = async {
        let mut out = Vec::new();
        while let Some(joined) = dials.join_next().await {
            out.push(joined.map_err(|e| anyhow!("dial task failed: {e}"))??);
        }
        anyhow::Ok(out)
    };
    let (dialled, mut accepted) = tokio::try_join!(dial_all, accept)?;
    let mut handshakes = Vec::new();
    for (peer, c, us) in dialled {
        handshakes.push(us);
        accepted.push((peer, c));
    }
    Ok((accepted.into_iter().collect(), handshakes))
}

/// Accepts connections from lower-numbered peers into `got` until `expected` have come.
async fn accept_peers(
    index: u32,
    endpoint: &quinn::Endpoint,
    by_ip: &BTreeMap<IpAddr, u32>,
    expected: usize,
    got: &mut Vec<(u32, quinn::Connection)>,
) -> Result<()> {
    while got.len() < expected {
        let incoming = endpoint
            .accept()
            .await
            .ok_or_else(|| anyhow!("endpoint closed"))?;
        let remote = incoming.remote_address();
        match incoming.await {
            Ok(c) => {
                let peer = *by_ip
                    .get(&remote.ip())
                    .ok_or_else(|| anyhow!("connection from unknown address {remote}"))?;
                got.push((peer, c));
            }
            // The dialling side reports its own failure; keep waiting for the others.
            Err(e) => tracing::warn!("node {index}: refused connection from {remote}: {e}"),
        }
    }
    Ok(())
}
