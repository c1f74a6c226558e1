//! Which column of a transaction CSV holds which field, in which unit, and which words
//! its status column uses: our own format by default, anything else through a small
//! TOML mapping file, so that instrumented peers other than ours (a JXSE peer with
//! ARM-style timers writes its own log) can be read too.
//!
//! Mapping file (every section and key optional):
//!
//! ```toml
//! [columns]            # field = the column's name in the file
//! start = "begin"
//! rtt = "elapsed"
//! poller = "from"      # `poller` / `receiver` are short for `poller_name` / `receiver_name`
//! receiver = "to"
//! status = "outcome"
//! [units]              # ns, us, ms, s (numbers, decimals allowed) or iso8601 (times only)
//! start = "iso8601"
//! rtt = "ms"
//! [status]             # the file's words for each transaction status (case-insensitive)
//! ok = ["SUCCESS"]
//! timeout = ["FAILED", "TIMEOUT"]
//! ```

use std::collections::BTreeMap;

use crate::transaction::TxStatus;

/// The fields a transaction CSV can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Start,
    Stop,
    Rtt,
    PollerName,
    PollerPeerId,
    ReceiverName,
    ReceiverPeerId,
    ReceiverStatus,
    Status,
    Correlator,
    MatchMethod,
    PingBytes,
    PongBytes,
    CorrelatorOverheadBytes,
    SocketStart,
    SocketStop,
    SocketRtt,
}

/// What kind of value a field holds (and so which units it accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Time,
    Duration,
    Other,
}

impl Field {
    pub const ALL: [Field; 17] = [
        Field::Start,
        Field::Stop,
        Field::Rtt,
        Field::PollerName,
        Field::PollerPeerId,
        Field::ReceiverName,
        Field::ReceiverPeerId,
        Field::ReceiverStatus,
        Field::Status,
        Field::Correlator,
        Field::MatchMethod,
        Field::PingBytes,
        Field::PongBytes,
        Field::CorrelatorOverheadBytes,
        Field::SocketStart,
        Field::SocketStop,
        Field::SocketRtt,
    ];

    /// The field's name in a mapping file.
    pub fn key(self) -> &'static str {
        match self {
            Field::Start => "start",
            Field::Stop => "stop",
            Field::Rtt => "rtt",
            Field::PollerName => "poller_name",
            Field::PollerPeerId => "poller_peer_id",
            Field::ReceiverName => "receiver_name",
            Field::ReceiverPeerId => "receiver_peer_id",
            Field::ReceiverStatus => "receiver_status",
            Field::Status => "status",
            Field::Correlator => "correlator",
            Field::MatchMethod => "match_method",
            Field::PingBytes => "ping_bytes",
            Field::PongBytes => "pong_bytes",
            Field::CorrelatorOverheadBytes => "correlator_overhead_bytes",
            Field::SocketStart => "socket_start",
            Field::SocketStop => "socket_stop",
            Field::SocketRtt => "socket_rtt",
        }
    }

    /// The column's name in our own format (`analyze --csv`, `peer --csv`).
    pub fn default_column(self) -> &'static str {
        match self {
            Field::Start => "start_unix_ns",
            Field::Stop => "stop_unix_ns",
            Field::Rtt => "rtt_us",
            Field::Status => "transaction_status",
            Field::SocketStart => "socket_start_unix_ns",
            Field::SocketStop => "socket_stop_unix_ns",
            Field::SocketRtt => "socket_rtt_us",
            other => other.key(),
        }
    }

    fn kind(self) -> Kind {
        match self {
            Field::Start | Field::Stop | Field::SocketStart | Field::SocketStop => Kind::Time,
            Field::Rtt | Field::SocketRtt => Kind::Duration,
            _ => Kind::Other,
        }
    }

    fn default_unit(self) -> Unit {
        match self.kind() {
            Kind::Duration => Unit::Us,
            _ => Unit::Ns,
        }
    }

    fn from_key(k: &str) -> Option<Field> {
        match k {
            "poller" => Some(Field::PollerName),
            "receiver" => Some(Field::ReceiverName),
            _ => Field::ALL.into_iter().find(|f| f.key() == k),
        }
    }
}

