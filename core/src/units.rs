//! Quantities with units, parsed from the strings people write in scenario files
//! ("50ms", "20Mbit", "1KiB", "50/s") and written back in the same canonical form,
//! so a resolved scenario reads like the original.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr, time::Duration};

/// A unit string that could not be parsed; the message lists what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {hint}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    hint: &'static str,
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let value: f64 = s[..end].parse().ok()?;
    value.is_finite().then_some((value, s[end..].trim()))
}

macro_rules! serde_via_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// A time span such as "50ms", "1.5s", "200us", "2m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = || UnitError {
            what: "duration",
            input: s.to_owned(),
            hint: "expected a number followed by ns, us, ms, s or m, e.g. \"50ms\"",
        };
        let (v, unit) = split_number(s).ok_or_else(err)?;
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" | "min" => 60e9,
            _ => return Err(err()),
        };
        Ok(Dur(Duration::from_nanos((v * nanos_per).round() as u64)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ns = self.0.as_nanos();
        match ns {
            0 => write!(f, "0s"),
            n if n % 1_000_000_000 == 0 => write!(f, "{}s", n / 1_000_000_000),
            n if n % 1_000_000 == 0 => write!(f, "{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => write!(f, "{}us", n / 1_000),
            n => write!(f, "{n}ns"),
        }
    }
}
serde_via_str!(Dur, "a duration such as \"50ms\"");

/// A size in bytes such as "200B", "1KiB", "64KiB", "1MiB" or "1.5kB" (SI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = || UnitError {
            what: "size",
            input: s.to_owned(),
            hint: "expected a number followed by B, kB, KiB, MB, MiB, GB or GiB, e.g. \"1KiB\"",
        };
        let (v, unit) = split_number(s).ok_or_else(err)?;
        let mult = match unit {
            "B" => 1.0,
            "kB" | "KB" => 1e3,
            "KiB" => 1024.0,
            "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            "GB" => 1e9,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err()),
        };
        Ok(ByteSize((v * mult).round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", b >> 10)
        } else {
            write!(f, "{b}B")
        }
    }
}
serde_via_str!(ByteSize, "a size such as \"1KiB\"");

/// A link rate in bits per second such as "20Mbit", "1Gbit", "500kbit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BitRate(pub u64);

impl BitRate {
    pub fn bytes_per_sec(self) -> f64 {
        self.0 as f64 / 8.0
    }
}

impl FromStr for BitRate {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = || UnitError {
            what: "bit rate",
            input: s.to_owned(),
            hint: "expected a number followed by bit, kbit, Mbit or Gbit, e.g. \"20Mbit\"",
        };
        let (v, unit) = split_number(s).ok_or_else(err)?;
        let mult = match unit {
            "bit" => 1.0,
            "kbit" | "Kbit" => 1e3,
            "Mbit" | "mbit" => 1e6,
            "Gbit" | "gbit" => 1e9,
            _ => return Err(err()),
        };
        let bits = (v * mult).round() as u64;
        if bits == 0 {
            return Err(UnitError {
                what: "bit rate",
                input: s.to_owned(),
                hint: "a rate must be above zero",
            });
        }
        Ok(BitRate(bits))
    }
}

impl fmt::Display for BitRate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let b = self.0;
        match b {
            b if b % 1_000_000_000 == 0 => write!(f, "{}Gbit", b / 1_000_000_000),
            b if b % 1_000_000 == 0 => write!(f, "{}Mbit", b / 1_000_000),
            b if b % 1_000 == 0 => write!(f, "{}kbit", b / 1_000),
            b => write!(f, "{b}bit"),
        }
    }
}
serde_via_str!(BitRate, "a bit rate such as \"20Mbit\"");

/// An event rate such as "50/s" or "2/ms", stored as events per second.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct EventRate(pub f64);

impl FromStr for EventRate {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = |hint| UnitError {
            what: "rate",
            input: s.to_owned(),
            hint,
        };
        let (v, unit) =
            split_number(s).ok_or_else(|| err("expected events per time, e.g. \"50/s\""))?;
        let per_sec = match unit {
            "/s" => v,
            "/ms" => v * 1e3,
            "/m" | "/min" => v / 60.0,
            _ => return Err(err("expected a unit of /s, /ms or /min, e.g. \"50/s\"")),
        };
        if per_sec <= 0.0 {
            return Err(err("a rate must be above zero"));
        }
        Ok(EventRate(per_sec))
    }
}

