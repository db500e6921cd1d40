//! WireGuard inside the node process: a quinn [`AsyncUdpSocket`] that carries QUIC datagrams
//! through one [`WgTunnel`] per peer (boringtun's or GotaTun's) over an ordinary UDP socket.
//! No TUN device, no root: the seed's "ideally we wouldn't need root".
//!
//! QUIC sees each peer at a virtual address. A datagram to it gets a minimal IPv4+UDP header
//! (WireGuard carries IP packets), is encrypted by that peer's tunnel and sent to the peer's
//! real WireGuard endpoint; incoming WireGuard datagrams are decrypted and unwrapped the same
//! way back. Timers (handshake retries, keepalives, rekeys) are driven every 100 ms.

use super::wg_tunnel::{TunnelMaker, WgTunnel, HANDSHAKE_ROOM};
use boringtun::x25519;
use quinn::{
    udp::{RecvMeta, Transmit},
    AsyncUdpSocket, UdpPoller,
};
use std::{
    collections::VecDeque,
    fmt,
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll},
    time::Duration,
};

/// The synthetic IPv4 (20 B) + UDP (8 B) header around each QUIC datagram.
pub const INNER_HEADER: usize = 28;
/// WireGuard's own per-packet overhead: type, index, counter (16 B) and tag (16 B).
pub const WG_OVERHEAD: usize = 32;
/// Tunnel MTU, as on a WireGuard interface; inner IP packets never exceed it.
pub const TUNNEL_MTU: usize = 1420;
/// The largest QUIC datagram that fits the tunnel.
pub const MAX_QUIC_PAYLOAD: u16 = (TUNNEL_MTU - INNER_HEADER) as u16;
/// How often each tunnel's WireGuard timers are driven (boringtun's device uses 250 ms).
pub const TIMER_INTERVAL: Duration = Duration::from_millis(100);
const SCRATCH: usize = 65_536;

/// One remote node: its tunnel, virtual address and real WireGuard endpoint.
pub struct WgPeer {
    pub index: u32,
    pub public: x25519::PublicKey,
    pub virtual_ip: Ipv4Addr,
    pub endpoint: SocketAddr,
    pub tunnel: Box<dyn WgTunnel>,
    /// Handshake initiations sent and data packets decrypted, for diagnosis.
    pub initiations: u64,
    pub decrypted: u64,
}

/// A peer's fixed addresses beside its lockable tunnel, so that finding the peer of a
/// packet takes no lock.
struct PeerSlot {
    index: u32,
    virtual_ip: Ipv4Addr,
    endpoint: SocketAddr,
    /// Cleared while churn has removed the peer: its packets are dropped both ways.
    present: AtomicBool,
    state: Mutex<WgPeer>,
}

struct Inbound {
    /// Decrypted datagrams that did not fit quinn's buffers last time: (source, payload).
    ready: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Receive buffers for one batched read of the outer socket (recvmmsg and GRO).
    recv_bufs: Vec<Vec<u8>>,
    out_buf: Vec<u8>,
}

struct Outbound {
    /// Encrypted datagrams of one GSO batch, back to back.
    batch: Vec<u8>,
    plain: Vec<u8>,
}

/// Outer datagrams read per receive call.
pub const RECV_BATCH: usize = 8;
/// QUIC datagrams accepted per send call (sent as one GSO batch).
pub const SEND_SEGMENTS: usize = 32;

/// The socket quinn uses; see the module documentation.
pub struct WgSocket {
    outer: Arc<dyn AsyncUdpSocket>,
    tunnels: Box<dyn TunnelMaker>,
    local: SocketAddr,
    peers: Vec<PeerSlot>,
    inbound: Mutex<Inbound>,
    outbound: Mutex<Outbound>,
}

