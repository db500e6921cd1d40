//! The node: one process per namespace. It generates its key, learns its peers from the
//! controller, connects, and at the shared start instant runs the workload: sending its
//! schedule open-loop, receiving and timing every object, then reporting.
//!
//! Each node runs a current-thread tokio runtime: a multi-thread runtime made in-process
//! round trips bimodal on this class of machine (DESIGN.md), and one thread per node keeps
//! per-node CPU accounting meaningful.

mod recorder;
pub use recorder::{Recorder, TIMELINE_INTERVAL};
mod timer;

use crate::{
    control::{self, NodeReport, NodeSetup, ToController, ToNode, TransportCounters},
    metrics::{self, monotonic_ns},
    stack::{self, tls::NodeIdentity, NodeContext},
    workload::{ObjectHeader, Schedule, HEADER_LEN},
};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use std::{cell::RefCell, collections::BTreeMap, net::IpAddr, path::Path, rc::Rc, time::Duration};
use tokio::{io::BufReader, net::UnixStream, task::LocalSet};

/// The runtime flavour nodes use, recorded in results.
pub const RUNTIME_FLAVOUR: &str = "tokio current_thread, one per node process";
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
    let identity = NodeIdentity::generate(index)?;
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

type Conns = Rc<Vec<(u32, quinn::Connection)>>;

/// The endpoint and connections, held open after reporting so that peers still draining
/// are not cut off.
struct KeepAlive(
    #[allow(dead_code)] quinn::Endpoint,
    #[allow(dead_code)] Conns,
);

async fn repetition(
    index: u32,
    identity: &NodeIdentity,
    setup: &NodeSetup,
    r: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
) -> Result<Option<(NodeReport, KeepAlive)>> {
    let stack =
        stack::by_name(&setup.stack).ok_or_else(|| anyhow!("unknown stack {}", setup.stack))?;
    let ctx = NodeContext {
        index,
        identity,
        bind: setup.bind,
        wg_listen: setup.wg_listen,
        wg_uapi: setup.wg_uapi.clone(),
        peers: &setup.peers,
    };
    let ep = stack
        .endpoint(&ctx)
        .with_context(|| format!("node {index}: building the {} endpoint", setup.stack))?;
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
    let report = workload(index, setup, conns.clone(), start_ns).await?;
    Ok(Some((report, KeepAlive(ep.endpoint, conns))))
}