/// The unit of a time or duration column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ns,
    Us,
    Ms,
    S,
    /// `2026-12-05T18:40:25.123456Z` (times only).
    Iso8601,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        match s {
            "ns" => Some(Unit::Ns),
            "us" | "µs" => Some(Unit::Us),
            "ms" => Some(Unit::Ms),
            "s" => Some(Unit::S),
            "iso8601" | "iso-8601" => Some(Unit::Iso8601),
            _ => None,
        }
    }

    /// Decimal digits between the unit and nanoseconds.
    fn digits_to_ns(self) -> u32 {
        match self {
            Unit::Ns | Unit::Iso8601 => 0,
            Unit::Us => 3,
            Unit::Ms => 6,
            Unit::S => 9,
        }
    }

    /// The value in nanoseconds (since the Unix epoch for times); `None` when it is not
    /// a number in this unit. Digits finer than a nanosecond are dropped.
    pub fn to_ns(self, s: &str) -> Option<u64> {
        if self == Unit::Iso8601 {
            return iso8601_ns(s);
        }
        decimal_ns(s, self.digits_to_ns())
    }
}

/// A non-negative decimal number times 10^`digits`, exactly (no float).
fn decimal_ns(s: &str, digits: u32) -> Option<u64> {
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    if w.is_empty() && f.is_empty() {
        return None;
    }
    if !w.bytes().all(|b| b.is_ascii_digit()) || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if w.is_empty() { 0 } else { w.parse().ok()? };
    let mut frac = 0u64;
    for i in 0..digits as usize {
        let d = f.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        frac = frac * 10 + d;
    }
    whole.checked_mul(10u64.pow(digits))?.checked_add(frac)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (the civil-from-days inverse
/// of Howard Hinnant's date algorithms, counting eras of 400 years).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` in nanoseconds since the Unix
/// epoch. Without an offset the time is taken as UTC. Not humantime's
/// `parse_rfc3339_weak` (already in the tree): it accepts no offset but `+00:00`, so
/// the `+01:00` and `-0130` cases tested below fail there; a date crate (jiff, chrono,
/// time) would be a new dependency for this one column format.
fn iso8601_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0u64;
    if let Some(r) = rest.strip_prefix(['.', ',']) {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac_ns = decimal_ns(&format!("0.{}", &r[..n]), 9)?;
        rest = &r[n..];
    }
    let offset_s: i64 = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest[1..].replace(':', "");
            if o.len() != 4 || !o.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (oh, om): (i64, i64) = (o[..2].parse().ok()?, o[2..].parse().ok()?);
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset_s;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac_ns)
}

/// A bad mapping file.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("unknown field {0:?} (known: {known})", known = known_fields())]
    UnknownField(String),
    #[error("unknown unit {unit:?} for {field} (ns, us, ms, s{iso})", iso = if *.time { ", iso8601" } else { "" })]
    BadUnit {
        field: &'static str,
        unit: String,
        time: bool,
    },
    #[error("{0} is not a time or duration: it has no unit")]
    NoUnit(&'static str),
    #[error("unknown transaction status {0:?} (ok, timeout, open)")]
    UnknownStatus(String),
}

fn known_fields() -> String {
    Field::ALL.map(Field::key).join(", ")
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MapFile {
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    units: BTreeMap<String, String>,
    #[serde(default)]
    status: BTreeMap<String, Vec<String>>,
}

/// Column names, units and status words of one CSV dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMap {
    columns: BTreeMap<Field, String>,
    units: BTreeMap<Field, Unit>,
    /// Lower-cased word → status, tried before our own words.
    status_words: Vec<(String, TxStatus)>,
}

impl Default for ColumnMap {
    /// Our own format.
    fn default() -> Self {
        ColumnMap {
            columns: Field::ALL
                .into_iter()
                .map(|f| (f, f.default_column().to_string()))
                .collect(),
            units: Field::ALL
                .into_iter()
                .map(|f| (f, f.default_unit()))
                .collect(),
            status_words: Vec::new(),
        }
    }
}

impl ColumnMap {
    /// Our format changed by a mapping file's text (see the module documentation).
    pub fn from_toml(text: &str) -> Result<ColumnMap, MapError> {
        let file: MapFile = toml::from_str(text)?;
        let mut m = ColumnMap::default();
        let field = |k: &str| Field::from_key(k).ok_or_else(|| MapError::UnknownField(k.into()));
        for (k, col) in &file.columns {
            m.columns.insert(field(k)?, col.clone());
        }
        for (k, u) in &file.units {
            let f = field(k)?;
            if f.kind() == Kind::Other {
                return Err(MapError::NoUnit(f.key()));
            }
            let unit =
                Unit::parse(u.trim()).filter(|u| *u != Unit::Iso8601 || f.kind() == Kind::Time);
            let Some(unit) = unit else {
                return Err(MapError::BadUnit {
                    field: f.key(),
                    unit: u.clone(),
                    time: f.kind() == Kind::Time,
                });
            };
            m.units.insert(f, unit);
        }
        for (k, words) in &file.status {
            let st = TxStatus::parse(k).ok_or_else(|| MapError::UnknownStatus(k.clone()))?;
            m.status_words
                .extend(words.iter().map(|w| (w.trim().to_lowercase(), st)));
        }
        Ok(m)
    }

