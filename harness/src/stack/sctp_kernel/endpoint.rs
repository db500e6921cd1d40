//! A node's endpoint on the kernel's SCTP: a listening one-to-one socket on the node's tunnel
//! address and a socket per association, each registered with the node's tokio runtime.
//! Objects travel as in the usrsctp stacks: one message each, on the stream of its priority,
//! under the kernel's priority scheduler with I-DATA.

use super::sys::{self, Options, Piece};
use crate::metrics::monotonic_ns;
use crate::stack::sctp::endpoint::{ended_text, Datagrams, Ended, Message, STREAMS};
use crate::stack::sctp::engine::scheduler_value;
use crate::stack::sctp::Lanes;
use socket2::Socket;
use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::pin,
    rc::{Rc, Weak},
    time::Duration,
};
use tokio::{io::unix::AsyncFd, sync::Notify};

/// Largest piece one `recvmsg` takes.
const READ_BUFFER: usize = 1 << 16;
/// Send and receive buffer per socket: several of the largest objects.
const SOCKET_BUFFER: usize = 8 << 20;
/// How often `acknowledged` asks the association (the kernel has no event for it).
const ACK_POLL: Duration = Duration::from_millis(1);
/// Retransmission timeout, ms, as the usrsctp stacks set it.
const RTO_MS: (u32, u32, u32) = (500, 200, 10_000);
const LISTEN_BACKLOG: i32 = 128;

#[derive(Debug, thiserror::Error)]
pub enum KernelSctpError {
    #[error("kernel SCTP {0}: {1}")]
    Io(&'static str, #[source] io::Error),
    #[error("association {0}")]
    Closed(&'static str),
    #[error("more than {0} priorities on one association (each has a stream)")]
    Lanes(u16),
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> KernelSctpError {
    move |e| KernelSctpError::Io(what, e)
}

/// Zero bytes for message bodies, shared and grown on demand (the bodies carry nothing).
#[derive(Default)]
struct Zeros(RefCell<Rc<Vec<u8>>>);

impl Zeros {
    fn at_least(&self, len: usize) -> Rc<Vec<u8>> {
        let mut z = self.0.borrow_mut();
        if z.len() < len {
            *z = Rc::new(vec![0; len.next_power_of_two()]);
        }
        z.clone()
    }
}

struct EndpointShared {
    local_ip: IpAddr,
    options: Options,
    head_len: usize,
    /// `None` once the endpoint is closed.
    listener: RefCell<Option<Rc<AsyncFd<Socket>>>>,
    /// The listener after `close`, until the last `accept` lets it go.
    closed_listener: RefCell<Weak<AsyncFd<Socket>>>,
    conns: RefCell<Vec<Weak<Assoc>>>,
    closed: Notify,
    zeros: Rc<Zeros>,
}

/// A node's kernel SCTP endpoint; clones share it.
#[derive(Clone)]
pub struct KernelSctpEndpoint(Rc<EndpointShared>);

impl std::fmt::Debug for KernelSctpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelSctpEndpoint({})", self.0.local_ip)
    }
}

impl KernelSctpEndpoint {
    /// Listens on `bind`; each message's first `head_len` bytes are kept for the receiver.
    /// Turns on I-DATA in the calling thread's network namespace (`net.sctp.intl_enable`).
    pub fn new(bind: SocketAddr, head_len: usize) -> Result<KernelSctpEndpoint, KernelSctpError> {
        sys::enable_interleaving().map_err(io_err("I-DATA"))?;
        let options = Options {
            streams: STREAMS,
            rto_ms: RTO_MS,
            buffer: SOCKET_BUFFER,
        };
        let s = sys::socket(&bind, &options).map_err(io_err("listening socket"))?;
        s.bind(&bind.into()).map_err(io_err("bind"))?;
        s.listen(LISTEN_BACKLOG).map_err(io_err("listen"))?;
        let listener = register(s).map_err(io_err("registering the listener"))?;
        Ok(KernelSctpEndpoint(Rc::new(EndpointShared {
            local_ip: bind.ip(),
            options,
            head_len,
            listener: RefCell::new(Some(Rc::new(listener))),
            closed_listener: RefCell::new(Weak::new()),
            conns: RefCell::new(vec![]),
            closed: Notify::new(),
            zeros: Rc::default(),
        })))
    }

    /// Starts an association with `addr`; the future resolves once it is up
    /// (`SCTP_COMM_UP`) or has failed.
    pub fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<
        impl Future<Output = Result<KernelSctpConn, KernelSctpError>> + 'static,
        KernelSctpError,
    > {
        let sh = &self.0;
        let s = sys::socket(&addr, &sh.options).map_err(io_err("socket"))?;
        s.bind(&SocketAddr::new(sh.local_ip, 0).into())
            .map_err(io_err("bind"))?;
        match s.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(KernelSctpError::Io("connect", e)),
        }
        let conn = self.adopt(s, addr)?;
        Ok(async move {
            loop {
                if let Some(how) = conn.ended() {
                    return Err(KernelSctpError::Closed(ended_text(how)));
                }
                if conn.0.up.get() {
                    return Ok(conn);
                }
                // Data can follow COMM_UP in the same read: keep it for `next_message`.
                if let Some(m) = conn.0.pump().await {
                    conn.0.ready.borrow_mut().push_back(m);
                }
            }
        })
    }

