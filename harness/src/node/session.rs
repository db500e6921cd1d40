//! The measured part of a node's life: sending its schedule open-loop to whichever peers it
//! is connected to, receiving and timing every object, and (under churn) taking its steps
//! while the workload runs.

use super::{churn, timer::PreciseTimer, Recorder};
use crate::{
    control::{NodeReport, NodeSetup, TransportCounters},
    metrics::{self, monotonic_ns},
    stack::{self, tls::NodeIdentity, Conn},
    workload::{ObjectHeader, WorkloadPlan, HEADER_LEN, PROBE_CLASS},
};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use stackbench_core::node::{InEvent, NodeCore, OutEvent};
use stackbench_core::workload::network::Slot;
use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
};

/// The application close code of a connection churn ends on purpose: errors it causes on
/// streams in flight are not the stack's.
pub const CHURN_CLOSE: u32 = 0xc4;

/// Whether `conn` ended because churn closed it, here or at the peer.
pub fn churned(conn: &Conn) -> bool {
    conn.closed_on_purpose(CHURN_CLOSE)
}

/// One node during the measured run.
pub struct Node {
    pub index: u32,
    pub identity: Rc<NodeIdentity>,
    pub setup: NodeSetup,
    /// One per stack slot of the network: `None` where the node does not speak that stack
    /// (yet, or any more), and while a restart builds the next one.
    pub eps: RefCell<Vec<Option<stack::NodeEndpoint>>>,
    /// The underlay's churn operations (the primary endpoint's).
    pub control: RefCell<std::sync::Arc<dyn stack::PeerControl>>,
    /// The connection to each peer this node is connected to now: the one objects go on.
    pub conns: RefCell<BTreeMap<u32, Conn>>,
    /// Which stack slot each peer's connection is on.
    pub conn_slots: RefCell<BTreeMap<u32, Slot>>,
    pub rec: RefCell<Recorder>,
    /// Every workload decision: what to send when and to whom, what to relay.
    core: RefCell<NodeCore>,
    /// Wakes the send loop when a receipt queued a relay for later (validation).
    wake: tokio::sync::Notify,
    /// Some class waits out a validation delay before relaying: only then can a receipt
    /// move the send loop's next wake-up earlier.
    validates: bool,
    payload: Bytes,
    pub start_ns: u64,
    pub timer: PreciseTimer,
    /// Set once sending has ended: no more backlog loops start.
    done: Cell<bool>,
    /// For a process started again after a crash: the recovery instant it resumed at
    /// (earlier steps were the crashed process's); 0 otherwise.
    pub resumed_ns: Cell<u64>,
    /// The churn timer's busy-wait so far: harness work, like the generator's.
    pub churn_spin_ns: Cell<u64>,
    /// Per slot, how to tell which peer a connection comes from.
    peer_addrs: Vec<super::PeerAddresses>,
    /// Setup dials that fell back from the preferred stack, and why.
    fallbacks: Vec<String>,
    /// What the upgrade did here, once it began.
    pub upgrade: RefCell<Option<crate::control::NodeUpgrade>>,
    /// CPU and interface bytes over time, during an upgrade run.
    usage: RefCell<Vec<crate::control::UsageSample>>,
}

impl Node {
    pub fn new(
        index: u32,
        identity: Rc<NodeIdentity>,
        setup: &NodeSetup,
        eps: Vec<Option<stack::NodeEndpoint>>,
        connected: super::Connected,
        start_ns: u64,
    ) -> Result<Rc<Node>> {
        let plan = &setup.plan;
        let max_size = plan
            .classes
            .iter()
            .map(|c| c.size_max)
            .max()
            .unwrap_or(HEADER_LEN as u32);
        Ok(Rc::new(Node {
            index,
            identity,
            setup: setup.clone(),
            control: RefCell::new(eps.iter().flatten().next().map_or_else(
                || Arc::new(stack::NoPeers) as Arc<_>,
                |ep| ep.control.clone(),
            )),
            eps: RefCell::new(eps),
            conn_slots: RefCell::new(
                connected
                    .conns
                    .iter()
                    .map(|(p, (slot, _))| (*p, *slot))
                    .collect(),
            ),
            conns: RefCell::new(
                connected
                    .conns
                    .into_iter()
                    .map(|(p, (_, c))| (p, c))
                    .collect(),
            ),
            fallbacks: connected.fallbacks,
            peer_addrs: setup
                .slots
                .iter()
                .map(|s| super::PeerAddresses::new(&s.peers))
                .collect(),
            rec: RefCell::new(Recorder::new(plan.clone(), index, start_ns)),
            core: RefCell::new(NodeCore::new(plan, index, start_ns)),
            wake: tokio::sync::Notify::new(),
            validates: plan.classes.iter().any(|c| !c.validate.is_zero()),
            payload: Bytes::from(vec![0u8; max_size as usize]),
            start_ns,
            timer: PreciseTimer::new(!setup.simulated).context("creating the send timer")?,
            done: Cell::new(false),
            resumed_ns: Cell::new(0),
            churn_spin_ns: Cell::new(0),
            upgrade: RefCell::new(None),
            usage: RefCell::new(vec![]),
        }))
    }