impl fmt::Debug for WgSocket {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WgSocket({} via {} peers)", self.local, self.peers.len())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain buffers behind; they stay usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes an IPv4+UDP header for `payload_len` bytes from `src` to `dst` into `out[..28]`:
/// WireGuard carries IP packets, so each QUIC datagram needs one.
pub fn write_inner_header(
    out: &mut [u8],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
) {
    let total = (INNER_HEADER + payload_len) as u16;
    out[0] = 0x45;
    out[1] = 0;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    out[8] = 64;
    out[9] = 17; // UDP
    out[10..12].copy_from_slice(&[0, 0]);
    out[12..16].copy_from_slice(&src.ip().octets());
    out[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = out[..20]
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    out[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    out[20..22].copy_from_slice(&src.port().to_be_bytes());
    out[22..24].copy_from_slice(&dst.port().to_be_bytes());
    out[24..26].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    out[26..28].copy_from_slice(&[0, 0]); // UDP checksum optional over IPv4
}

/// The source and payload of an inner IPv4+UDP packet, if it is one.
pub fn read_inner_packet(p: &[u8]) -> Option<(SocketAddr, &[u8])> {
    if p.len() < INNER_HEADER || p[0] != 0x45 || p[9] != 17 {
        return None;
    }
    let total = u16::from_be_bytes([p[2], p[3]]) as usize;
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let sport = u16::from_be_bytes([p[20], p[21]]);
    (INNER_HEADER..=p.len())
        .contains(&total)
        .then(|| (SocketAddr::new(src.into(), sport), &p[INNER_HEADER..total]))
}

impl WgSocket {
    /// A tunnel socket at virtual address `local`, sending over `outer` to `peers`; spawns the
    /// timer task on the current tokio runtime.
    pub fn new(
        outer: Arc<dyn AsyncUdpSocket>,
        local: SocketAddr,
        tunnels: Box<dyn TunnelMaker>,
        peers: Vec<WgPeer>,
    ) -> Arc<Self> {
        let sock = Arc::new(WgSocket {
            outer,
            tunnels,
            local,
            peers: peers
                .into_iter()
                .map(|p| PeerSlot {
                    index: p.index,
                    virtual_ip: p.virtual_ip,
                    endpoint: p.endpoint,
                    present: AtomicBool::new(true),
                    state: Mutex::new(p),
                })
                .collect(),
            inbound: Mutex::new(Inbound {
                ready: VecDeque::new(),
                recv_bufs: vec![vec![0; SCRATCH]; RECV_BATCH],
                out_buf: vec![0; SCRATCH],
            }),
            outbound: Mutex::new(Outbound {
                batch: Vec::with_capacity(SCRATCH * 2),
                plain: vec![0; TUNNEL_MTU],
            }),
        });
        let weak = Arc::downgrade(&sock);
        tokio::spawn(async move {
            let mut buf = vec![0u8; SCRATCH];
            let mut tick = tokio::time::interval(TIMER_INTERVAL);
            while let Some(sock) = {
                tick.tick().await;
                weak.upgrade()
            } {
                for slot in sock
                    .peers
                    .iter()
                    .filter(|s| s.present.load(Ordering::Relaxed))
                {
                    let mut p = lock(&slot.state);
                    let endpoint = p.endpoint;
                    p.tunnel
                        .tick(&mut buf, &mut |pkt| sock.send_outer(endpoint, pkt));
                }
            }
        });
        sock
    }

    fn send_outer(&self, dest: SocketAddr, contents: &[u8]) {
        if contents.first().is_some_and(|&t| (1..=3).contains(&t)) {
            tracing::trace!("WireGuard: handshake message {} to {dest}", contents[0]);
        }
        self.send_outer_batch(dest, contents, None);
    }

    fn send_outer_batch(&self, dest: SocketAddr, contents: &[u8], segment_size: Option<usize>) {
        send_or_retry_handshake(&self.outer, dest, contents, segment_size);
    }

    /// Why nothing may be arriving from peer `index`, for error messages.
    pub fn diagnose(&self, index: u32) -> String {
        match self
            .peers
            .iter()
            .find(|s| s.index == index)
            .map(|s| lock(&s.state))
        {
            Some(p) => {
                match p.tunnel.since_handshake() {
                    Some(t) => format!("WireGuard session with node {index} up (last handshake {t:?} ago), {} packets decrypted", p.decrypted),
                    None => format!(
                        "no WireGuard handshake with node {index} completed ({} initiations sent to {}): wrong key, or the peer is down",
                        p.initiations, p.endpoint
                    ),
                }
            }
            None => format!("node {index} is not a WireGuard peer"),
        }
    }

    /// Decrypts one datagram from the outer socket; the inner QUIC datagram goes to
    /// `deliver` (which copies it out), anything for the network is sent at once.
    fn decapsulate(
        &self,
        out_buf: &mut [u8],
        from: SocketAddr,
        data: &[u8],
        mut deliver: impl FnMut(SocketAddr, &[u8]),
    ) {
        let Some(peer) = self
            .peers
            .iter()
            .find(|s| s.endpoint == from && s.present.load(Ordering::Relaxed))
        else {
            return;
        };
        if data.first().is_some_and(|&t| (1..=3).contains(&t)) {
            tracing::trace!("WireGuard: handshake message {} from {from}", data[0]);
        }
        let mut p = lock(&peer.state);
        let WgPeer {
            tunnel,
            decrypted,
            endpoint,
            ..
        } = &mut *p;
        let endpoint = *endpoint;
        tunnel.open(
            from,
            data,
            out_buf,
            &mut |pkt| self.send_outer(endpoint, pkt),
            &mut |pkt| {
                if let Some((src, payload)) = read_inner_packet(pkt) {
                    *decrypted += 1;
                    deliver(src, payload);
                }
            },
        );
    }
}

/// Churn in-process: removing a peer forgets its tunnel (session, counters, timers) and
/// drops its packets; adding it back creates the tunnel anew.
impl super::PeerControl for WgSocket {
    fn remove_peer(&self, peer: u32) -> Result<(), super::StackError> {
        self.set_present(peer, false)
    }
    fn add_peer(&self, peer: u32) -> Result<(), super::StackError> {
        self.set_present(peer, true)
    }
    fn set_interface(&self, _up: bool) -> Result<bool, super::StackError> {
        Ok(false)
    }
    fn blocks(&self) -> bool {
        false
    }
    fn last_handshakes(&self) -> Vec<(u32, std::time::SystemTime)> {
        let now = std::time::SystemTime::now();
        self.peers
            .iter()
            .filter(|s| s.present.load(Ordering::Relaxed))
            .filter_map(|s| {
                let since = lock(&s.state).tunnel.since_handshake();
                Some((s.index, now - since?))
            })
            .collect()
    }
}

impl WgSocket {
    fn set_present(&self, peer: u32, present: bool) -> Result<(), super::StackError> {
        let slot = self.peers.iter().find(|s| s.index == peer).ok_or_else(|| {
            super::StackError::Setup(format!("node {peer} is not a WireGuard peer"))
        })?;
        if present {
            let mut p = lock(&slot.state);
            p.tunnel = self.tunnels.tunnel(p.public, p.index);
            p.initiations = 0;
            p.decrypted = 0;
        }
        slot.present.store(present, Ordering::Relaxed);
        Ok(())
    }
}

impl AsyncUdpSocket for WgSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.outer.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let (SocketAddr::V4(dst), SocketAddr::V4(src)) = (transmit.destination, self.local) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the tunnel carries IPv4 only",
            ));
        };
        let peer = self
            .peers
            .iter()
            .find(|s| s.virtual_ip == *dst.ip() && s.present.load(Ordering::Relaxed))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("no WireGuard peer for {dst}"),
                )
            })?;
        let mut p = lock(&peer.state);
        let mut out = lock(&self.outbound);
        let Outbound { batch, plain } = &mut *out;
        batch.clear();
        let seg = transmit.segment_size.unwrap_or(transmit.contents.len());
        let sealed_seg = seg + INNER_HEADER + WG_OVERHEAD;
        for datagram in transmit.contents.chunks(seg) {
            let len = INNER_HEADER + datagram.len();
            if len > TUNNEL_MTU {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "datagram exceeds the tunnel MTU",
                ));
            }
            write_inner_header(plain, src, dst, datagram.len());
            plain[INNER_HEADER..len].copy_from_slice(datagram);
            let at = batch.len();
            // Room for len + 32, and at least for a handshake initiation.
            batch.resize(at + (len + WG_OVERHEAD).max(HANDSHAKE_ROOM), 0);
            let WgPeer {
                tunnel,
                initiations,
                endpoint,
                ..
            } = &mut *p;
            let endpoint = *endpoint;
            let sealed = tunnel
                .seal(&plain[..len], &mut batch[at..], &mut |pkt| {
                    // No session yet: the data waits and this is a handshake initiation.
                    *initiations += 1;
                    self.send_outer(endpoint, pkt);
                })
                .map_err(|e| io::Error::other(format!("WireGuard: {e}")))?;
            match sealed {
                // Neither library pads a data packet it seals at once, so a batch of equal
                // QUIC segments stays a valid GSO batch.
                Some(n) if n == len + WG_OVERHEAD => batch.truncate(at + n),
                Some(n) => {
                    batch.truncate(at + n);
                    let packet = batch.split_off(at);
                    self.send_outer(endpoint, &packet);
                }
                None => batch.truncate(at),
            }
        }
        if !batch.is_empty() {
            let gso = (batch.len() > sealed_seg).then_some(sealed_seg);
            self.send_outer_batch(p.endpoint, batch, gso);
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut guard = lock(&self.inbound);
        let Inbound {
            ready,
            recv_bufs,
            out_buf,
        } = &mut *guard;
        let room = bufs.len().min(meta.len());
        let local_ip = self.local.ip();
        loop {
            let mut n = 0;
            let mut put = |src: SocketAddr, data: &[u8], n: &mut usize| {
                let len = data.len().min(bufs[*n].len());
                bufs[*n][..len].copy_from_slice(&data[..len]);
                meta[*n] = RecvMeta {
                    addr: src,
                    len,
                    stride: len,
                    ecn: None,
                    dst_ip: Some(local_ip),
                };
                *n += 1;
            };
            while n < room {
                let Some((src, data)) = ready.pop_front() else {
                    break;
                };
                put(src, &data, &mut n);
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            let mut rmeta = [RecvMeta::default(); RECV_BATCH];
            let got = {
                // On the stack: this runs once per receive call.
                let mut bufs = recv_bufs.iter_mut();
                let mut slices: [IoSliceMut<'_>; RECV_BATCH] = std::array::from_fn(|_| {
                    // recv_bufs holds exactly RECV_BATCH buffers (WgSocket::new).
                    IoSliceMut::new(bufs.next().map_or(&mut [][..], |b| &mut b[..]))
                });
                match self.outer.poll_recv(cx, &mut slices, &mut rmeta) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(got)) => got,
                }
            };
            for (m, buf) in rmeta[..got].iter().zip(recv_bufs.iter()) {
                for seg in buf[..m.len].chunks(m.stride.max(1)) {
                    self.decapsulate(out_buf, m.addr, seg, |src, data| {
                        if n < room {
                            put(src, data, &mut n);
                        } else {
                            ready.push_back((src, data.to_vec()));
                        }
                    });
                }
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn max_transmit_segments(&self) -> usize {
        self.outer.max_transmit_segments().min(SEND_SEGMENTS)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// The virtual (tunnel) address of node `index`.
pub fn virtual_ip(index: u32) -> Ipv4Addr {
    // 198.19.0.1 for node 0; past 254 nodes (simulated networks) the third octet counts on.
    let k = index + 1;
    Ipv4Addr::new(198, 19, (k >> 8) as u8, k as u8)
}

/// Whether `ip` is a tunnel address (as opposed to a veth one).
pub fn is_virtual(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v) if v.octets()[..2] == [198, 19])
}

