//! Parsers of the command line's values, and the two value types whose defaults print
//! the way a person writes them (`16MiB`, `10s`), so that `--help` shows the
//! library's default in the unit the option takes.

use std::fmt;
use std::time::Duration;

/// A size in bytes, read by [`parse_bytes`] and shown in the largest binary unit that
/// divides it (`16MiB`, `4096`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Bytes {
    pub fn of(n: usize) -> Bytes {
        Bytes(u64::try_from(n).unwrap_or(u64::MAX))
    }
    /// For the library's `usize` limits (a value beyond the address space means no limit).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A duration, shown in whole seconds or milliseconds when it is one (`300s`, not
/// humantime's `5m`: the unit the option's examples use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn from_nanos(ns: u64) -> Dur {
        Dur(Duration::from_nanos(ns))
    }
    pub fn ns(self) -> u64 {
        duration_ns(self.0)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}", humantime::format_duration(d))
        }
    }
}

pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration that must be longer than zero (a zero timeout or interval would make
/// every PING a timeout, or poll without pause).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); e.g. 500ms, 10s, 2m"))?;
    if d.is_zero() {
        return Err("must be longer than 0 (e.g. 500ms, 10s)".into());
    }
    Ok(d)
}

pub fn parse_positive_dur(s: &str) -> Result<Dur, String> {
    parse_positive_duration(s).map(Dur)
}

/// A duration where 0 means "none" (a reorder window, a join window).
pub fn parse_dur(s: &str) -> Result<Dur, String> {
    humantime::parse_duration(s)
        .map(Dur)
        .map_err(|e| format!("{s:?} is not a duration ({e}); e.g. 0, 500ms, 2s"))
}

/// A count of at least 1 (a cap of 0 would keep nothing).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("{n} is out of range: give 1 or more")),
        Err(_) => Err(format!("{s:?} is not a whole number (give 1 or more)")),
    }
}

/// Threads: 0 means one per core.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 0 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!(
            "{n} is out of range: give 0 (one per core) or a number of threads"
        )),
        Err(_) => Err(format!(
            "{s:?} is not a whole number (0 = one per core, or 1, 2, ...)"
        )),
    }
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (1..=65535).contains(&n) => {
            u16::try_from(n).map_err(|_| format!("{n} is not a port"))
        }
        Ok(n) => Err(format!("{n} is out of range: a port is 1 to 65535")),
        Err(_) => Err(format!("{s:?} is not a port number (1 to 65535)")),
    }
}

/// Parses sizes like `4096`, `64KiB`, `16MiB`, `1GiB`, `10MB`, `1.5 GiB` (parse-size:
/// KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024, units in any case).
pub fn parse_bytes(s: &str) -> Result<Bytes, String> {
    parse_size::parse_size(s.trim()).map(Bytes).map_err(|e| match e {
        parse_size::Error::PosOverflow => format!("{s:?} is too large"),
        _ => format!("{s:?} is not a size: a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 4096, 64KiB, 16MiB"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096"), Ok(Bytes(4096)));
        assert_eq!(parse_bytes("16MiB"), Ok(Bytes(16 << 20)));
        assert_eq!(parse_bytes("10MB"), Ok(Bytes(10_000_000)));
        assert_eq!(parse_bytes("64kib"), Ok(Bytes(64 << 10)));
        assert_eq!(parse_bytes("1 GiB"), Ok(Bytes(1 << 30)));
        assert!(parse_bytes("x").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("16XB").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
    }

    /// clap prints a default with `Display` and reads it back with the parser: the two
    /// must agree, in the unit a person would write.
    #[test]
    fn shown_values_read_back() {
        for (n, shown) in [
            (16u64 << 20, "16MiB"),
            (1 << 30, "1GiB"),
            (4096, "4KiB"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(Bytes(n).to_string(), shown);
            assert_eq!(parse_bytes(shown), Ok(Bytes(n)));
        }
        for (d, shown) in [
            (Duration::from_secs(300), "300s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1500), "1ms 500us"),
        ] {
            assert_eq!(Dur(d).to_string(), shown);
            assert_eq!(parse_dur(shown), Ok(Dur(d)));
        }
    }
}