    /// Reads a mapping file; errors name it.
    pub fn load(path: &std::path::Path) -> Result<ColumnMap, super::csv::RecordError> {
        let in_file = |e: super::csv::RecordError| super::csv::RecordError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let text = std::fs::read_to_string(path).map_err(|e| in_file(e.into()))?;
        ColumnMap::from_toml(&text).map_err(|e| in_file(e.into()))
    }

    pub fn column(&self, f: Field) -> &str {
        self.columns
            .get(&f)
            .map_or(f.default_column(), String::as_str)
    }

    pub fn unit(&self, f: Field) -> Unit {
        self.units.get(&f).copied().unwrap_or(f.default_unit())
    }

    /// The transaction status a word of the status column stands for.
    pub fn status(&self, word: &str) -> Option<TxStatus> {
        let w = word.trim();
        let lower = w.to_lowercase();
        self.status_words
            .iter()
            .find(|(x, _)| *x == lower)
            .map(|(_, s)| *s)
            .or_else(|| TxStatus::parse(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_exact() {
        assert_eq!(Unit::Ms.to_ns("12.5"), Some(12_500_000));
        assert_eq!(Unit::Us.to_ns("850123.456"), Some(850_123_456));
        assert_eq!(Unit::S.to_ns("1.000000001"), Some(1_000_000_001));
        assert_eq!(Unit::Ns.to_ns("17"), Some(17));
        assert_eq!(Unit::Ms.to_ns("1.23456789"), Some(1_234_567));
        for bad in ["", ".", "-1", "1e3", "12ms", " 1"] {
            assert_eq!(Unit::Ms.to_ns(bad), None, "{bad:?}");
        }
        assert_eq!(Unit::S.to_ns("99999999999999999999"), None);
    }

    #[test]
    fn iso8601_times() {
        // 2026-12-05T18:40:25Z, checked with `date -u -d @1796496025`.
        let base = 1_796_496_025u64 * 1_000_000_000;
        assert_eq!(Unit::Iso8601.to_ns("2026-12-05T18:40:25Z"), Some(base));
        assert_eq!(
            Unit::Iso8601.to_ns("2026-12-05 18:40:25.123456"),
            Some(base + 123_456_000)
        );
        assert_eq!(
            Unit::Iso8601.to_ns("2026-12-05T19:40:25.5+01:00"),
            Some(base + 500_000_000)
        );
        assert_eq!(Unit::Iso8601.to_ns("2026-12-05T17:10:25-0130"), Some(base));
        assert_eq!(Unit::Iso8601.to_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            Unit::Iso8601.to_ns("2000-03-01T00:00:00Z"),
            Some(951_868_800 * 1_000_000_000)
        );
        for bad in [
            "2026-13-05T18:40:25Z",
            "2026-12-05",
            "2026-12-05T18:40:25.Z",
            "2026-12-05T18:40:25+1",
            "1969-12-31T23:59:59Z",
            "2026-12-05T18:40:25Zjunk",
        ] {
            assert_eq!(Unit::Iso8601.to_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mapping_file() {
        let m = ColumnMap::from_toml(
            "[columns]\npoller = \"from\"\nrtt = \"elapsed\"\n[units]\nrtt = \"ms\"\nstart = \"iso8601\"\n[status]\nok = [\"Success\"]\ntimeout = [\"FAILED\"]\n",
        )
        .unwrap();
        assert_eq!(m.column(Field::PollerName), "from");
        assert_eq!(m.column(Field::ReceiverName), "receiver_name");
        assert_eq!(m.unit(Field::Rtt), Unit::Ms);
        assert_eq!(m.unit(Field::Stop), Unit::Ns);
        assert_eq!(m.status("SUCCESS"), Some(TxStatus::Ok));
        assert_eq!(m.status("failed"), Some(TxStatus::Timeout));
        assert_eq!(m.status("open"), Some(TxStatus::Open));
        assert_eq!(m.status("maybe"), None);
        for (bad, says) in [
            ("[columns]\nbogus = \"x\"", "bogus"),
            ("[units]\nrtt = \"iso8601\"", "rtt"),
            ("[units]\nstart = \"fortnights\"", "fortnights"),
            ("[units]\npoller = \"ms\"", "poller_name"),
            ("[status]\nfine = [\"x\"]", "fine"),
            ("[colums]\nstart = \"x\"", "colums"),
        ] {
            let e = ColumnMap::from_toml(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
