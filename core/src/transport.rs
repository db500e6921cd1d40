//! QUIC transport settings shared by every stack (`[transport]` in a scenario), so stacks
//! differ only in crypto and underlay.

use crate::units::Dur;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use toml::Spanned;

/// Streams a peer may open at once: one per object in flight, so open-loop bursts never
/// wait for stream credit. Each connection pays for the table at setup (about 0.66 ms
/// here), so cold-connect scenarios may ask for less.
pub const MAX_UNI_STREAMS: u32 = 20_000;

/// RFC 9002's initial RTT: a lost Initial is resent after about three times this.
pub const DEFAULT_INITIAL_RTT: Duration = Duration::from_millis(333);

/// `[transport]`: the QUIC settings a scenario may change.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    /// Concurrent uni streams each peer may open. The default lets open-loop bursts never
    /// wait for credit, but every connection pays about 0.66 ms to set the table up, which
    /// a cold-connect measurement would charge to every stack.
    #[serde(default = "default_stream_credit")]
    pub stream_credit: Spanned<u32>,
    /// The RTT a connection assumes before it has measured one. Its loss timer for the
    /// handshake starts from it, so it sets how soon a lost Initial is resent when many
    /// handshakes start at once.
    #[serde(default = "default_initial_rtt")]
    pub initial_rtt: Spanned<Dur>,
    /// A connection silent this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Spanned<Dur>,
    /// How often an idle connection sends a keep-alive.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Spanned<Dur>,
    /// Streams of equal priority share a connection round-robin (quinn's `send_fairness`);
    /// off, they go in order of opening.
    #[serde(default = "default_send_fairness")]
    pub send_fairness: bool,
}

fn default_idle_timeout() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(30)))
}
fn default_keep_alive() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(5)))
}
fn default_send_fairness() -> bool {
    true
}

fn default_stream_credit() -> Spanned<u32> {
    Spanned::new(0..0, MAX_UNI_STREAMS)
}
fn default_initial_rtt() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(DEFAULT_INITIAL_RTT))
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            stream_credit: default_stream_credit(),
            initial_rtt: default_initial_rtt(),
            idle_timeout: default_idle_timeout(),
            keep_alive: default_keep_alive(),
            send_fairness: default_send_fairness(),
        }
    }
}

impl Transport {
    /// Checks the values; the error carries the span of the value at fault.
    pub fn validate(&self) -> Result<(), (std::ops::Range<usize>, String)> {
        let credit = &self.stream_credit;
        if *credit.get_ref() < 16 {
            return Err((
                credit.span(),
                format!(
                    "transport.stream_credit must be at least 16, got {}",
                    credit.get_ref()
                ),
            ));
        }
        let rtt = &self.initial_rtt;
        if rtt.get_ref().0 < Duration::from_millis(1) || rtt.get_ref().0 > Duration::from_secs(10) {
            return Err((
                rtt.span(),
                format!(
                    "transport.initial_rtt must be between 1ms and 10s, got {}",
                    rtt.get_ref()
                ),
            ));
        }
        let (idle, keep) = (&self.idle_timeout, &self.keep_alive);
        if keep.get_ref().0 >= idle.get_ref().0 || keep.get_ref().0.is_zero() {
            return Err((
                keep.span(),
                format!(
                    "transport.keep_alive ({}) must be above zero and shorter than transport.idle_timeout ({})",
                    keep.get_ref(),
                    idle.get_ref()
                ),
            ));
        }
        if idle.get_ref().0 > Duration::from_secs(600) {
            return Err((
                idle.span(),
                format!(
                    "transport.idle_timeout must be at most 600s, got {}",
                    idle.get_ref()
                ),
            ));
        }
        Ok(())
    }

    pub fn plan(&self) -> TransportPlan {
        TransportPlan {
            stream_credit: *self.stream_credit.get_ref(),
            initial_rtt: self.initial_rtt.get_ref().0,
            idle_timeout: self.idle_timeout.get_ref().0,
            keep_alive: self.keep_alive.get_ref().0,
            send_fairness: self.send_fairness,
        }
    }
}

/// The transport settings, resolved, as nodes receive them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportPlan {
    pub stream_credit: u32,
    pub initial_rtt: Duration,
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    pub send_fairness: bool,
}

impl Default for TransportPlan {
    fn default() -> Self {
        Transport::default().plan()
    }
}
