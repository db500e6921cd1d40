//! A node's SCTP endpoint: an association per peer over one datagram socket (a UDP socket on
//! the node's or its tunnel's address, or the in-process WireGuard), each SCTP packet one
//! datagram: SCTP over UDP as RFC 6951 carries it, with fixed ports instead of the RFC's
//! port learning. A task of the node's runtime moves packets between the socket and
//! usrsctp, advances usrsctp's timers, and reads what arrived.

use super::engine::{self, Arrival, InFlight, Link, Scheduler, SctpError, SctpSocket};
use super::ffi;
use crate::metrics::monotonic_ns;
use quinn::{
    udp::{RecvMeta, Transmit},
    AsyncUdpSocket, UdpPoller,
};
use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    future::{poll_fn, Future},
    io::IoSliceMut,
    net::SocketAddr,
    pin::{pin, Pin},
    rc::{Rc, Weak},
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};
use tokio::sync::Notify;

/// The port every node listens on, on its link to each peer.
const LISTEN_PORT: u16 = 5000;
/// Streams each way: one per class index (a `u8`, the cold-connect probe's included).
pub const STREAMS: u16 = 256;
/// SCTP's common header (ports, verification tag, checksum), bytes.
const COMMON_HEADER: u32 = 12;
/// How often usrsctp's timers advance when nothing else wakes the endpoint.
const TICK: Duration = Duration::from_millis(5);
/// Room for the largest datagram (and a GRO batch of them).
const DATAGRAM_BUFFER: usize = 1 << 16;
/// Datagrams read before the endpoint services its associations.
const READ_BATCH: usize = 64;
/// Retransmission timeout, ms: initial, min, max. usrsctp's defaults (3 s, 1 s, 60 s) are
/// RFC 4960's for the Internet of 2000; these are RFC 9002-like values for a LAN or WAN of
/// known paths, as a latency-critical deployment would set them.
const RTO_MS: (u32, u32, u32) = (500, 200, 10_000);

/// How an association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// This side closed it.
    Locally,
    /// The peer shut it down (SHUTDOWN): what was sent was delivered.
    PeerShutdown,
    /// It was aborted or timed out (`SCTP_COMM_LOST`).
    Lost,
    /// The handshake failed (`SCTP_CANT_STR_ASSOC`).
    Refused,
}

impl Ended {
    /// What a failed send says of the association: a peer that aborted it (as a restarted
    /// peer's new endpoint does) or a socket already shut makes it lost; other errors say
    /// nothing of it. usrsctp answers a send on an association its peer aborted with
    /// ENOENT (no such association) in a test, and with ECONNRESET under churn.
    pub fn by_send_error(e: &std::io::Error) -> Option<Ended> {
        matches!(
            e.raw_os_error(),
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ENOENT)
        )
        .then_some(Ended::Lost)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Up,
    Ended(Ended),
}

/// A message that arrived whole: its stream, its first bytes and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub stream: u16,
    pub head: Vec<u8>,
    pub len: u64,
    /// When its last byte was read, `monotonic_ns`.
    pub at_ns: u64,
}

/// The datagrams one link has carried, each way.
#[derive(Debug, Default, Clone, Copy)]
pub struct Datagrams {
    pub sent: u64,
    pub received: u64,
    /// The largest sent, bytes.
    pub largest_sent: usize,
}

/// The lower-layer path to one peer address, with the listening socket on it.
struct PeerLink {
    remote: SocketAddr,
    /// Dropped before `link`: sockets go before the link they are bound to.
    listener: SctpSocket,
    conns: Vec<Weak<Association>>,
    datagrams: Rc<Cell<Datagrams>>,
    link: Link,
}

