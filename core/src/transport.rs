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
        Ok(())
    }

    pub fn plan(&self) -> TransportPlan {
        TransportPlan {
            stream_credit: *self.stream_credit.get_ref(),
            initial_rtt: self.initial_rtt.get_ref().0,
        }
    }
}

/// The transport settings, resolved, as nodes receive them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportPlan {
    pub stream_credit: u32,
    pub initial_rtt: Duration,
}

impl Default for TransportPlan {
    fn default() -> Self {
        Transport::default().plan()
    }
}