    pub fn plan(&self) -> &WorkloadPlan {
        &self.setup.plan
    }

    /// The peer a connection from `remote` on stack slot `slot` comes from.
    pub fn peer_at(&self, slot: Slot, remote: SocketAddr) -> Option<u32> {
        self.peer_addrs.get(slot as usize)?.get(remote)
    }

    /// The endpoint of stack slot `slot`, if the node speaks it now.
    pub fn endpoint(&self, slot: Slot) -> Option<stack::Endpoint> {
        self.eps
            .borrow()
            .get(slot as usize)?
            .as_ref()
            .map(|ep| ep.endpoint.clone())
    }

    /// How to dial `peer` on stack slot `slot` now: the endpoint, its dial configuration
    /// and the peer's address on that stack.
    pub fn dial_target(
        &self,
        slot: Slot,
        peer: u32,
    ) -> anyhow::Result<(stack::Endpoint, Option<stack::Dial>, SocketAddr)> {
        let eps = self.eps.borrow();
        let ep = eps
            .get(slot as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no endpoint on {} now",
                    self.setup.slots[slot as usize].stack
                )
            })?;
        let d = ep.dial.iter().find(|d| d.peer == peer).cloned();
        let addr = self.setup.slots[slot as usize]
            .peers
            .iter()
            .find(|p| p.index == peer)
            .map(|p| p.addr)
            .ok_or_else(|| anyhow::anyhow!("no address for node {peer}"))?;
        Ok((ep.endpoint.clone(), d, addr))
    }

    /// Whether `conn` is still the one objects to `peer` go on.
    pub fn is_current(&self, peer: u32, conn: &Conn) -> bool {
        self.conns
            .borrow()
            .get(&peer)
            .is_some_and(|c| c.id() == conn.id())
    }

    /// Starts receiving from `peer` on `conn` and keeping its bulk in flight.
    pub fn start_peer(self: &Rc<Self>, peer: u32, conn: &Conn) {
        self.core.borrow_mut().handle(InEvent::PeerUp(peer));
        tokio::task::spawn_local(receive_loop(self.clone(), peer, conn.clone()));
        if self.done.get() {
            return;
        }
        let backlog = self.core.borrow().backlog_classes();
        for (class, outstanding) in backlog {
            for _ in 0..outstanding {
                tokio::task::spawn_local(backlog_loop(self.clone(), peer, conn.clone(), class));
            }
        }
    }

    /// This process rejoins after a crash at `now_ns`: what fell due before is not sent.
    pub fn resume_at(&self, now_ns: u64) {
        self.resumed_ns.set(now_ns);
        self.core.borrow_mut().resume_at(now_ns);
    }

    /// The connection to `peer` ended: nothing more is sent to it.
    pub fn peer_down(&self, peer: u32) {
        self.core.borrow_mut().handle(InEvent::PeerDown(peer));
    }

    /// This node takes `step` now: the core learns what it takes away.
    pub fn step(&self, step: crate::workload::events::Step) {
        self.core.borrow_mut().handle(InEvent::Step(step));
    }

    /// Carries out what the core decided: sends, and what the recorder must know.
    fn dispatch(self: &Rc<Self>) {
        loop {
            let event = self.core.borrow_mut().poll();
            let Some(event) = event else { break };
            match event {
                OutEvent::Send {
                    peer,
                    header,
                    priority,
                } => {
                    let conn = self.conns.borrow().get(&peer).cloned();
                    // A peer churn just removed: the core hears of it as the loop ends.
                    let Some(conn) = conn else { continue };
                    let node = self.clone();
                    tokio::task::spawn_local(async move {
                        if let Err(e) = send_object(&node, &conn, priority, &header).await {
                            node.error_on(peer, &conn, format!("sending to node {peer}: {e}"));
                        }
                    });
                }
                OutEvent::Scheduled {
                    class,
                    size,
                    intended_ns,
                    receivers,
                } => {
                    let mut r = self.rec.borrow_mut();
                    if !self.plan().classes[class as usize].arrival.is_backlog() {
                        let lag = monotonic_ns().saturating_sub(intended_ns) / 1000;
                        metrics::record(&mut r.send_lag, lag);
                    }
                    r.scheduled(class, size, intended_ns, receivers);
                }
                OutEvent::NotSentInTime {
                    class,
                    count,
                    receivers,
                } => self
                    .rec
                    .borrow_mut()
                    .not_sent_in_time(class, count, receivers),
                OutEvent::Delivered {
                    from,
                    header,
                    now_ns,
                } => self.rec.borrow_mut().delivered(from, &header, now_ns),
                OutEvent::Duplicate { header, .. } => self.rec.borrow_mut().duplicate(&header),
            }
        }
    }

    /// Makes `conn` (on stack slot `slot`) this node's connection to `peer`. An older one
    /// closes at once, or, given a `grace`, once what is in flight on it has had that long.
    pub fn install(
        self: &Rc<Self>,
        peer: u32,
        slot: Slot,
        conn: Conn,
        grace: Option<std::time::Duration>,
    ) {
        self.conn_slots.borrow_mut().insert(peer, slot);
        if let Some(old) = self.conns.borrow_mut().insert(peer, conn.clone()) {
            match grace {
                None => old.close(CHURN_CLOSE, b"replaced"),
                Some(grace) => {
                    tokio::task::spawn_local(async move {
                        tokio::time::sleep(grace).await;
                        old.close(CHURN_CLOSE, b"replaced");
                    });
                }
            }
        }
        self.start_peer(peer, &conn);
    }

    /// The connection `conn` to `peer` ended. If it was the one objects go on, it is
    /// forgotten, so nothing more is sent on it. Churn's own closes are expected; any other
    /// end while the workload runs (a crashed peer's idle timeout or reset) is recorded as
    /// the peer lost, and as an error unless the plan crashes that peer.
    fn connection_ended(&self, peer: u32, conn: &Conn) {
        let mut conns = self.conns.borrow_mut();
        if conns.get(&peer).is_none_or(|c| c.id() != conn.id()) {
            return;
        }
        let churned = self.ended_by_churn(peer, conn);
        let reported =
            self.start_ns + (self.plan().send_end() + self.plan().drain).as_nanos() as u64;
        if !churned && monotonic_ns() >= reported {
            // Peers leave once everyone has reported.
            return;
        }
        conns.remove(&peer);
        drop(conns);
        self.peer_down(peer);
        if churned {
            return;
        }
        let how = conn
            .end_reason()
            .unwrap_or_else(|| "the peer stopped sending".into());
        let mut rec = self.rec.borrow_mut();
        if !self.plan().churn.crashes_node(peer) {
            rec.error(format!("the connection to node {peer} ended: {how}"));
        }
        rec.churn.peers_lost.push(crate::control::PeerLost {
            peer,
            at_ns: monotonic_ns(),
            how,
        });
    }

    /// Whether churn ended the connection to `peer`: churn closed it, the peer restarted
    /// and its new endpoint reset the old connection, or the peer reset it while the plan
    /// separates the two (its step ran before this node's own).
    fn ended_by_churn(&self, peer: u32, conn: &Conn) -> bool {
        let churn = &self.plan().churn;
        let reset_by_restart = conn.was_reset()
            && churn.firings.iter().any(|f| {
                f.kind == crate::scenario::churn::EventKind::NodeRestart && f.node == peer
            });
        let elapsed = std::time::Duration::from_nanos(monotonic_ns().saturating_sub(self.start_ns));
        let reset_by_separation = conn.was_reset() && churn.separates(self.index, peer, elapsed);
        churned(conn) || reset_by_restart || reset_by_separation
    }

    /// Whether an error on `conn` is the crash of `peer` the plan schedules: the
    /// connection died with the peer's process.
    fn ended_by_crash(&self, peer: u32, conn: &Conn) -> bool {
        self.plan().churn.crashes_node(peer) && conn.end_reason().is_some()
    }

    /// Records a stream error on the connection to `peer` unless churn caused it.
    fn error_on(&self, peer: u32, conn: &Conn, e: String) {
        if !self.ended_by_churn(peer, conn) && !self.ended_by_crash(peer, conn) {
            self.rec.borrow_mut().error(e);
        }
    }
}