struct Shared {
    socket: Arc<dyn AsyncUdpSocket>,
    scheduler: Scheduler,
    path_mtu: u32,
    /// How many leading bytes of each message are kept for the receiver.
    head_len: usize,
    links: RefCell<Vec<PeerLink>>,
    accepted: RefCell<VecDeque<SctpConn>>,
    /// Woken after the endpoint has serviced its associations (arrivals, acks, handshakes).
    changed: Notify,
    /// Wakes the endpoint's task to send what usrsctp queued.
    kick: Notify,
    closed: Cell<bool>,
    next_port: Cell<u16>,
    next_id: Cell<u64>,
    /// Messages are built here: a header, then the body (whose bytes carry nothing).
    scratch: RefCell<Vec<u8>>,
    read_buf: RefCell<Vec<u8>>,
    /// Itself, for the associations it makes.
    me: Weak<Shared>,
}

/// A node's SCTP endpoint; clones share it. Once every clone is gone, its task ends and the
/// socket closes.
#[derive(Clone)]
pub struct SctpEndpoint {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for SctpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpEndpoint")
            .field("links", &self.shared.links.borrow().len())
            .finish_non_exhaustive()
    }
}

impl SctpEndpoint {
    /// An endpoint on `socket`, whose datagrams carry at most `path_mtu` bytes of SCTP; each
    /// message's first `head_len` bytes are kept for the receiver. Spawns its task on the
    /// current `LocalSet`.
    pub fn new(
        socket: Arc<dyn AsyncUdpSocket>,
        scheduler: Scheduler,
        path_mtu: u32,
        head_len: usize,
    ) -> Result<SctpEndpoint, SctpError> {
        engine::usrsctp()?;
        // Ports of this endpoint's own dials start somewhere new each time, so that a
        // restarted node's associations never look like its former ones to a peer.
        let first_port = 10_000 + (monotonic_ns() % 40_000) as u16;
        let shared = Rc::new_cyclic(|me| Shared {
            me: me.clone(),
            socket,
            scheduler,
            path_mtu,
            head_len,
            links: RefCell::default(),
            accepted: RefCell::default(),
            changed: Notify::new(),
            kick: Notify::new(),
            closed: Cell::new(false),
            next_port: Cell::new(first_port),
            next_id: Cell::new(1),
            scratch: RefCell::default(),
            read_buf: RefCell::new(vec![0; DATAGRAM_BUFFER]),
        });
        tokio::task::spawn_local(drive(Rc::downgrade(&shared)));
        Ok(SctpEndpoint { shared })
    }

    /// Starts the 4-way handshake with the endpoint at `remote`; the future resolves once
    /// the association is up.
    pub fn connect(
        &self,
        remote: SocketAddr,
    ) -> Result<impl Future<Output = Result<SctpConn, SctpError>> + 'static, SctpError> {
        let sh = &self.shared;
        if sh.closed.get() {
            return Err(SctpError::Closed("the endpoint is closed"));
        }
        let socket = sh.new_socket()?;
        let port = sh.next_port.get();
        sh.next_port
            .set(if port >= 50_000 { 10_000 } else { port + 1 });
        let conn = {
            let mut links = sh.links.borrow_mut();
            let link = sh.link_to(&mut links, remote)?;
            socket.bind(&link.link, port)?;
            socket.connect(&link.link, LISTEN_PORT)?;
            let conn = sh.association(socket, remote, link, Phase::Connecting);
            link.conns.push(Rc::downgrade(&conn.0));
            conn
        };
        sh.kick.notify_one();
        let shared = self.shared.clone();
        Ok(async move {
            loop {
                let mut changed = pin!(shared.changed.notified());
                changed.as_mut().enable();
                match conn.0.phase.get() {
                    Phase::Up => return Ok(conn),
                    Phase::Ended(how) => {
                        return Err(SctpError::Handshake(format!(
                            "the association with {remote} ended during its handshake ({how:?})"
                        )))
                    }
                    Phase::Connecting => changed.await,
                }
            }
        })
    }

    /// The next association a peer opened, or `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<SctpConn> {
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            if self.shared.closed.get() {
                return None;
            }
            if let Some(c) = self.shared.accepted.borrow_mut().pop_front() {
                return Some(c);
            }
            changed.await;
        }
    }

    /// Closes every association (SHUTDOWN, which delivers what was sent) and accepts no
    /// more.
    pub fn close(&self) {
        let sh = &self.shared;
        sh.closed.set(true);
        sh.accepted.borrow_mut().clear();
        let conns: Vec<_> = sh
            .links
            .borrow()
            .iter()
            .flat_map(|l| l.conns.iter().filter_map(Weak::upgrade))
            .collect();
        for c in conns {
            SctpConn(c).close();
        }
        sh.changed.notify_waiters();
        sh.kick.notify_one();
    }

    /// Waits until the associations closed by [`SctpEndpoint::close`] have had `within` to
    /// finish their shutdowns, or none is left.
    pub async fn wait_idle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline && self.shared.has_associations() {
            tokio::time::sleep(TICK).await;
        }
    }
}

