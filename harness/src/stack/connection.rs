//! What the node runtime sees of a transport: an endpoint that dials and accepts, and
//! connections that carry objects, each at its class's priority. QUIC (quinn) gives each
//! object a uni stream of its own; SCTP (usrsctp or the kernel's) a message on the stream of
//! its priority.

use super::sctp::endpoint::{Ended, Message, SctpConn, SctpEndpoint};
use super::sctp_kernel::{KernelSctpConn, KernelSctpEndpoint};
use super::Dial;
use crate::workload::{ObjectHeader, HEADER_LEN};
use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use std::{future::Future, future::IntoFuture, net::SocketAddr, pin::Pin};

/// A node's endpoint on one stack.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Quic(quinn::Endpoint),
    Sctp(SctpEndpoint),
    KernelSctp(KernelSctpEndpoint),
}

/// A connection to one peer.
#[derive(Debug, Clone)]
pub enum Conn {
    Quic(quinn::Connection),
    Sctp(SctpConn),
    KernelSctp(KernelSctpConn),
}

/// A connection a peer opened, not yet accepted.
pub enum Incoming {
    Quic(Box<quinn::Incoming>),
    Sctp(SctpConn),
    KernelSctp(KernelSctpConn),
}

/// A dial under way.
pub enum Connecting {
    Quic(quinn::Connecting),
    Sctp(Pin<Box<dyn Future<Output = Result<Conn>>>>),
}

/// An object sent, whose acknowledgement can be awaited.
pub enum Sent {
    Quic(quinn::SendStream),
    Sctp(SctpConn),
    KernelSctp(KernelSctpConn),
}

/// An object arriving: a QUIC stream still to be read, or a whole SCTP message.
pub enum Arriving {
    Quic(quinn::RecvStream),
    Sctp(Message),
}

/// An object that arrived: its header, how many bytes came and when the last did.
#[derive(Debug)]
pub struct Arrived {
    pub header: ObjectHeader,
    pub bytes: u64,
    pub at_ns: u64,
}

/// A connection's transport counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnStats {
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
    pub udp_tx_datagrams: u64,
    pub udp_rx_datagrams: u64,
    pub min_rtt_us: Option<u64>,
}

impl Endpoint {
    /// Starts dialling the peer at `addr`: over QUIC with `dial`'s configuration (resuming
    /// a session where `resume` asks and the stack can).
    pub fn connect(
        &self,
        dial: Option<&Dial>,
        resume: bool,
        addr: SocketAddr,
    ) -> Result<Connecting> {
        match self {
            Endpoint::Quic(ep) => {
                let d = dial.ok_or_else(|| anyhow!("no QUIC configuration to dial {addr}"))?;
                let config = match (&d.resuming, resume) {
                    (Some(r), true) => r.clone(),
                    _ => d.config.clone(),
                };
                Ok(Connecting::Quic(ep.connect_with(
                    config,
                    addr,
                    &d.server_name,
                )?))
            }
            Endpoint::Sctp(ep) => {
                let f = ep.connect(addr)?;
                Ok(Connecting::Sctp(Box::pin(async move {
                    Ok(Conn::Sctp(f.await?))
                })))
            }
            Endpoint::KernelSctp(ep) => {
                let f = ep.connect(addr)?;
                Ok(Connecting::Sctp(Box::pin(async move {
                    Ok(Conn::KernelSctp(f.await?))
                })))
            }
        }
    }

    /// The next connection a peer opened, or `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Incoming> {
        match self {
            Endpoint::Quic(ep) => ep.accept().await.map(|i| Incoming::Quic(Box::new(i))),
            Endpoint::Sctp(ep) => ep.accept().await.map(Incoming::Sctp),
            Endpoint::KernelSctp(ep) => ep.accept().await.map(Incoming::KernelSctp),
        }
    }

    /// Closes every connection (as churn does) and accepts no more.
    pub fn close(&self, code: u32, reason: &[u8]) {
        match self {
            Endpoint::Quic(ep) => ep.close(code.into(), reason),
            Endpoint::Sctp(ep) => ep.close(),
            Endpoint::KernelSctp(ep) => ep.close(),
        }
    }

    /// Waits, at most `within`, for closed connections to finish, so the socket is free.
    pub async fn wait_idle(&self, within: std::time::Duration) {
        match self {
            Endpoint::Quic(ep) => {
                let _ = tokio::time::timeout(within, ep.wait_idle()).await;
            }
            Endpoint::Sctp(ep) => ep.wait_idle(within).await,
            Endpoint::KernelSctp(ep) => ep.wait_idle(within).await,
        }
    }
}