/// Sends `contents` on `outer`. A full socket buffer is a loss, which the transport inside
/// recovers from like any other; but a handshake message that finds the socket not writable
/// (a fresh socket is not, to tokio, until its reactor has polled it once) is sent again once
/// it is: lost, WireGuard would retry only after REKEY_TIMEOUT, 5 s.
fn send_or_retry_handshake(
    outer: &Arc<dyn AsyncUdpSocket>,
    dest: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) {
    fn transmit(
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> Transmit<'_> {
        Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }
    let Err(e) = outer.try_send(&transmit(dest, contents, segment_size)) else {
        return;
    };
    tracing::trace!("WireGuard: sending {} bytes to {dest}: {e}", contents.len());
    let handshake =
        segment_size.is_none() && contents.first().is_some_and(|&t| (1..=3).contains(&t));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if e.kind() != io::ErrorKind::WouldBlock || !handshake {
        return;
    }
    let (outer, packet) = (outer.clone(), contents.to_vec());
    runtime.spawn(async move {
        let mut poller = outer.clone().create_io_poller();
        for _ in 0..HANDSHAKE_SEND_ATTEMPTS {
            if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                .await
                .is_err()
            {
                return;
            }
            match outer.try_send(&transmit(dest, &packet, None)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                _ => return,
            }
        }
    });
}