impl Shared {
    /// A socket with the endpoint's streams, scheduler, path MTU and timeouts.
    fn new_socket(&self) -> Result<SctpSocket, SctpError> {
        let s = SctpSocket::new(STREAMS, self.scheduler)?;
        // usrsctp's MTU on an AF_CONN link leaves out SCTP's common header.
        s.set_path_mtu(self.path_mtu - COMMON_HEADER)?;
        s.set_rto(RTO_MS.0, RTO_MS.1, RTO_MS.2)?;
        Ok(s)
    }

    /// The link to `remote`, made (with its listener) on first use.
    fn link_to<'a>(
        &self,
        links: &'a mut Vec<PeerLink>,
        remote: SocketAddr,
    ) -> Result<&'a mut PeerLink, SctpError> {
        let at = match links.iter().position(|l| l.remote == remote) {
            Some(at) => at,
            None => {
                let link = Link::new()?;
                let listener = self.new_socket()?;
                listener.bind(&link, LISTEN_PORT)?;
                listener.listen()?;
                links.push(PeerLink {
                    remote,
                    listener,
                    conns: vec![],
                    datagrams: Rc::default(),
                    link,
                });
                links.len() - 1
            }
        };
        Ok(&mut links[at])
    }

    fn association(
        &self,
        socket: SctpSocket,
        remote: SocketAddr,
        link: &PeerLink,
        phase: Phase,
    ) -> SctpConn {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        SctpConn(Rc::new(Association {
            id,
            remote,
            socket: RefCell::new(Some(socket)),
            phase: Cell::new(phase),
            partial: RefCell::default(),
            messages: RefCell::default(),
            lanes: super::Lanes::default(),
            datagrams: link.datagrams.clone(),
            srtt_ms: Cell::new(None),
            endpoint: self.me.clone(),
        }))
    }

    fn has_associations(&self) -> bool {
        self.links
            .borrow()
            .iter()
            .any(|l| l.conns.iter().any(|c| c.strong_count() > 0))
    }

    /// Hands each datagram (split where GRO joined several) to the link it came from.
    fn input(&self, buf: &[u8], meta: &RecvMeta) {
        let mut links = self.links.borrow_mut();
        let link = match self.link_to(&mut links, meta.addr) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("SCTP: no link for a datagram from {}: {e}", meta.addr);
                return;
            }
        };
        let stride = meta.stride.max(1);
        for packet in buf[..meta.len].chunks(stride) {
            let mut d = link.datagrams.get();
            d.received += 1;
            link.datagrams.set(d);
            if let Err(e) = link.link.input(packet) {
                tracing::warn!("SCTP: input from {}: {e}", meta.addr);
            }
        }
    }

    /// Accepts associations that came up and reads what arrived on each.
    fn service(&self) {
        let mut buf = self.read_buf.borrow_mut();
        let mut links = self.links.borrow_mut();
        for l in links.iter_mut() {
            loop {
                match l.listener.accept() {
                    Ok(Some(s)) => {
                        let c = self.association(s, l.remote, l, Phase::Up);
                        l.conns.push(Rc::downgrade(&c.0));
                        if !self.closed.get() {
                            self.accepted.borrow_mut().push_back(c);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("SCTP: accepting from {}: {e}", l.remote);
                        break;
                    }
                }
            }
            l.conns.retain(|c| c.strong_count() > 0);
            for c in l.conns.iter().filter_map(Weak::upgrade) {
                c.read(&mut buf, self.head_len);
            }
        }
    }

    /// The packets usrsctp queued, per peer address.
    fn take_output(&self) -> Vec<(SocketAddr, VecDeque<Vec<u8>>)> {
        self.links
            .borrow()
            .iter()
            .filter_map(|l| {
                let out = l.link.take_output();
                let mut d = l.datagrams.get();
                d.sent += out.len() as u64;
                d.largest_sent = out.iter().map(Vec::len).fold(d.largest_sent, usize::max);
                l.datagrams.set(d);
                (!out.is_empty()).then_some((l.remote, out))
            })
            .collect()
    }
}

