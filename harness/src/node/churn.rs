//! A node's churn steps during the workload: removing and adding peers in its underlay,
//! cold connects (with a first object whose arrival times them), restarts, interface
//! changes and key updates; and watching WireGuard handshakes complete, to see rekeys.

use super::{
    session::{send_object, Node, CHURN_CLOSE},
    timer::PreciseTimer,
};
use crate::{
    control::{ColdConnect, StepOutcome, StepRecord},
    metrics::monotonic_ns,
    scenario::churn::HandshakeMode,
    stack::PeerControl,
    workload::{
        events::{Action, Step},
        ObjectHeader, HEADER_LEN, PROBE_CLASS,
    },
};
use anyhow::{anyhow, Context, Result};
use stackbench_core::workload::network::Slot;
use std::{collections::BTreeMap, rc::Rc, sync::Arc, time::Duration};

/// Churn runs one stack on every node: its slot.
const CHURN_SLOT: Slot = 0;
/// How long a cold connect may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restarting node retries binding while its old sockets close.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often WireGuard handshake times are read. The times come from the device, so the
/// interval only bounds how soon a handshake is noticed (and two of one pair within it
/// count once); for kernel WireGuard every read is a `wg` process.
const HANDSHAKE_POLL: Duration = Duration::from_secs(5);
/// How far a handshake time may move between reads without being a new handshake.
const HANDSHAKE_WOBBLE: Duration = Duration::from_millis(50);

/// Runs the underlay operation `op` and times it: off the event loop when it blocks (a
/// UAPI request, a command), inline when it is the node's own in-memory work.
async fn blocking<T: Send + 'static>(
    control: &Arc<dyn PeerControl>,
    op: impl FnOnce(&dyn PeerControl) -> Result<T, crate::stack::StackError> + Send + 'static,
) -> (Result<T>, u64) {
    let c = control.clone();
    let t0 = monotonic_ns();
    let r = if c.blocks() {
        tokio::task::spawn_blocking(move || op(c.as_ref()))
            .await
            .map_err(|e| anyhow!("underlay task failed: {e}"))
            .and_then(|r| r.map_err(anyhow::Error::from))
    } else {
        op(c.as_ref()).map_err(anyhow::Error::from)
    };
    (r, (monotonic_ns() - t0) / 1000)
}

/// A step's record, "ok" until it says otherwise; `dialled` for a dial's own record.
fn record_of(node: &Node, step: &Step, began: u64, dialled: Option<u32>) -> StepRecord {
    StepRecord {
        firing: step.firing,
        node: node.index,
        action: step.action,
        began_us: (began - node.start_ns) / 1000,
        apply_us: 0,
        outcome: StepOutcome::Ok,
        handshake_us: None,
        dialled,
    }
}

