//! A quinn [`AsyncUdpSocket`] that moves one datagram per `sendto` / `recvfrom` and sets no
//! socket option beyond its buffer sizes: what a network simulator supports. Shadow answers
//! quinn-udp's IP_PKTINFO, IP_RECVTOS, IP_MTU_DISCOVER, UDP_GRO and UDP_SEGMENT with
//! ENOPROTOOPT and has no `recvmmsg`, so stock quinn dies there at start-up.
//!
//! No batching, no ECN, no destination address: the stacks above see the same datagrams,
//! one at a time.

use quinn::{
    udp::{RecvMeta, Transmit},
    AsyncUdpSocket, UdpPoller,
};
use std::{
    io::{self, IoSliceMut},
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

/// How a node's UDP sockets move datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DatagramIo {
    /// quinn-udp's: batched sends and receives (GSO, GRO, `recvmmsg`), packet info and ECN
    /// where the kernel has them. What a deployment runs.
    #[default]
    Batched,
    /// One `sendto` / `recvfrom` per datagram and no socket option beyond buffer sizes: what
    /// a network simulator (Shadow) supports.
    Plain,
}

#[derive(Debug)]
pub struct PlainUdpSocket {
    io: Arc<tokio::net::UdpSocket>,
}

impl PlainUdpSocket {
    /// Wraps a bound socket; needs a tokio runtime with I/O enabled.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<PlainUdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(PlainUdpSocket {
            io: Arc::new(tokio::net::UdpSocket::from_std(socket)?),
        })
    }
}

/// Wakes quinn once the socket can take a datagram again.
#[derive(Debug)]
struct Writable(Arc<tokio::net::UdpSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for PlainUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self.io.clone()))
    }

    fn try_send(&self, t: &Transmit) -> io::Result<()> {
        // quinn batches only up to max_transmit_segments, which is 1 here; a segmented
        // transmit from another caller is sent a segment at a time all the same.
        let segment = t.segment_size.unwrap_or(t.contents.len()).max(1);
        for datagram in t.contents.chunks(segment) {
            self.io.try_send_to(datagram, t.destination)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *m = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        // No IP_MTU_DISCOVER: the kernel (or simulator) may fragment.
        true
    }
}

/// A UDP socket bound to `addr` with the stacks' buffer sizes, moving datagrams as `io`
/// says; and the effective receive buffer size.
pub fn bind(addr: SocketAddr, io: DatagramIo) -> io::Result<(Arc<dyn AsyncUdpSocket>, usize)> {
    let (socket, rcvbuf) = super::bind_udp(addr)?;
    let socket: Arc<dyn AsyncUdpSocket> = match io {
        DatagramIo::Batched => quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)?,
        DatagramIo::Plain => Arc::new(PlainUdpSocket::new(socket)?),
    };
    Ok((socket, rcvbuf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::tls;

    /// A QUIC connection and a stream both ways over two plain sockets: quinn works with
    /// one datagram per call and no socket options.
    #[test]
    fn quic_runs_over_plain_sockets() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
            let (server_sock, _) = bind(any, DatagramIo::Plain).expect("bound");
            let (client_sock, _) = bind(any, DatagramIo::Plain).expect("bound");
            let server_addr = server_sock.local_addr().expect("its address");
            let (a, b) = (
                tls::NodeIdentity::generate(0).expect("keygen"),
                tls::NodeIdentity::generate(1).expect("keygen"),
            );
            let pin = |id: &tls::NodeIdentity, index| tls::PinnedPeer {
                index,
                spki: id.spki.clone(),
            };
            let server_config = quinn::ServerConfig::with_crypto(
                tls::server_crypto(&b, vec![pin(&a, 0)]).expect("server crypto"),
            );
            let server = quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                Some(server_config),
                server_sock,
                Arc::new(quinn::TokioRuntime),
            )
            .expect("a server");
            let client_config = quinn::ClientConfig::new(
                tls::client_crypto(&a, pin(&b, 1)).expect("client crypto"),
            );
            let client = quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                None,
                client_sock,
                Arc::new(quinn::TokioRuntime),
            )
            .expect("a client");
            let body = vec![7u8; 200_000];
            let serve = async {
                let conn = server
                    .accept()
                    .await
                    .expect("a dial")
                    .await
                    .expect("accepted");
                let (mut send, mut recv) = conn.accept_bi().await.expect("a stream");
                let got = recv.read_to_end(1 << 20).await.expect("read");
                send.write_all(&got[..10]).await.expect("echo");
                send.finish().expect("finish");
                conn.closed().await;
                got.len()
            };
            let dial = async {
                let conn = client
                    .connect_with(client_config, server_addr, &tls::server_name(1))
                    .expect("dial")
                    .await
                    .expect("connected");
                let (mut send, mut recv) = conn.open_bi().await.expect("a stream");
                send.write_all(&body).await.expect("sent");
                send.finish().expect("finish");
                let back = recv.read_to_end(100).await.expect("the echo");
                conn.close(0u32.into(), b"done");
                back
            };
            let (len, back) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                tokio::join!(serve, dial)
            })
            .await
            .expect("finishes within 10 s");
            assert_eq!(
                len,
                body.len(),
                "200 kB cross in datagrams of one call each"
            );
            assert_eq!(back, vec![7u8; 10]);
        });
    }
}