impl fmt::Display for EventRate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}
serde_via_str!(EventRate, "a rate such as \"50/s\"");

/// A probability or share written as a percentage, such as "1%", "0.5%" or "100%"; stored
/// as a fraction in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = |hint| UnitError {
            what: "percentage",
            input: s.to_owned(),
            hint,
        };
        let (v, unit) =
            split_number(s).ok_or_else(|| err("expected a number followed by %, e.g. \"1%\""))?;
        if unit != "%" {
            return Err(err("expected a number followed by %, e.g. \"1%\""));
        }
        if v > 100.0 {
            return Err(err("a percentage must be between 0% and 100%"));
        }
        Ok(Percent(v / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Round away float noise from the /100 so "0.1%" prints back as "0.1%".
        let pct = (self.0 * 100.0 * 1e9).round() / 1e9;
        write!(f, "{pct}%")
    }
}
serde_via_str!(Percent, "a percentage such as \"1%\"");

/// An object size distribution: "1KiB" (fixed) or "1KiB..4KiB" (uniform, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeDist {
    pub min: ByteSize,
    pub max: ByteSize,
}

impl FromStr for SizeDist {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (a.parse()?, b.parse()?),
            None => {
                let v: ByteSize = s.parse()?;
                (v, v)
            }
        };
        if min > max {
            return Err(UnitError {
                what: "size range",
                input: s.to_owned(),
                hint: "the lower bound must not exceed the upper bound",
            });
        }
        Ok(SizeDist { min, max })
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}
serde_via_str!(
    SizeDist,
    "a size such as \"1KiB\" or a range \"1KiB..4KiB\""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        assert_eq!("50ms".parse::<Dur>(), Ok(Dur(Duration::from_millis(50))));
        assert_eq!("1.5s".parse::<Dur>(), Ok(Dur(Duration::from_millis(1500))));
        assert_eq!("200us".parse::<Dur>(), Ok(Dur(Duration::from_micros(200))));
        assert_eq!("2m".parse::<Dur>(), Ok(Dur(Duration::from_secs(120))));
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
        assert!("50".parse::<Dur>().is_err());
        assert!("fast".parse::<Dur>().is_err());
        assert!("5 parsecs".parse::<Dur>().is_err());
    }

    #[test]
    fn sizes_distinguish_binary_and_si() {
        assert_eq!("1KiB".parse::<ByteSize>(), Ok(ByteSize(1024)));
        assert_eq!("1kB".parse::<ByteSize>(), Ok(ByteSize(1000)));
        assert_eq!(
            "64KiB".parse::<ByteSize>().map(|b| b.to_string()),
            Ok("64KiB".into())
        );
        assert_eq!(
            "200B".parse::<ByteSize>().map(|b| b.to_string()),
            Ok("200B".into())
        );
        assert!("1Kb".parse::<ByteSize>().is_err());
    }

    #[test]
    fn bit_rates_and_event_rates() {
        assert_eq!("20Mbit".parse::<BitRate>(), Ok(BitRate(20_000_000)));
        assert_eq!(
            "1.5Gbit".parse::<BitRate>().map(|r| r.to_string()),
            Ok("1500Mbit".into())
        );
        assert!("0Mbit".parse::<BitRate>().is_err());
        assert!("20MB/s".parse::<BitRate>().is_err());
        assert_eq!("50/s".parse::<EventRate>(), Ok(EventRate(50.0)));
        assert_eq!("2/ms".parse::<EventRate>(), Ok(EventRate(2000.0)));
        assert!("0/s".parse::<EventRate>().is_err());
        assert!("50".parse::<EventRate>().is_err());
    }

    #[test]
    fn percentages_are_fractions() {
        assert_eq!("1%".parse::<Percent>(), Ok(Percent(0.01)));
        assert_eq!(
            "0.5%".parse::<Percent>().map(|p| p.to_string()),
            Ok("0.5%".into())
        );
        assert_eq!("100%".parse::<Percent>(), Ok(Percent(1.0)));
        assert!("101%".parse::<Percent>().is_err());
        assert!("0.01".parse::<Percent>().is_err());
        assert!("-1%".parse::<Percent>().is_err());
    }

    #[test]
    fn size_ranges() {
        let d: SizeDist = "1KiB..4KiB".parse().expect("valid range");
        assert_eq!((d.min.0, d.max.0), (1024, 4096));
        assert_eq!(d.to_string(), "1KiB..4KiB");
        assert!("4KiB..1KiB".parse::<SizeDist>().is_err());
    }
}