/// The endpoint's task: reads datagrams, runs timers, services associations and sends what
/// usrsctp queued, until the endpoint is gone.
async fn drive(endpoint: Weak<Shared>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poller = match endpoint.upgrade() {
        Some(sh) => sh.socket.clone().create_io_poller(),
        None => return,
    };
    // A new socket is not known to be writable until the reactor has polled it, and a send
    // before then fails with WouldBlock. Through an in-process tunnel that loses WireGuard's
    // handshake initiation, which is retried only after 5 s: a restarted node's first dials
    // took 5 s until this wait.
    let _ = poll_fn(|cx| poller.as_mut().poll_writable(cx)).await;
    let poller = &mut poller;
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let (mut last, mut carried) = (Instant::now(), Duration::ZERO);
    loop {
        let Some(sh) = endpoint.upgrade() else { return };
        let mut meta = [RecvMeta::default()];
        tokio::select! {
            r = poll_fn(|cx| sh.socket.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)) => {
                if let Ok(n) = r {
                    if n > 0 {
                        sh.input(&buf, &meta[0]);
                    }
                    // Whatever else has arrived, without waiting.
                    for _ in 1..READ_BATCH {
                        let more = poll_fn(|cx| {
                            let r = sh.socket.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta);
                            Poll::Ready(matches!(r, Poll::Ready(Ok(n)) if n > 0))
                        })
                        .await;
                        if !more {
                            break;
                        }
                        sh.input(&buf, &meta[0]);
                    }
                }
            }
            _ = sh.kick.notified() => {}
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now - last + carried;
        last = now;
        let ms = elapsed.as_millis() as u32;
        carried = elapsed - Duration::from_millis(ms.into());
        if ms > 0 {
            let _ = engine::tick(ms);
        }
        sh.service();
        for (remote, packets) in sh.take_output() {
            for p in packets {
                send(&*sh.socket, poller, remote, &p).await;
            }
        }
        sh.changed.notify_waiters();
    }
}

/// Sends one datagram, waiting while the socket's buffer is full.
async fn send(
    socket: &dyn AsyncUdpSocket,
    poller: &mut Pin<Box<dyn UdpPoller>>,
    to: SocketAddr,
    packet: &[u8],
) {
    let t = Transmit {
        destination: to,
        ecn: None,
        contents: packet,
        segment_size: None,
        src_ip: None,
    };
    loop {
        match socket.try_send(&t) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if poll_fn(|cx| poller.as_mut().poll_writable(cx))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Another error is a lost packet, which SCTP retransmits like any other; one that
            // recurs (a datagram over the path's MTU) stalls the association, so it is told.
            Err(e) => {
                tracing::warn!("SCTP: sending {} bytes to {to}: {e}", packet.len());
                return;
            }
            Ok(()) => return,
        }
    }
}