/// Runs the workload from the shared start to the end of the drain.
pub async fn workload(node: &Rc<Node>) -> Result<NodeReport> {
    let plan = node.plan().clone();
    let start_ns = node.start_ns;
    let conns: Vec<(u32, Conn)> = node
        .conns
        .borrow()
        .iter()
        .map(|(p, c)| (*p, c.clone()))
        .collect();
    for (peer, conn) in conns {
        node.start_peer(peer, &conn);
    }
    let churn_task = plan
        .churn
        .is_active()
        .then(|| tokio::task::spawn_local(churn::run(node.clone())));
    let watch_task = crate::workload::events::watches_handshakes(&plan)
        .then(|| tokio::task::spawn_local(churn::watch_handshakes(node.clone())));
    let upgrade_task = plan
        .network
        .upgrade
        .is_some()
        .then(|| tokio::task::spawn_local(super::upgrade::run(node.clone())));
    let usage_task = plan
        .network
        .upgrade
        .is_some()
        .then(|| tokio::task::spawn_local(sample_usage(node.clone())));
    let resources = Rc::new(RefCell::new(vec![]));
    let resource_task = tokio::task::spawn_local(sample_resources(start_ns, resources.clone()));
    node.timer.sleep_until(start_ns).await?;
    let (cpu0, net0, snmp0) = (
        metrics::process_cpu_us(),
        metrics::net_counters(),
        metrics::snmp_counters(),
    );
    let end_ns = start_ns + plan.send_end().as_nanos() as u64;
    let drain_end = end_ns + plan.drain.as_nanos() as u64;
    // Relays wait out validation only where a class asks for it; without, the loop needs
    // no wake-ups besides its own schedule.
    let validates = node.validates;
    loop {
        let next = node.core.borrow().next_wakeup();
        let Some(next) = next.filter(|t| *t < drain_end || !validates) else {
            if !validates {
                break;
            }
            node.done.set(monotonic_ns() >= end_ns);
            tokio::select! {
                r = node.timer.sleep_until(drain_end) => { r?; break; }
                _ = node.wake.notified() => continue,
            }
        };
        if validates {
            tokio::select! {
                r = node.timer.sleep_until(next) => r?,
                _ = node.wake.notified() => continue,
            }
        } else {
            node.timer.sleep_until(next).await?;
        }
        let now = monotonic_ns();
        node.core.borrow_mut().handle(InEvent::Tick { now_ns: now });
        node.dispatch();
        // Let the sends just spawned, and the receivers, run.
        tokio::task::yield_now().await;
    }
    node.done.set(true);
    node.timer.sleep_until(drain_end).await?;
    for t in [churn_task, watch_task, upgrade_task].into_iter().flatten() {
        t.abort();
    }
    resource_task.abort();
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
    for c in node.conns.borrow().values() {
        let st = c.stats();
        transport.sent_packets += st.sent_packets;
        transport.lost_packets += st.lost_packets;
        transport.congestion_events += st.congestion_events;
        transport.udp_tx_datagrams += st.udp_tx_datagrams;
        transport.udp_rx_datagrams += st.udp_rx_datagrams;
        if let Some(rtt) = st.min_rtt_us {
            transport.min_rtt_us = transport.min_rtt_us.min(rtt);
        }
    }
    let usage = match usage_task {
        Some(t) => {
            t.abort();
            std::mem::take(&mut *node.usage.borrow_mut())
        }
        None => vec![],
    };
    let resources = std::mem::take(&mut *resources.borrow_mut());
    let mut r = node.rec.borrow_mut();
    let classes = r.finish()?;
    let (deliveries, logged) = r.take_deliveries()?;
    let spin_us = (node.timer.spin_ns() + node.churn_spin_ns.get()) / 1000;
    Ok(NodeReport {
        index: node.index,
        start_ns,
        classes,
        deliveries,
        logged,
        send_lag_hist: metrics::encode_histogram(&r.send_lag)?,
        // The generator's busy-wait is harness work, not the stack's.
        cpu_user_us: (cpu1.0 - cpu0.0).saturating_sub(spin_us),
        generator_spin_us: spin_us,
        cpu_sys_us: cpu1.1 - cpu0.1,
        max_rss_bytes: metrics::max_rss_bytes(),
        net: metrics::net_delta(&net0, &net1),
        transport,
        all_received_bytes: r.all_received_bytes,
        error_count: r.error_count,
        errors: r.errors.clone(),
        churn: std::mem::take(&mut r.churn),
        upgrade: node.upgrade.borrow().clone(),
        usage,
        fallbacks: node.fallbacks.clone(),
        resources,
    })
}