/// Dials higher-numbered peers, accepts lower-numbered ones.
async fn connect_all(
    index: u32,
    ep: &stack::NodeEndpoint,
    setup: &NodeSetup,
) -> Result<(Conns, Vec<u64>)> {
    let by_ip: BTreeMap<IpAddr, u32> = setup.peers.iter().map(|p| (p.addr.ip(), p.index)).collect();
    let mut dials = tokio::task::JoinSet::new();
    for (peer, cfg, name) in &ep.dial {
        let peer = *peer;
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
        let connecting = ep.endpoint.connect_with(cfg.clone(), addr, name)?;
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
    accepted.sort_by_key(|(p, _)| *p);
    Ok((Rc::new(accepted), handshakes))
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

async fn workload(
    index: u32,
    setup: &NodeSetup,
    conns: Conns,
    start_ns: u64,
) -> Result<NodeReport> {
    let plan = &setup.plan;
    let rec = Rc::new(RefCell::new(Recorder::new(plan.clone(), start_ns)));
    for (peer, conn) in conns.iter() {
        tokio::task::spawn_local(receive_loop(*peer, conn.clone(), rec.clone()));
    }
    let max_size = plan
        .classes
        .iter()
        .map(|c| c.size_max)
        .max()
        .unwrap_or(HEADER_LEN as u32);
    let payload = Bytes::from(vec![0u8; max_size as usize]);
    let schedule = Rc::new(RefCell::new(Schedule::new(plan, index)));
    let timer = timer::PreciseTimer::new().context("creating the send timer")?;
    timer.sleep_until(start_ns).await?;
    let (cpu0, net0, snmp0) = (
        metrics::process_cpu_us(),
        metrics::net_counters(),
        metrics::snmp_counters(),
    );
    let end_ns = start_ns + plan.send_end().as_nanos() as u64;

    let send_ctx = |peer: u32, conn: &quinn::Connection, plan_priority: i32| SendCtx {
        origin: index as u16,
        peer,
        conn: conn.clone(),
        payload: payload.clone(),
        rec: rec.clone(),
        plan_priority,
    };
    for (class, outstanding) in Schedule::backlog_classes(plan, index) {
        for (peer, conn) in conns.iter() {
            for _ in 0..outstanding {
                let ctx = send_ctx(*peer, conn, plan.classes[class as usize].priority);
                tokio::task::spawn_local(backlog_loop(ctx, class, schedule.clone(), start_ns));
            }
        }
    }

    let receivers = conns.len() as u64;
    loop {
        let next = schedule.borrow().next_due();
        let Some(next) = next else { break };
        let due_ns = start_ns + next.as_nanos() as u64;
        timer.sleep_until(due_ns).await?;
        let now = monotonic_ns();
        let offset = Duration::from_nanos(now.saturating_sub(start_ns));
        while let Some(e) = schedule.borrow_mut().pop_due(offset) {
            let intended_ns = start_ns + e.intended.as_nanos() as u64;
            {
                let mut r = rec.borrow_mut();
                metrics::record(&mut r.send_lag, now.saturating_sub(intended_ns) / 1000);
                r.scheduled(e.class, e.size, intended_ns, receivers);
            }
            let h = ObjectHeader {
                origin: index as u16,
                class: e.class,
                len: e.size,
                seq: e.seq,
                intended_ns,
            };
            let priority = plan.classes[e.class as usize].priority;
            for (peer, conn) in conns.iter() {
                let ctx = send_ctx(*peer, conn, priority);
                tokio::task::spawn_local(async move {
                    if let Err(e) = send_object(&ctx, &h).await {
                        ctx.rec
                            .borrow_mut()
                            .error(format!("sending to node {}: {e}", ctx.peer));
                    }
                });
            }
        }
    }
    timer
        .sleep_until(end_ns + plan.drain.as_nanos() as u64)
        .await?;
    let (cpu1, net1, snmp1) = (
        metrics::process_cpu_us(),
        metrics::net_counters(),
        metrics::snmp_counters(),
    );
    let mut transport = TransportCounters {
        udp_rcvbuf_errors: snmp1.0.saturating_sub(snmp0.0),
        ip_fragments_created: snmp1.1.saturating_sub(snmp0.1),
        min_rtt_us: u64::MAX,
        ..Default::default()
    };
    for (_, c) in conns.iter() {
        let st = c.stats();
        transport.sent_packets += st.path.sent_packets;
        transport.lost_packets += st.path.lost_packets;
        transport.congestion_events += st.path.congestion_events;
        transport.udp_tx_datagrams += st.udp_tx.datagrams;
        transport.udp_rx_datagrams += st.udp_rx.datagrams;
        transport.min_rtt_us = transport.min_rtt_us.min(st.path.min_rtt.as_micros() as u64);
    }
    let mut r = rec.borrow_mut();
    let (classes, deliveries) = r.finish()?;
    Ok(NodeReport {
        index,
        classes,
        deliveries,
        send_lag_hist: metrics::encode_histogram(&r.send_lag)?,
        // The generator's busy-wait is harness work, not the stack's.
        cpu_user_us: (cpu1.0 - cpu0.0).saturating_sub(timer.spin_ns() / 1000),
        generator_spin_us: timer.spin_ns() / 1000,
        cpu_sys_us: cpu1.1 - cpu0.1,
        net: metrics::net_delta(&net0, &net1),
        transport,
        all_received_bytes: r.all_received_bytes,
        error_count: r.error_count,
        errors: r.errors.clone(),
    })
}

struct SendCtx {
    origin: u16,
    peer: u32,
    conn: quinn::Connection,
    payload: Bytes,
    rec: Rc<RefCell<Recorder>>,
    plan_priority: i32,
}

/// Sends one object on its own uni stream at the class's priority.
async fn send_object(ctx: &SendCtx, h: &ObjectHeader) -> Result<quinn::SendStream> {
    debug_assert_eq!(h.origin, ctx.origin);
    let mut s = ctx.conn.open_uni().await?;
    s.set_priority(ctx.plan_priority)?;
    let body = ctx.payload.slice(..h.len as usize - HEADER_LEN);
    s.write_all_chunks(&mut [Bytes::copy_from_slice(&h.encode()), body])
        .await?;
    s.finish()?;
    Ok(s)
}

/// Keeps one bulk object in flight to one peer: the next starts once the last is acknowledged,
/// so bulk never fills quinn's send window and blocks the higher classes' writes.
async fn backlog_loop(ctx: SendCtx, class: u8, schedule: Rc<RefCell<Schedule>>, start_ns: u64) {
    loop {
        let now = monotonic_ns();
        let next = schedule
            .borrow_mut()
            .backlog_next(class, Duration::from_nanos(now.saturating_sub(start_ns)));
        let Some(e) = next else { return };
        ctx.rec.borrow_mut().scheduled(class, e.size, now, 1);
        let h = ObjectHeader {
            origin: ctx.origin,
            class,
            len: e.size,
            seq: e.seq,
            intended_ns: now,
        };
        let result = match send_object(&ctx, &h).await {
            Ok(s) => s.stopped().await.map(|_| ()).map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            ctx.rec
                .borrow_mut()
                .error(format!("bulk to node {}: {e}", ctx.peer));
            return;
        }
    }
}

async fn receive_loop(peer: u32, conn: quinn::Connection, rec: Rc<RefCell<Recorder>>) {
    while let Ok(rs) = conn.accept_uni().await {
        let rec = rec.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = receive_object(peer, rs, &rec).await {
                rec.borrow_mut()
                    .error(format!("receiving from node {peer}: {e:#}"));
            }
        });
    }
}

async fn receive_object(
    peer: u32,
    mut rs: quinn::RecvStream,
    rec: &RefCell<Recorder>,
) -> Result<()> {
    let mut hdr = [0u8; HEADER_LEN];
    rs.read_exact(&mut hdr).await?;
    let h = ObjectHeader::decode(&hdr)?;
    let mut got = HEADER_LEN as u64;
    while got < h.len as u64 {
        match rs.read_chunk(usize::MAX, true).await? {
            Some(chunk) => got += chunk.bytes.len() as u64,
            None => break,
        }
    }
    let now = monotonic_ns();
    if got != h.len as u64 {
        bail!(
            "object {}:{} truncated: {got} of {} bytes",
            h.origin,
            h.seq,
            h.len
        );
    }
    rec.borrow_mut().delivered(peer, &h, now);
    // Consume the FIN so the stream closes cleanly instead of being stopped.
    while rs.read_chunk(usize::MAX, true).await?.is_some() {}
    Ok(())
}