impl Incoming {
    pub fn remote_address(&self) -> SocketAddr {
        match self {
            Incoming::Quic(i) => i.remote_address(),
            Incoming::Sctp(c) => c.remote(),
            Incoming::KernelSctp(c) => c.remote(),
        }
    }

    /// Turns the connection away.
    pub fn refuse(self) {
        match self {
            Incoming::Quic(i) => i.refuse(),
            Incoming::Sctp(c) => c.close(),
            Incoming::KernelSctp(c) => c.close(),
        }
    }

    /// Completes the handshake; with `early`, QUIC accepts 0-RTT data as it arrives.
    pub async fn accept(self, early: bool) -> Result<Conn> {
        match self {
            Incoming::Quic(i) => {
                let c = i.accept()?;
                let c = match early {
                    true => match c.into_0rtt() {
                        Ok((conn, _)) => conn,
                        Err(c) => c.await?,
                    },
                    false => c.await?,
                };
                Ok(Conn::Quic(c))
            }
            Incoming::Sctp(c) => Ok(Conn::Sctp(c)),
            Incoming::KernelSctp(c) => Ok(Conn::KernelSctp(c)),
        }
    }
}

impl Connecting {
    /// The connection at once, for 0-RTT (QUIC with a session ticket only), with what says
    /// whether the early data was accepted; otherwise the dial back.
    pub fn into_0rtt(self) -> Result<(Conn, quinn::ZeroRttAccepted), Connecting> {
        match self {
            Connecting::Quic(c) => c
                .into_0rtt()
                .map(|(c, a)| (Conn::Quic(c), a))
                .map_err(Connecting::Quic),
            other => Err(other),
        }
    }
}

impl IntoFuture for Connecting {
    type Output = Result<Conn>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Conn>>>>;
    fn into_future(self) -> Self::IntoFuture {
        match self {
            Connecting::Quic(c) => Box::pin(async move { Ok(Conn::Quic(c.await?)) }),
            Connecting::Sctp(f) => f,
        }
    }
}

impl Conn {
    /// Stable while the connection lives, and distinct from every other live one's.
    pub fn id(&self) -> usize {
        match self {
            Conn::Quic(c) => c.stable_id(),
            Conn::Sctp(c) => c.id(),
            Conn::KernelSctp(c) => c.id(),
        }
    }

    /// Closes the connection on purpose (churn), with `code` where the transport carries
    /// one.
    pub fn close(&self, code: u32, reason: &[u8]) {
        match self {
            Conn::Quic(c) => c.close(code.into(), reason),
            Conn::Sctp(c) => c.close(),
            Conn::KernelSctp(c) => c.close(),
        }
    }

    /// Whether the connection was closed on purpose, here or by the peer (for QUIC, with
    /// `code`; SCTP peers only ever shut associations down on purpose).
    pub fn closed_on_purpose(&self, code: u32) -> bool {
        match self {
            Conn::Quic(c) => match c.close_reason() {
                Some(quinn::ConnectionError::LocallyClosed) => true,
                Some(quinn::ConnectionError::ApplicationClosed(a)) => a.error_code == code.into(),
                _ => false,
            },
            Conn::Sctp(_) | Conn::KernelSctp(_) => matches!(
                self.sctp_ended(),
                Some(Ended::Locally | Ended::PeerShutdown)
            ),
        }
    }

    /// Whether the peer reset the connection (as a restarted peer's new endpoint does).
    pub fn was_reset(&self) -> bool {
        match self {
            Conn::Quic(c) => matches!(c.close_reason(), Some(quinn::ConnectionError::Reset)),
            Conn::Sctp(_) | Conn::KernelSctp(_) => self.sctp_ended() == Some(Ended::Lost),
        }
    }

    /// How the connection ended, as its transport put it; `None` while it is open.
    pub fn end_reason(&self) -> Option<String> {
        match self {
            Conn::Quic(c) => c.close_reason().map(|e| e.to_string()),
            Conn::Sctp(_) | Conn::KernelSctp(_) => self.sctp_ended().map(|e| {
                match e {
                    Ended::Locally => "closed locally",
                    Ended::PeerShutdown => "shut down by the peer",
                    Ended::Lost => "association lost (aborted or timed out)",
                    Ended::Refused => "association refused",
                }
                .into()
            }),
        }
    }

    /// Starts a QUIC key update, and says whether there was one: SCTP has no keys.
    pub fn force_key_update(&self) -> bool {
        match self {
            Conn::Quic(c) => {
                c.force_key_update();
                true
            }
            Conn::Sctp(_) | Conn::KernelSctp(_) => false,
        }
    }

    /// How an SCTP association ended, if it has (`None` for QUIC).
    fn sctp_ended(&self) -> Option<Ended> {
        match self {
            Conn::Quic(_) => None,
            Conn::Sctp(c) => c.ended(),
            Conn::KernelSctp(c) => c.ended(),
        }
    }

