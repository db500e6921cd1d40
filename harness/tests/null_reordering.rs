//! Null-crypto QUIC survives heavy reordering. Its integrity tag binds the full packet
//! number, as an AEAD would; without that, a packet delayed past the truncated packet
//! number's window decodes to the wrong number and quinn acknowledges packets never sent.
//! Two endpoints in this process talk over loopback through a socket that shuffles datagrams
//! and holds some back for hundreds of sends (there is no netem on this kernel).

use quinn::{udp::Transmit, AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use rand::{Rng, SeedableRng};
use stackbench::stack::{null, transport_config};
use std::{
    fmt,
    io::{self, IoSliceMut},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

/// Datagrams waiting to be sent late: (sends left before release, destination, datagram).
#[derive(Default)]
struct Held {
    delayed: Vec<(u32, SocketAddr, Vec<u8>)>,
    sent: u64,
    reordered: u64,
}

struct ReorderingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    held: Mutex<(Held, rand_chacha::ChaCha8Rng)>,
}

/// Datagrams sent before reordering starts.
const HANDSHAKE_SENDS: u64 = 200;

/// 28% of datagrams are overtaken by the next 1-8, and 2% by the next 150-250. A 1-byte
/// packet number decodes within ±128 of the next expected one, so a datagram d sends late
/// (128 < d < 256) decodes to a number *ahead* of anything sent: only a tag that binds the
/// full packet number rejects it.
fn delay_for(rng: &mut rand_chacha::ChaCha8Rng) -> u32 {
    match rng.gen_range(0..100) {
        0..=1 => rng.gen_range(150..=250),
        2..=29 => rng.gen_range(1..=8),
        _ => 0,
    }
}

impl fmt::Debug for ReorderingSocket {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ReorderingSocket")
    }
}

impl ReorderingSocket {
    fn send_now(&self, dest: SocketAddr, data: &[u8]) {
        let t = Transmit {
            destination: dest,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        };
        // Loopback sends only fail when the buffer is full: that is a loss, which QUIC handles.
        let _ = self.inner.try_send(&t);
    }
}

impl AsyncUdpSocket for ReorderingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let mut guard = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (held, rng) = &mut *guard;
        held.sent += 1;
        // Reorder data, not the handshake: a handshake-era datagram held for hundreds of sends
        // arrives after its connection ID is gone and draws a stateless reset, whatever the
        // crypto; that is connection-ID lifecycle, not what this test is about.
        let delay = if held.sent > HANDSHAKE_SENDS {
            delay_for(rng)
        } else {
            0
        };
        let mut release = vec![];
        if delay == 0 {
            release.push((transmit.destination, transmit.contents.to_vec()));
        } else {
            held.reordered += 1;
            held.delayed
                .push((delay, transmit.destination, transmit.contents.to_vec()));
        }
        for d in held.delayed.iter_mut() {
            d.0 -= 1;
        }
        let (due, keep): (Vec<_>, Vec<_>) = held.delayed.drain(..).partition(|d| d.0 == 0);
        held.delayed = keep;
        release.extend(due.into_iter().map(|(_, dest, data)| (dest, data)));
        drop(guard);
        for (dest, data) in release {
            self.send_now(dest, &data);
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Flushes what is held (the tail of a transfer would otherwise wait for the next send).
fn flush(sock: &ReorderingSocket) {
    let mut guard = sock.held.lock().unwrap_or_else(|p| p.into_inner());
    let out: Vec<_> = guard.0.delayed.drain(..).map(|(_, d, x)| (d, x)).collect();
    drop(guard);
    for (dest, data) in out {
        sock.send_now(dest, &data);
    }
}

fn endpoint(
    seed: u64,
    server: Option<quinn::ServerConfig>,
) -> (quinn::Endpoint, Arc<ReorderingSocket>) {
    let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let inner = TokioRuntime.wrap_udp_socket(std_sock).expect("wrap");
    let sock = Arc::new(ReorderingSocket {
        inner,
        held: Mutex::new((
            Held::default(),
            rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        )),
    });
    let ep = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        sock.clone(),
        Arc::new(TokioRuntime),
    )
    .expect("endpoint");
    (ep, sock)
}

#[test]
fn null_crypto_connection_survives_heavy_reordering() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let transport = transport_config(None);
        let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(null::NullServer));
        server_cfg.transport_config(transport.clone());
        let (server, server_sock) = endpoint(1, Some(server_cfg));
        let (client, client_sock) = endpoint(2, None);
        let mut client_cfg = quinn::ClientConfig::new(Arc::new(null::NullClient));
        client_cfg.transport_config(transport);
        let addr = server.local_addr().expect("addr");

        const OBJECTS: usize = 1000;
        const SIZE: usize = 3000; // three datagrams each
        let receiver = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("accept");
            let mut got = 0;
            while got < OBJECTS {
                let mut s = conn
                    .accept_uni()
                    .await
                    .expect("connection stays up while receiving");
                let data = s.read_to_end(SIZE * 2).await.expect("read");
                assert_eq!(data.len(), SIZE);
                // Streams are accepted in stream-ID order, so object `got` is the got-th sent.
                assert!(
                    data.iter().all(|b| *b == (got % 251) as u8),
                    "object {got} corrupted"
                );
                got += 1;
            }
            (got, conn)
        });
        let flusher = {
            let (a, b) = (client_sock.clone(), server_sock.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    flush(&a);
                    flush(&b);
                }
            })
        };
        let conn = client
            .connect_with(client_cfg, addr, "node-0")
            .expect("connect")
            .await
            .expect("handshake under reordering");
        for i in 0..OBJECTS {
            let mut s = conn.open_uni().await.expect("open");
            s.write_all(&vec![(i % 251) as u8; SIZE])
                .await
                .expect("write");
            s.finish().expect("finish");
        }
        let (got, server_conn) = tokio::time::timeout(std::time::Duration::from_secs(60), receiver)
            .await
            .expect("all objects within 60 s")
            .expect("receiver task");
        flusher.abort();
        assert_eq!(got, OBJECTS);
        assert!(
            conn.close_reason().is_none(),
            "client connection died: {:?}",
            conn.close_reason()
        );
        assert!(
            server_conn.close_reason().is_none(),
            "server connection died: {:?}",
            server_conn.close_reason()
        );
        let reordered = client_sock
            .held
            .lock()
            .map(|g| (g.0.reordered, g.0.sent))
            .unwrap_or_default();
        eprintln!(
            "datagrams reordered by the client socket: {} of {}",
            reordered.0, reordered.1
        );
        assert!(
            reordered.0 * 5 > reordered.1,
            "the test must actually reorder heavily: {reordered:?}"
        );
    });
}
