//! Two SCTP associations joined over one in-memory link, for tests and benchmarks (as
//! `stack::memory` joins QUIC and WireGuard pairs without sockets).

use super::engine::{tick, Link, Scheduler, SctpError, SctpSocket};
use std::sync::atomic::{AtomicU16, Ordering};

/// Each pair takes the next server port, so that no pair meets a former one's state.
static NEXT_PORT: AtomicU16 = AtomicU16::new(1024);

/// A client association and the server side it was accepted as.
pub struct SctpPair {
    pub link: Link,
    pub client: SctpSocket,
    pub server: SctpSocket,
    /// Kept open while the pair lives; it accepted `server`.
    _listener: SctpSocket,
}

impl SctpPair {
    /// Creates both sockets and runs the 4-way handshake (INIT, INIT ACK, COOKIE ECHO,
    /// COOKIE ACK) to completion on both sides.
    pub fn new(streams: u16, scheduler: Scheduler) -> Result<SctpPair, SctpError> {
        let port = NEXT_PORT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(if p >= 60_000 { 1024 } else { p + 2 })
            })
            .unwrap_or(1024);
        let link = Link::new()?;
        let listener = SctpSocket::new(streams, scheduler)?;
        listener.bind(&link, port)?;
        listener.listen()?;
        let client = SctpSocket::new(streams, scheduler)?;
        client.bind(&link, port + 1)?;
        client.connect(&link, port)?;
        for _ in 0..100 {
            link.deliver(usize::MAX)?;
            if let Some(server) = listener.accept()? {
                // The COOKIE ACK, which completes the client's side.
                while link.deliver(usize::MAX)? > 0 {}
                return Ok(SctpPair {
                    link,
                    client,
                    server,
                    _listener: listener,
                });
            }
            tick(10)?;
        }
        Err(SctpError::Handshake(
            "no association was accepted within 1 s of timers, in memory".into(),
        ))
    }
}

impl Link {
    /// Loops this link's output back into it, at most `max` packets (the rest are dropped,
    /// as a full queue would); returns how many were delivered.
    pub fn deliver(&self, max: usize) -> Result<usize, SctpError> {
        let packets = self.take_output();
        let n = packets.len().min(max);
        for p in packets.iter().take(max) {
            self.input(p)?;
        }
        Ok(n)
    }
}