/// Samples this process's memory and descriptors from the start until aborted.
async fn sample_resources(
    start_ns: u64,
    out: Rc<RefCell<Vec<stackbench_core::schema::ResourceSample>>>,
) {
    let every = std::time::Duration::from_secs_f64(stackbench_core::schema::RESOURCE_INTERVAL_S);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t_s = (monotonic_ns() as f64 - start_ns as f64) / 1e9;
        out.borrow_mut().push(metrics::resource_sample(t_s));
    }
}

/// Sends one object at `priority`.
pub async fn send_object(
    node: &Node,
    conn: &Conn,
    priority: i32,
    h: &ObjectHeader,
) -> Result<stack::Sent> {
    let body = node.payload.slice(..h.len as usize - HEADER_LEN);
    conn.send_object(priority, h, body).await
}

/// How often a node samples its CPU and interface bytes during an upgrade run.
const USAGE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Samples this node's CPU and interface bytes from the start until aborted.
async fn sample_usage(node: Rc<Node>) {
    // Not the node's precise timer: that one serves the send loop alone.
    let wait = node.start_ns.saturating_sub(monotonic_ns());
    tokio::time::sleep(std::time::Duration::from_nanos(wait)).await;
    let mut tick = tokio::time::interval(USAGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (user, sys) = metrics::process_cpu_us();
        // The veth carries everything the node puts on the wire, tunnels included.
        let veth = metrics::net_counters()
            .get(crate::topology::NODE_IFACE)
            .copied()
            .unwrap_or_default();
        let (tx, rx) = (veth.tx_bytes, veth.rx_bytes);
        node.usage.borrow_mut().push(crate::control::UsageSample {
            t_us: monotonic_ns().saturating_sub(node.start_ns) / 1000,
            cpu_us: user + sys,
            tx_bytes: tx,
            rx_bytes: rx,
        });
    }
}