    /// Sends one object at `priority` (higher first): its header, then `body`.
    pub async fn send_object(&self, priority: i32, h: &ObjectHeader, body: Bytes) -> Result<Sent> {
        match self {
            Conn::Quic(c) => {
                let mut s = c.open_uni().await?;
                s.set_priority(priority)?;
                s.write_all_chunks(&mut [Bytes::copy_from_slice(&h.encode()), body])
                    .await?;
                s.finish()?;
                Ok(Sent::Quic(s))
            }
            Conn::Sctp(c) => {
                let len = HEADER_LEN + body.len();
                c.send(priority, &h.encode(), len).await?;
                Ok(Sent::Sctp(c.clone()))
            }
            Conn::KernelSctp(c) => {
                let len = HEADER_LEN + body.len();
                c.send(priority, &h.encode(), len).await?;
                Ok(Sent::KernelSctp(c.clone()))
            }
        }
    }

    /// The next object arriving, or `None` once the connection has ended.
    pub async fn next_object(&self) -> Option<Arriving> {
        match self {
            Conn::Quic(c) => c.accept_uni().await.ok().map(Arriving::Quic),
            Conn::Sctp(c) => c.next_message().await.map(Arriving::Sctp),
            Conn::KernelSctp(c) => c.next_message().await.map(Arriving::Sctp),
        }
    }

    pub fn stats(&self) -> ConnStats {
        match self {
            Conn::Quic(c) => {
                let st = c.stats();
                ConnStats {
                    sent_packets: st.path.sent_packets,
                    lost_packets: st.path.lost_packets,
                    congestion_events: st.path.congestion_events,
                    udp_tx_datagrams: st.udp_tx.datagrams,
                    udp_rx_datagrams: st.udp_rx.datagrams,
                    min_rtt_us: Some(st.path.min_rtt.as_micros() as u64),
                }
            }
            Conn::Sctp(c) => sctp_stats(c.stats()),
            Conn::KernelSctp(c) => sctp_stats(c.stats()),
        }
    }
}

/// An SCTP association's counters: its packets (or datagrams) and smoothed RTT, ms.
fn sctp_stats((d, srtt_ms): (super::sctp::endpoint::Datagrams, Option<u32>)) -> ConnStats {
    ConnStats {
        sent_packets: d.sent,
        udp_tx_datagrams: d.sent,
        udp_rx_datagrams: d.received,
        min_rtt_us: srtt_ms.map(|ms| u64::from(ms) * 1000),
        ..Default::default()
    }
}

impl Sent {
    /// Waits until the peer has acknowledged the object (for SCTP: everything the
    /// association has sent).
    pub async fn acknowledged(self) -> Result<()> {
        match self {
            Sent::Quic(s) => {
                s.stopped().await?;
                Ok(())
            }
            Sent::Sctp(c) => Ok(c.acknowledged().await?),
            Sent::KernelSctp(c) => Ok(c.acknowledged().await?),
        }
    }
}

impl Arriving {
    /// Reads the object to its end.
    pub async fn read(&mut self) -> Result<Arrived> {
        match self {
            Arriving::Quic(rs) => {
                let mut hdr = [0u8; HEADER_LEN];
                rs.read_exact(&mut hdr).await?;
                let header = ObjectHeader::decode(&hdr)?;
                let mut bytes = HEADER_LEN as u64;
                while bytes < header.len as u64 {
                    match rs.read_chunk(usize::MAX, true).await? {
                        Some(chunk) => bytes += chunk.bytes.len() as u64,
                        None => break,
                    }
                }
                Ok(Arrived {
                    header,
                    bytes,
                    at_ns: crate::metrics::monotonic_ns(),
                })
            }
            Arriving::Sctp(m) => {
                if m.head.len() < HEADER_LEN {
                    bail!(
                        "a {}-byte message on stream {} is shorter than an object header",
                        m.len,
                        m.stream
                    );
                }
                let mut hdr = [0u8; HEADER_LEN];
                hdr.copy_from_slice(&m.head[..HEADER_LEN]);
                Ok(Arrived {
                    header: ObjectHeader::decode(&hdr)?,
                    bytes: m.len,
                    at_ns: m.at_ns,
                })
            }
        }
    }

    /// Consumes the end of the object (QUIC's FIN), so its stream closes cleanly instead of
    /// being stopped.
    pub async fn finish(self) -> Result<()> {
        if let Arriving::Quic(mut rs) = self {
            while rs.read_chunk(usize::MAX, true).await?.is_some() {}
        }
        Ok(())
    }
}