    fn adopt(&self, s: Socket, remote: SocketAddr) -> Result<KernelSctpConn, KernelSctpError> {
        let fd = register(s).map_err(io_err("registering a socket"))?;
        let a = Rc::new(Assoc {
            fd,
            remote,
            head_len: self.0.head_len,
            zeros: self.0.zeros.clone(),
            up: Cell::new(false),
            ended: Cell::new(None),
            changed: Notify::new(),
            lanes: Lanes::default(),
            partial: RefCell::new(HashMap::new()),
            ready: RefCell::new(VecDeque::new()),
            buf: RefCell::new(vec![0; READ_BUFFER]),
        });
        let mut conns = self.0.conns.borrow_mut();
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Rc::downgrade(&a));
        Ok(KernelSctpConn(a))
    }

    /// The next association a peer opened, or `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<KernelSctpConn> {
        loop {
            let listener = self.0.listener.borrow().clone()?;
            let mut closed = pin!(self.0.closed.notified());
            closed.as_mut().enable();
            let accepted = tokio::select! {
                g = listener.readable() => {
                    let mut g = g.ok()?;
                    match g.try_io(|fd| fd.get_ref().accept()) {
                        Ok(r) => r,
                        Err(_would_block) => continue,
                    }
                }
                _ = closed => continue,
            };
            let set_up = accepted.and_then(|(s, remote)| {
                sys::configure_accepted(&s)?;
                let remote = remote.as_socket().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "peer address is not IP")
                })?;
                Ok((s, remote))
            });
            match set_up {
                Ok((s, remote)) => match self.adopt(s, remote) {
                    Ok(c) => {
                        c.0.up.set(true);
                        return Some(c);
                    }
                    Err(e) => tracing::warn!("kernel SCTP: an accepted association: {e}"),
                },
                Err(e) => tracing::warn!("kernel SCTP: accepting an association: {e}"),
            }
        }
    }

    /// Closes every association (SHUTDOWN: what was sent is still delivered) and accepts no
    /// more.
    pub fn close(&self) {
        if let Some(l) = self.0.listener.borrow_mut().take() {
            *self.0.closed_listener.borrow_mut() = Rc::downgrade(&l);
        }
        self.0.closed.notify_waiters();
        for c in self.0.conns.borrow().iter().filter_map(Weak::upgrade) {
            KernelSctpConn(c).close();
        }
    }

    /// Waits, at most `within`, until the closed listener's socket is gone (an `accept` still
    /// holds it until it wakes), so a new endpoint can listen on its port. The kernel
    /// completes the associations' SHUTDOWN after their sockets close; a new endpoint binds
    /// meanwhile (`SO_REUSEADDR`).
    pub async fn wait_idle(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            while self.0.closed_listener.borrow().strong_count() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
}

/// `s` with the current runtime's reactor.
fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the `Socket` owns its descriptor, which stays open and the same until the
    // `AsyncFd` (its only owner) drops it.
    Ok(unsafe { AsyncFd::register(s) }?)
}

struct Assoc {
    fd: AsyncFd<Socket>,
    remote: SocketAddr,
    head_len: usize,
    zeros: Rc<Zeros>,
    up: Cell<bool>,
    ended: Cell<Option<Ended>>,
    /// Woken when the association ends.
    changed: Notify,
    /// Priority → stream.
    lanes: Lanes,
    /// Messages arriving in pieces, by stream: their first bytes and length so far.
    partial: RefCell<HashMap<u16, (Vec<u8>, u64)>>,
    ready: RefCell<VecDeque<Message>>,
    buf: RefCell<Vec<u8>>,
}

impl Assoc {
    fn end(&self, how: Ended) {
        if self.ended.get().is_none() {
            self.ended.set(Some(how));
            self.changed.notify_waiters();
        }
    }

