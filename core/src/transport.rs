//! QUIC transport settings shared by every stack.

/// Streams a peer may open at once: one per object in flight, so open-loop bursts never
/// wait for stream credit. Each connection pays for the table at setup (about 0.66 ms
/// here), so cold-connect scenarios may ask for less.
pub const MAX_UNI_STREAMS: u32 = 20_000;