/// One association's state on this side.
struct Association {
    id: u64,
    remote: SocketAddr,
    /// `None` once closed here.
    socket: RefCell<Option<SctpSocket>>,
    phase: Cell<Phase>,
    /// Per stream, the message being received: its first bytes and length so far.
    partial: RefCell<HashMap<u16, (Vec<u8>, u64)>>,
    messages: RefCell<VecDeque<Message>>,
    /// Each priority's stream (its lane), in the order priorities were first sent.
    lanes: super::Lanes,
    datagrams: Rc<Cell<Datagrams>>,
    srtt_ms: Cell<Option<u32>>,
    endpoint: Weak<Shared>,
}

impl Association {
    fn end(&self, how: Ended) {
        if !matches!(self.phase.get(), Phase::Ended(_)) {
            self.phase.set(Phase::Ended(how));
        }
    }

    /// Reads everything that arrived, completing messages and noting changes of state.
    fn read(&self, buf: &mut [u8], head_len: usize) {
        let socket = self.socket.borrow();
        let Some(s) = socket.as_ref() else { return };
        loop {
            match s.recv(buf) {
                Ok(None) => break,
                Ok(Some(Arrival::Data(r))) => {
                    let mut partial = self.partial.borrow_mut();
                    let (head, len) = partial.entry(r.stream).or_default();
                    let want = head_len.saturating_sub(head.len()).min(r.len);
                    head.extend_from_slice(&buf[..want]);
                    *len += r.len as u64;
                    if r.end_of_message {
                        let (head, len) = partial.remove(&r.stream).unwrap_or_default();
                        self.messages.borrow_mut().push_back(Message {
                            stream: r.stream,
                            head,
                            len,
                            at_ns: monotonic_ns(),
                        });
                    }
                }
                Ok(Some(Arrival::Association(state))) => match state {
                    ffi::SCTP_COMM_UP | ffi::SCTP_RESTART
                        if self.phase.get() == Phase::Connecting =>
                    {
                        self.phase.set(Phase::Up);
                    }
                    ffi::SCTP_COMM_LOST => self.end(Ended::Lost),
                    ffi::SCTP_SHUTDOWN_COMP => self.end(Ended::PeerShutdown),
                    ffi::SCTP_CANT_STR_ASSOC => self.end(Ended::Refused),
                    _ => {}
                },
                Ok(Some(Arrival::Shutdown)) => {
                    self.end(Ended::PeerShutdown);
                    break;
                }
                Err(e) => {
                    tracing::debug!("SCTP: reading from {}: {e}", self.remote);
                    self.end(Ended::Lost);
                    break;
                }
            }
        }
        if let Ok(f) = s.in_flight() {
            if f.srtt_ms > 0 {
                self.srtt_ms.set(Some(f.srtt_ms));
            }
        }
    }
}

/// One association, as the node holds it; clones share it. Once every clone is gone, it
/// shuts down.
#[derive(Clone)]
pub struct SctpConn(Rc<Association>);

impl std::fmt::Debug for SctpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SctpConn({} with {})", self.0.id, self.0.remote)
    }
}

impl SctpConn {
    /// Unique within the process's endpoints' lifetimes, like quinn's `stable_id`.
    pub fn id(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }

    pub fn remote(&self) -> SocketAddr {
        self.0.remote
    }

    /// How the association ended, if it has.
    pub fn ended(&self) -> Option<Ended> {
        match self.0.phase.get() {
            Phase::Ended(how) => Some(how),
            _ => None,
        }
    }

    /// Shuts the association down (SHUTDOWN: what was sent is still delivered).
    pub fn close(&self) {
        self.0.end(Ended::Locally);
        drop(self.0.socket.borrow_mut().take());
    }