    /// Reads once, when the socket has something: a message that is now whole, if any.
    async fn pump(&self) -> Option<Message> {
        let mut changed = pin!(self.changed.notified());
        changed.as_mut().enable();
        if self.ended.get().is_some() {
            return None;
        }
        let mut g = tokio::select! {
            g = self.fd.readable() => match g {
                Ok(g) => g,
                Err(e) => {
                    tracing::debug!("kernel SCTP with {}: poll: {e}", self.remote);
                    self.end(Ended::Lost);
                    return None;
                }
            },
            _ = changed => return None,
        };
        let mut buf = self.buf.borrow_mut();
        let piece = match g.try_io(|fd| sys::recv(fd.get_ref(), &mut buf)) {
            Ok(p) => p,
            Err(_would_block) => return None,
        };
        match piece {
            Ok(Piece::Data { stream, len, end }) => {
                let mut partial = self.partial.borrow_mut();
                let (head, total) = partial.entry(stream).or_default();
                let keep = self.head_len.saturating_sub(head.len()).min(len);
                head.extend_from_slice(&buf[..keep]);
                *total += len as u64;
                if !end {
                    return None;
                }
                let (head, len) = partial.remove(&stream)?;
                Some(Message {
                    stream,
                    head,
                    len,
                    at_ns: monotonic_ns(),
                })
            }
            Ok(Piece::Notification { kind, state }) => {
                if kind == sys::SCTP_ASSOC_CHANGE {
                    match state {
                        sys::SCTP_COMM_UP => self.up.set(true),
                        sys::SCTP_COMM_LOST => self.end(Ended::Lost),
                        sys::SCTP_SHUTDOWN_COMP => self.end(Ended::PeerShutdown),
                        sys::SCTP_CANT_STR_ASSOC => self.end(Ended::Refused),
                        _ => {}
                    }
                }
                None
            }
            Ok(Piece::Eof) => {
                self.end(Ended::PeerShutdown);
                None
            }
            Err(e) => {
                tracing::debug!("kernel SCTP with {}: recvmsg: {e}", self.remote);
                self.end(match e.raw_os_error() {
                    Some(libc::ECONNREFUSED) if !self.up.get() => Ended::Refused,
                    _ => Ended::Lost,
                });
                None
            }
        }
    }
}

/// An association with one peer; clones share it. Its socket closes with the last clone.
#[derive(Clone)]
pub struct KernelSctpConn(Rc<Assoc>);

impl std::fmt::Debug for KernelSctpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelSctpConn(with {})", self.0.remote)
    }
}

impl KernelSctpConn {
    /// Unique among live associations, like quinn's `stable_id`.
    pub fn id(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }

    pub fn remote(&self) -> SocketAddr {
        self.0.remote
    }

    pub fn ended(&self) -> Option<Ended> {
        self.0.ended.get()
    }

    /// Shuts the association down (SHUTDOWN: what was sent is still delivered).
    pub fn close(&self) {
        self.0.end(Ended::Locally);
        let _ = self.0.fd.get_ref().shutdown(std::net::Shutdown::Write);
    }

    /// Sends a message of `len` bytes at `priority` (higher first): `head`, then bytes that
    /// carry nothing. Waits while the send buffer is full. Each priority is a stream of its
    /// own, as in the usrsctp stacks.
    pub async fn send(
        &self,
        priority: i32,
        head: &[u8],
        len: usize,
    ) -> Result<(), KernelSctpError> {
        let stream = self.lane(priority)?;
        let n = head.len().min(len);
        let zeros = self.0.zeros.at_least(len - n);
        loop {
            if let Some(how) = self.ended() {
                return Err(KernelSctpError::Closed(ended_text(how)));
            }
            let mut g = self.0.fd.writable().await.map_err(io_err("poll"))?;
            match g.try_io(|fd| sys::send(fd.get_ref(), stream, &head[..n], &zeros[..len - n])) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => {
                    if let Some(how) = Ended::by_send_error(&e) {
                        self.0.end(how);
                    }
                    return Err(KernelSctpError::Io("sendmsg", e));
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// The stream that carries `priority`, given that priority on first use.
    fn lane(&self, priority: i32) -> Result<u16, KernelSctpError> {
        self.0
            .lanes
            .stream(priority, KernelSctpError::Lanes(STREAMS), |stream| {
                sys::set_stream_value(self.0.fd.get_ref(), stream, scheduler_value(priority))
                    .map_err(io_err("stream priority"))
            })
    }

    /// Waits until nothing this association sent is unacknowledged (asking the kernel every
    /// millisecond: it sends no event for it).
    pub async fn acknowledged(&self) -> Result<(), KernelSctpError> {
        loop {
            if let Some(how) = self.ended() {
                return Err(KernelSctpError::Closed(ended_text(how)));
            }
            let st = sys::status(self.0.fd.get_ref()).map_err(io_err("status"))?;
            if st.unacked == 0 && st.pending == 0 {
                return Ok(());
            }
            tokio::time::sleep(ACK_POLL).await;
        }
    }

    /// The next message that arrived whole, or `None` once the association has ended.
    pub async fn next_message(&self) -> Option<Message> {
        loop {
            if let Some(m) = self.0.ready.borrow_mut().pop_front() {
                return Some(m);
            }
            if self.ended().is_some() {
                return None;
            }
            if let Some(m) = self.0.pump().await {
                return Some(m);
            }
        }
    }

    /// The packets carried to and from the peer, and the path's smoothed RTT, ms.
    pub fn stats(&self) -> (Datagrams, Option<u32>) {
        let s = self.0.fd.get_ref();
        let p = sys::packets(s).unwrap_or_default();
        let srtt = sys::status(s).ok().map(|st| st.srtt_ms);
        (
            Datagrams {
                sent: p.sent,
                received: p.received,
                largest_sent: 0,
            },
            srtt,
        )
    }
}