/// Takes this node's steps at their times, and accepts connections all along.
pub async fn run(node: Rc<Node>) {
    if let Some(endpoint) = node.endpoint(CHURN_SLOT) {
        tokio::task::spawn_local(accept_loop(node.clone(), CHURN_SLOT, endpoint, None));
    }
    let steps: Vec<Step> = node.plan().churn.steps_of(node.index).copied().collect();
    let mut dials: BTreeMap<u32, u32> = BTreeMap::new();
    // A timer of its own: one timerfd cannot serve two sleepers.
    let Ok(timer) = PreciseTimer::new(!node.setup.simulated) else {
        node.rec
            .borrow_mut()
            .error("creating the churn timer failed".into());
        return;
    };
    for step in steps {
        let due = node.start_ns + step.at.as_nanos() as u64;
        // A recovered process takes only the steps after its recovery (which is its own
        // start), not those of the process that crashed.
        if due < node.resumed_ns.get() {
            continue;
        }
        if timer.sleep_until(due).await.is_err() {
            return;
        }
        node.churn_spin_ns.set(timer.spin_ns());
        let began = monotonic_ns();
        node.step(step);
        // Fetched per use: a restart must be able to drop the old underlay.
        let control = || node.control.borrow().clone();
        let mut record = record_of(&node, &step, began, None);
        let result = match step.action {
            Action::RemovePeer { peer } => {
                let removed = node.conns.borrow_mut().remove(&peer);
                if let Some(c) = removed {
                    c.close(CHURN_CLOSE, b"peer removed");
                }
                let (r, us) = blocking(&control(), move |c| c.remove_peer(peer)).await;
                record.apply_us = us;
                r
            }
            Action::AddPeer { peer, dial } => {
                let (r, us) = blocking(&control(), move |c| c.add_peer(peer)).await;
                record.apply_us = us;
                if r.is_ok() && dial {
                    let k = dials.entry(peer).or_default();
                    let mode = node.plan().churn.handshake(*k);
                    *k += 1;
                    tokio::task::spawn_local(cold_connect(node.clone(), step, peer, mode, began));
                }
                r
            }
            Action::Restart => restart(&node, &step, began, &mut dials, &mut record).await,
            Action::Crash => crash(&node),
            // The recovered process dialled its peers as it started.
            Action::Recover => continue,
            Action::Iface { up } => {
                let (r, us) = blocking(&control(), move |c| c.set_interface(up)).await;
                record.apply_us = us;
                match r {
                    Ok(false) => {
                        record.outcome =
                            StepOutcome::NotApplicable("the stack has no tunnel interface".into());
                        Ok(())
                    }
                    other => other.map(|_| ()),
                }
            }
            Action::KeyUpdate => {
                let t0 = monotonic_ns();
                let mut updated = false;
                for c in node.conns.borrow().values() {
                    updated |= c.force_key_update();
                }
                record.apply_us = (monotonic_ns() - t0) / 1000;
                if !updated && !node.conns.borrow().is_empty() {
                    record.outcome = StepOutcome::NotApplicable(
                        "the transport has no keys of its own (SCTP)".into(),
                    );
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            record.outcome = StepOutcome::Failed(format!("{e:#}"));
            node.rec.borrow_mut().error(format!(
                "node {}: churn step {:?} failed: {e:#}",
                node.index, step.action
            ));
        }
        node.rec.borrow_mut().churn.steps.push(record);
    }
}

/// Starts a recovered process's part: its schedule and churn steps resume at the
/// recovery's planned instant (what fell due before is the crash's loss), and it dials
/// every peer, each a cold connect the peer times.
pub fn rejoin(node: &Rc<Node>, firing: u32) -> Result<()> {
    let step = node
        .plan()
        .churn
        .steps_of(node.index)
        .find(|s| s.firing == firing && s.action == Action::Recover)
        .copied()
        .ok_or_else(|| {
            anyhow!(
                "node {}: the churn plan has no recovery of this node as firing {firing}",
                node.index
            )
        })?;
    let resumed = node.start_ns + step.at.as_nanos() as u64;
    node.resume_at(resumed);
    let began = monotonic_ns();
    let peers: Vec<u32> = node
        .setup
        .peers(node.index)
        .iter()
        .map(|p| p.index)
        .collect();
    tracing::debug!("node {}: rejoining; dialling {peers:?}", node.index);
    for peer in peers {
        tokio::task::spawn_local(cold_connect(
            node.clone(),
            step,
            peer,
            HandshakeMode::Full,
            began,
        ));
    }
    Ok(())
}

/// A crash: the process dies at once, as SIGKILL leaves it: no connection is closed, no
/// report sent. The controller, which expects it, restarts the node at `node_recover`.
fn crash(node: &Node) -> ! {
    tracing::debug!("node {}: crashing (SIGKILL)", node.index);
    // SAFETY: kill has no memory-safety preconditions; the target is this process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    // SIGKILL cannot be caught or ignored; the process does not run past it.
    std::process::abort()
}

/// Closes every connection, builds the endpoint anew and dials every peer it had.
async fn restart(
    node: &Rc<Node>,
    step: &Step,
    began: u64,
    dials: &mut BTreeMap<u32, u32>,
    record: &mut StepRecord,
) -> Result<()> {
    let peers: Vec<u32> = std::mem::take(&mut *node.conns.borrow_mut())
        .into_iter()
        .map(|(p, c)| {
            c.close(CHURN_CLOSE, b"restart");
            p
        })
        .collect();
    tracing::debug!("node {}: restarting; will redial {peers:?}", node.index);
    // Every handle must go for the old endpoint (and an in-process tunnel) to release its
    // sockets.
    let old = node.eps.borrow_mut()[CHURN_SLOT as usize].take();
    *node.control.borrow_mut() = Arc::new(crate::stack::NoPeers);
    // The old socket is released once quinn has drained its connections (3 PTO), so the
    // restart's time includes that wait, as a graceful restart's would.
    let t0 = monotonic_ns();
    let mut idle_us = 0;
    if let Some(old) = old {
        old.endpoint.close(CHURN_CLOSE, b"restart");
        old.endpoint.wait_idle(REBIND_TIMEOUT).await;
        idle_us = (monotonic_ns() - t0) / 1000;
    }
    let ep = loop {
        match super::build_endpoint(node.index, &node.identity, &node.setup, CHURN_SLOT) {
            Ok(ep) => break ep,
            Err(e) if monotonic_ns() - t0 > REBIND_TIMEOUT.as_nanos() as u64 => {
                return Err(e.context(format!(
                    "rebuilding the endpoint: the old one went idle after {idle_us} µs, but its socket is still bound"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    };
    record.apply_us = (monotonic_ns() - t0) / 1000;
    let endpoint = ep.endpoint.clone();
    *node.control.borrow_mut() = ep.control.clone();
    node.eps.borrow_mut()[CHURN_SLOT as usize] = Some(ep);
    tokio::task::spawn_local(accept_loop(node.clone(), CHURN_SLOT, endpoint, None));
    for peer in peers {
        let k = dials.entry(peer).or_default();
        let mode = node.plan().churn.handshake(*k);
        *k += 1;
        tokio::task::spawn_local(cold_connect(node.clone(), *step, peer, mode, began));
    }
    Ok(())
}

/// Dials `peer` in `mode` and sends the first object, whose arrival the peer times from
/// `began`. The dialler records its own handshake time as a step.
async fn cold_connect(node: Rc<Node>, step: Step, peer: u32, mode: HandshakeMode, began: u64) {
    let mut record = record_of(&node, &step, began, Some(peer));
    match dial(&node, &step, peer, mode, began).await {
        Ok(handshake_us) => record.handshake_us = Some(handshake_us),
        Err(e) => {
            record.outcome = StepOutcome::Failed(format!("{e:#}"));
            node.rec.borrow_mut().error(format!(
                "node {}: cold connect to node {peer}: {e:#}",
                node.index
            ));
        }
    }
    node.rec.borrow_mut().churn.steps.push(record);
}

async fn dial(
    node: &Rc<Node>,
    step: &Step,
    peer: u32,
    mode: HandshakeMode,
    began: u64,
) -> Result<u64> {
    let (endpoint, d, addr) = node.dial_target(CHURN_SLOT, peer)?;
    tracing::debug!("node {}: dialling node {peer} at {addr}", node.index);
    let resumes = d.as_ref().is_some_and(|d| d.resuming.is_some());
    let connecting = endpoint.connect(
        d.as_ref(),
        matches!(mode, HandshakeMode::Resumed | HandshakeMode::ZeroRtt),
        addr,
    )?;
    let probe = |how: HandshakeMode| ObjectHeader {
        origin: node.index as u16,
        class: PROBE_CLASS,
        len: HEADER_LEN as u32,
        seq: (step.firing as u64) << 8 | how.code() as u64,
        intended_ns: began,
        hops: 1,
        sent_ns: began,
    };
    let timed_out = |_| anyhow!("no handshake within {DIAL_TIMEOUT:?}");
    let within = |f| tokio::time::timeout(DIAL_TIMEOUT, f);
    let within_accepted = |f| tokio::time::timeout(DIAL_TIMEOUT, f);
    let (conn, how) = if mode == HandshakeMode::Full || !resumes {
        (
            within(connecting).await.map_err(timed_out)??,
            HandshakeMode::Full,
        )
    } else {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) if mode == HandshakeMode::ZeroRtt => {
                // The first object goes out as early data, before the handshake is done.
                node.install(peer, CHURN_SLOT, conn.clone(), None);
                send_object(node, &conn, i32::MAX, &probe(HandshakeMode::ZeroRtt)).await?;
                let ok = within_accepted(accepted).await.map_err(timed_out)?;
                if !ok {
                    // Rejected early data is lost; send the object again on 1-RTT.
                    send_object(node, &conn, i32::MAX, &probe(HandshakeMode::Resumed)).await?;
                }
                return Ok((monotonic_ns() - began) / 1000);
            }
            Ok((conn, accepted)) => {
                within_accepted(accepted).await.map_err(timed_out)?;
                (conn, HandshakeMode::Resumed)
            }
            // No ticket yet (the first connection since the node started): a full handshake.
            Err(connecting) => (
                within(connecting).await.map_err(timed_out)??,
                HandshakeMode::Full,
            ),
        }
    };
    let handshake_us = (monotonic_ns() - began) / 1000;
    tracing::debug!("node {}: connected to node {peer} ({how:?})", node.index);
    node.install(peer, CHURN_SLOT, conn.clone(), None);
    send_object(node, &conn, i32::MAX, &probe(how))
        .await
        .context("sending the first object")?;
    Ok(handshake_us)
}

/// Accepts connections on `endpoint`, stack slot `slot`'s, for as long as it is open,
/// replacing a peer's old connection with its new one (after `grace`, if given). Under an
/// upgrade, the upgrade hears of each.
pub(super) async fn accept_loop(
    node: Rc<Node>,
    slot: Slot,
    endpoint: crate::stack::Endpoint,
    grace: Option<Duration>,
) {
    let early = node.plan().churn.resumes();
    while let Some(incoming) = endpoint.accept().await {
        let node = node.clone();
        tokio::task::spawn_local(async move {
            let remote = incoming.remote_address();
            let Some(peer) = node.peer_at(slot, remote) else {
                incoming.refuse();
                return;
            };
            // Accepting early lets 0-RTT data be read on arrival.
            match incoming.accept(early).await {
                Ok(conn) => {
                    node.install(peer, slot, conn, grace);
                    if node.plan().network.upgrade.is_some() {
                        super::upgrade::accepted(&node, peer);
                    }
                }
                Err(e) => node
                    .rec
                    .borrow_mut()
                    .error(format!("node {}: accepting node {peer}: {e:#}", node.index)),
            }
        });
    }
}

/// Records a cold connect whose first object arrived at `now`.
pub fn cold_connect_arrived(node: &Node, h: &ObjectHeader, now: u64) {
    let firing = (h.seq >> 8) as u32;
    let how = HandshakeMode::from_code((h.seq & 0xff) as u8);
    let cause = node
        .plan()
        .churn
        .firings
        .get(firing as usize)
        .map(|f| f.kind);
    let (Some(how), Some(cause)) = (how, cause) else {
        node.rec.borrow_mut().error(format!(
            "node {}: a cold connect's first object from node {} names no known handshake or event ({:#x})",
            node.index, h.origin, h.seq
        ));
        return;
    };
    node.rec.borrow_mut().churn.cold_connects.push(ColdConnect {
        firing,
        cause,
        dialler: h.origin as u32,
        acceptor: node.index,
        how,
        us: now.saturating_sub(h.intended_ns) / 1000,
    });
}

/// Polls the underlay's WireGuard handshake times and records each new one.
pub async fn watch_handshakes(node: Rc<Node>) {
    let mut last: BTreeMap<u32, std::time::SystemTime> = BTreeMap::new();
    let mut tick = tokio::time::interval(HANDSHAKE_POLL);
    loop {
        tick.tick().await;
        let control = node.control.borrow().clone();
        let seen = if control.blocks() {
            match tokio::task::spawn_blocking(move || control.last_handshakes()).await {
                Ok(seen) => seen,
                Err(_) => return,
            }
        } else {
            control.last_handshakes()
        };
        let (mono, wall) = (monotonic_ns(), std::time::SystemTime::now());
        for (peer, t) in seen {
            // In-process times are derived from an age, so they wobble by microseconds.
            let moved = |old: std::time::SystemTime| {
                old.duration_since(t)
                    .or_else(|_| t.duration_since(old))
                    .unwrap_or_default()
                    > HANDSHAKE_WOBBLE
            };
            if last.insert(peer, t).is_some_and(moved) {
                let ago = wall.duration_since(t).unwrap_or_default().as_nanos() as u64;
                node.rec
                    .borrow_mut()
                    .churn
                    .wg_handshakes
                    .push((peer, mono.saturating_sub(ago)));
            }
        }
    }
}