/// How often a handshake message is offered to a socket that keeps saying it is full.
const HANDSHAKE_SEND_ATTEMPTS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh socket refuses tokio's first `try_send`; the handshake message goes out anyway.
    #[test]
    fn a_handshake_message_is_sent_when_a_fresh_socket_becomes_writable() {
        use quinn::Runtime;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let dest = receiver.local_addr().expect("addr");
        rt.block_on(async {
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let outer = quinn::TokioRuntime.wrap_udp_socket(sender).expect("wrap");
            let initiation = [1u8, 0, 0, 0, 42];
            send_or_retry_handshake(&outer, dest, &initiation, None);
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let mut buf = [0u8; 16];
        let n = receiver.recv(&mut buf).expect("the initiation arrived");
        assert_eq!(&buf[..n], &[1, 0, 0, 0, 42]);
    }

    #[test]
    fn inner_header_round_trips_with_a_valid_checksum() {
        let src = SocketAddrV4::new(virtual_ip(0), 4433);
        let dst = SocketAddrV4::new(virtual_ip(1), 4433);
        let mut p = vec![0u8; INNER_HEADER + 5];
        write_inner_header(&mut p, src, dst, 5);
        p[INNER_HEADER..].copy_from_slice(b"hello");
        let sum: u32 = p[..20]
            .chunks(2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
            .sum();
        assert_eq!(
            (sum & 0xffff) + (sum >> 16),
            0xffff,
            "header checksum verifies"
        );
        let (from, payload) = read_inner_packet(&p).expect("parses");
        assert_eq!((from, payload), (SocketAddr::V4(src), &b"hello"[..]));
        assert!(read_inner_packet(&p[..20]).is_none());
        assert!(
            is_virtual(virtual_ip(3).into()) && !is_virtual(Ipv4Addr::new(198, 18, 0, 1).into())
        );
    }
}
