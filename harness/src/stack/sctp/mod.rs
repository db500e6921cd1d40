//! SCTP, the seed's other candidate transport, in userspace: usrsctp (the FreeBSD stack
//! that browsers use for WebRTC data channels) over a link the harness carries: plain UDP,
//! or an in-process WireGuard tunnel. Each priority has its stream, and strict stream priority
//! (`SCTP_SS_PRIORITY`) with I-DATA (RFC 8260) lets a vote overtake a bulk message already
//! being sent; without I-DATA a message once started is sent to its end.
//!
//! sctp-proto (webrtc-rs/str0m, pure Rust) was the alternative: its 0.10 keeps one FIFO of
//! pending chunks per association and has neither a stream scheduler nor I-DATA, so it
//! cannot give a class priority.

pub mod endpoint;
pub mod engine;
pub mod ffi;
pub mod memory;
#[cfg(test)]
mod tests;

/// The largest UDP payload on a 1500-byte Ethernet link (less IPv4's 20 and UDP's 8).
pub const UDP_PAYLOAD_ON_ETHERNET: u16 = 1472;

/// Which stream carries each priority on one association: a stream per priority, numbered in
/// order of first use (shared by the usrsctp and the kernel stacks).
#[derive(Debug, Default)]
pub struct Lanes(std::cell::RefCell<std::collections::HashMap<i32, u16>>);

impl Lanes {
    /// The stream of `priority`. On its first use `assign` gives the new stream that priority
    /// (in the transport's scheduler); past `STREAMS` priorities, `too_many`.
    pub fn stream<E>(
        &self,
        priority: i32,
        too_many: E,
        assign: impl FnOnce(u16) -> Result<(), E>,
    ) -> Result<u16, E> {
        if let Some(&stream) = self.0.borrow().get(&priority) {
            return Ok(stream);
        }
        let stream = u16::try_from(self.0.borrow().len())
            .ok()
            .filter(|&n| n < endpoint::STREAMS)
            .ok_or(too_many)?;
        assign(stream)?;
        self.0.borrow_mut().insert(priority, stream);
        Ok(stream)
    }
}