/// Keeps one bulk object in flight to one peer: the next starts once the last is acknowledged,
/// so bulk never fills the transport's send window and blocks the higher classes' writes.
async fn backlog_loop(node: Rc<Node>, peer: u32, conn: Conn, class: u8) {
    loop {
        // A connection replaced by a newer one (an upgrade) carries no new bulk.
        if !node.is_current(peer, &conn) {
            return;
        }
        let next = node.core.borrow_mut().backlog_next(class, monotonic_ns());
        let Some((h, priority)) = next else { return };
        node.dispatch();
        let result = match send_object(&node, &conn, priority, &h).await {
            Ok(s) => s.acknowledged().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            node.error_on(peer, &conn, format!("bulk to node {peer}: {e}"));
            return;
        }
    }
}

async fn receive_loop(node: Rc<Node>, peer: u32, conn: Conn) {
    while let Some(object) = conn.next_object().await {
        let (node, conn) = (node.clone(), conn.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = receive_object(&node, peer, object).await {
                node.error_on(peer, &conn, format!("receiving from node {peer}: {e:#}"));
            }
        });
    }
    node.connection_ended(peer, &conn);
}

async fn receive_object(node: &Rc<Node>, peer: u32, mut object: stack::Arriving) -> Result<()> {
    let stack::Arrived {
        header: h,
        bytes: got,
        at_ns: now,
    } = object.read().await?;
    if got != h.len as u64 {
        bail!(
            "object {}:{} truncated: {got} of {} bytes",
            h.origin,
            h.seq,
            h.len
        );
    }
    if h.class == PROBE_CLASS {
        churn::cold_connect_arrived(node, &h, now);
    } else {
        // Without validation nothing a receipt does waits for the send loop: skip asking.
        let before = node.validates.then(|| node.core.borrow().next_wakeup());
        node.core.borrow_mut().handle(InEvent::Received {
            from: peer,
            header: h,
            now_ns: now,
        });
        node.dispatch();
        // A relay queued behind validation may be due before the send loop's next wake-up.
        if let Some(before) = before {
            if before.is_none() || node.core.borrow().next_wakeup() < before {
                node.wake.notify_one();
            }
        }
    }
    object.finish().await
}