    /// Sends a message of `len` bytes at `priority` (higher first): `head`, then bytes that
    /// carry nothing. Waits while the send buffer is full.
    ///
    /// Each priority is a stream of its own, so messages of equal priority queue in one
    /// FIFO, as QUIC's streams of equal priority share one level. A stream per class would
    /// let the round-robin between streams favour a class of small messages even at equal
    /// priority.
    pub async fn send(&self, priority: i32, head: &[u8], len: usize) -> Result<(), SctpError> {
        let sh = self.endpoint()?;
        let stream = self.lane(priority, sh.scheduler)?;
        loop {
            let mut changed = pin!(sh.changed.notified());
            changed.as_mut().enable();
            if let Some(how) = self.ended() {
                return Err(SctpError::Closed(ended_text(how)));
            }
            {
                let socket = self.0.socket.borrow();
                let s = socket.as_ref().ok_or(SctpError::Closed("closed here"))?;
                let mut scratch = sh.scratch.borrow_mut();
                if scratch.len() < len {
                    scratch.resize(len, 0);
                }
                let n = head.len().min(len);
                scratch[..n].copy_from_slice(&head[..n]);
                match s.send(stream, &scratch[..len]) {
                    Ok(Some(_)) => {
                        sh.kick.notify_one();
                        return Ok(());
                    }
                    Ok(None) => {}
                    Err(e) => {
                        if let SctpError::Call { source, .. } = &e {
                            if let Some(how) = Ended::by_send_error(source) {
                                self.0.end(how);
                            }
                        }
                        return Err(e);
                    }
                }
            }
            changed.await;
        }
    }

    /// The stream that carries `priority`, given that priority on first use.
    fn lane(&self, priority: i32, scheduler: Scheduler) -> Result<u16, SctpError> {
        self.0
            .lanes
            .stream(priority, SctpError::Lanes(STREAMS), |stream| {
                if scheduler != Scheduler::Priority {
                    return Ok(());
                }
                let socket = self.0.socket.borrow();
                let s = socket.as_ref().ok_or(SctpError::Closed("closed here"))?;
                s.set_priority(stream, priority)
            })
    }

    /// Waits until nothing this association sent is unacknowledged.
    pub async fn acknowledged(&self) -> Result<(), SctpError> {
        let sh = self.endpoint()?;
        loop {
            let mut changed = pin!(sh.changed.notified());
            changed.as_mut().enable();
            if let Some(how) = self.ended() {
                return Err(SctpError::Closed(ended_text(how)));
            }
            let f: InFlight = match self.0.socket.borrow().as_ref() {
                Some(s) => s.in_flight()?,
                None => return Err(SctpError::Closed("closed here")),
            };
            if f.chunks == 0 {
                return Ok(());
            }
            changed.await;
        }
    }

    /// The next message that arrived whole, or `None` once the association has ended and
    /// everything that arrived was taken.
    pub async fn next_message(&self) -> Option<Message> {
        let sh = self.endpoint().ok()?;
        loop {
            let mut changed = pin!(sh.changed.notified());
            changed.as_mut().enable();
            if let Some(m) = self.0.messages.borrow_mut().pop_front() {
                return Some(m);
            }
            if self.ended().is_some() {
                return None;
            }
            changed.await;
        }
    }

    fn endpoint(&self) -> Result<Rc<Shared>, SctpError> {
        self.0
            .endpoint
            .upgrade()
            .ok_or(SctpError::Closed("its endpoint is gone"))
    }

    /// The datagrams carried to and from the peer, and the path's smoothed RTT, ms.
    pub fn stats(&self) -> (Datagrams, Option<u32>) {
        (self.0.datagrams.get(), self.0.srtt_ms.get())
    }
}

/// How an association ended, in words for an error.
pub(crate) fn ended_text(how: Ended) -> &'static str {
    match how {
        Ended::Locally => "closed here",
        Ended::PeerShutdown => "the peer shut it down",
        Ended::Lost => "aborted or timed out",
        Ended::Refused => "the handshake failed",
    }
}
