//! Latency histograms as the results and the control protocol carry them: HdrHistogram
//! V2 compressed, base64 (the payload format of HdrHistogram interval logs). Decoding
//! takes what a node sends, so it refuses histograms no node of this build makes rather
//! than allocating whatever a header asks.

use base64::Engine;
use hdrhistogram::{
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
    Histogram,
};

/// Highest recordable latency: 10 minutes in µs.
pub const MAX_US: u64 = 600_000_000;
/// Significant digits of every latency histogram.
const SIGNIFICANT: u8 = 3;
/// The longest encoded histogram accepted: a full one of this build's configuration is a
/// few hundred KiB of base64.
const MAX_ENCODED: usize = 4 << 20;

/// A latency histogram in µs with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // 1..MAX_US with 3 significant figures is a valid configuration.
    Histogram::new_with_bounds(1, MAX_US, SIGNIFICANT)
        .unwrap_or_else(|_| unreachable!("static bounds"))
}

/// Records `value_us`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, value_us: u64) {
    h.saturating_record(value_us.clamp(1, MAX_US));
}

#[derive(Debug, thiserror::Error)]
pub enum HistogramCodecError {
    #[error("histogram encoding failed: {0}")]
    Encode(String),
    #[error("histogram decoding failed: {0}")]
    Decode(String),
}

pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, HistogramCodecError> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| HistogramCodecError::Encode(format!("{e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// Decodes a histogram this build's nodes encode, refusing anything larger.
pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, HistogramCodecError> {
    let bad = |what: String| HistogramCodecError::Decode(what);
    if s.len() > MAX_ENCODED {
        return Err(bad(format!(
            "{} bytes of base64, above {MAX_ENCODED}",
            s.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| bad(e.to_string()))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| bad(format!("{e:?}")))?;
    if h.high() > MAX_US || h.low() < 1 || h.sigfig() > SIGNIFICANT {
        return Err(bad(format!(
            "range {}..{} with {} significant digits; this build records 1..{MAX_US} with {SIGNIFICANT}",
            h.low(),
            h.high(),
            h.sigfig()
        )));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_round_trip_and_garbage_is_refused() {
        let mut h = new_histogram();
        for v in [1, 50, 75, 1_000, 250_000, MAX_US * 2] {
            record(&mut h, v);
        }
        let back = decode_histogram(&encode_histogram(&h).expect("encodes")).expect("decodes");
        assert_eq!((back.len(), back.max()), (6, h.max()));
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert!(back.max() >= MAX_US - MAX_US / 1000, "clamped into range");
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
        let wide = Histogram::<u64>::new_with_bounds(1, u64::MAX / 2, 3).expect("valid");
        let e = decode_histogram(&encode_histogram(&wide).expect("encodes"))
            .expect_err("a range no node records");
        assert!(e.to_string().contains("this build records"), "{e}");
    }
}
