//! The header at the start of every object's stream.

/// Encoded header length in bytes; every object is at least this large.
pub const HEADER_LEN: usize = 36;
/// The class of a cold connect's first object: not a workload class (scenarios have at
/// most 255 classes, numbered from 0). Its `seq` carries the handshake mode and firing.
pub const PROBE_CLASS: u8 = 255;
const MAGIC: u16 = 0x5342; // "SB"
const VERSION: u8 = 2;

/// Who sent an object, which one, and when it was *meant* to be sent (CLOCK_MONOTONIC ns,
/// shared by all nodes on one host). Latency is measured from `intended_ns`, so queueing
/// anywhere before the send cannot hide (no coordinated omission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectHeader {
    pub origin: u16,
    pub class: u8,
    /// Total object length including this header.
    pub len: u32,
    pub seq: u64,
    pub intended_ns: u64,
    /// Links crossed to reach the receiver: 1 from the origin, one more per relay.
    pub hops: u8,
    /// When the last hop's sender handed the object to its stack (CLOCK_MONOTONIC ns): the
    /// receiver's per-hop latency starts here.
    pub sent_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("object header has bad magic {0:#06x}; the peer is not a stackbench node")]
    Magic(u16),
    #[error("object header version {0} is not supported (expected {VERSION})")]
    Version(u8),
    #[error("object header claims length {0}, shorter than the header itself")]
    Length(u32),
}

impl ObjectHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        b[2] = VERSION;
        b[3] = self.class;
        b[4..6].copy_from_slice(&self.origin.to_be_bytes());
        b[6] = self.hops;
        // b[7] reserved
        b[8..12].copy_from_slice(&self.len.to_be_bytes());
        b[12..20].copy_from_slice(&self.seq.to_be_bytes());
        b[20..28].copy_from_slice(&self.intended_ns.to_be_bytes());
        b[28..36].copy_from_slice(&self.sent_ns.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, HeaderError> {
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let be64 = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        if be16(0) != MAGIC {
            return Err(HeaderError::Magic(be16(0)));
        }
        if b[2] != VERSION {
            return Err(HeaderError::Version(b[2]));
        }
        let len = be32(8);
        if (len as usize) < HEADER_LEN {
            return Err(HeaderError::Length(len));
        }
        Ok(ObjectHeader {
            class: b[3],
            origin: be16(4),
            len,
            seq: be64(12),
            intended_ns: be64(20),
            hops: b[6],
            sent_ns: be64(28),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h = ObjectHeader {
            origin: 199,
            class: 3,
            len: 65536,
            seq: 1 << 40,
            intended_ns: 123_456_789_012,
            hops: 3,
            sent_ns: 123_456_790_000,
        };
        assert_eq!(ObjectHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn rejects_garbage() {
        let h = ObjectHeader {
            origin: 1,
            class: 0,
            len: 100,
            seq: 1,
            intended_ns: 1,
            hops: 1,
            sent_ns: 1,
        };
        let mut b = h.encode();
        b[0] = 0;
        assert!(matches!(
            ObjectHeader::decode(&b),
            Err(HeaderError::Magic(_))
        ));
        let mut b = h.encode();
        b[2] = 9;
        assert_eq!(ObjectHeader::decode(&b), Err(HeaderError::Version(9)));
        let b = ObjectHeader { len: 10, ..h }.encode();
        assert_eq!(ObjectHeader::decode(&b), Err(HeaderError::Length(10)));
    }
}
