//! The transaction CSV: one record per transaction, the study's record format.
//!
//! Over 600 lines with its tests (writer and reader checked both ways).

use std::io::{Read, Write};
use std::sync::Arc;

use super::columns::{ColumnMap, Field, MapError};
use crate::jim::Status;
use crate::jxta::PeerId;
use crate::transaction::cause::{Cause, Flags};
use crate::transaction::{MatchMethod, Transaction, TxStatus};

pub const CSV_HEADER: &str = "start_unix_ns,stop_unix_ns,rtt_us,poller_name,poller_peer_id,receiver_name,receiver_peer_id,receiver_status,transaction_status,correlator,match_method,ping_bytes,pong_bytes,correlator_overhead_bytes";

/// Columns the reference peer appends: the kernel's timestamps of the PING's last byte
/// leaving and of the segment completing the PONG arriving, and their difference.
pub const SOCKET_COLUMNS: &str = "socket_start_unix_ns,socket_stop_unix_ns,socket_rtt_us";

/// Kernel (socket) timestamps of one transaction; either may be missing (no kernel
/// support, or the timestamp did not arrive in time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketTimes {
    pub start: Option<u64>,
    pub stop: Option<u64>,
}

impl SocketTimes {
    pub fn rtt_ns(&self) -> Option<u64> {
        self.stop?.checked_sub(self.start?)
    }
}

/// Columns `analyze` and `live` append (docs/explain.md): the transaction's causes
/// (`retrans+queue`, empty when the wire shows nothing) and the measured shares, in µs;
/// empty for a transaction that was not answered.
pub const CAUSE_COLUMNS: &str = "cause,tcp_us,conn_us,queue_us,queue_bytes,far_us,relay_peer_id";

/// Characters that make spreadsheets evaluate a cell as a formula. Text from the wire
/// (names, IDs, correlators) starting with one is prefixed with `'`, which spreadsheets
/// show as text; `read_transactions_csv` removes it again.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// [`FORMULA_STARTS`] by byte. They are all ASCII, and the first byte of a longer
/// UTF-8 character is never ASCII, so the first byte decides: `str::starts_with` with
/// a set of chars decodes the first character, ~25 instructions a field.
const FORMULA_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < FORMULA_STARTS.len() {
        let c = FORMULA_STARTS[i] as u32;
        assert!(c < 0x80, "FORMULA_STARTS must be ASCII");
        t[c as usize] = true;
        i += 1;
    }
    t
};

fn starts_formula(s: &str) -> bool {
    s.as_bytes()
        .first()
        .is_some_and(|&b| FORMULA_BYTES[usize::from(b)])
}

fn defuse(s: &str) -> std::borrow::Cow<'_, str> {
    if starts_formula(s) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

fn restore(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if starts_formula(rest) => rest,
        _ => s,
    }
}

/// Microseconds from nanoseconds, with decimals only as needed (`1234`, `1234.5`,
/// `1234.567`): exact, no float rounding.
pub fn format_rtt_us(ns: u64) -> String {
    let (whole, frac) = (ns / 1000, ns % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:03}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Bytes one record takes (line terminator included, no socket columns): what
/// [`TransactionCsvWriter::write`] returns, computed without formatting anything. The
/// summary reports what the CSV costs for every transaction, written or not, and
/// formatting each record only to measure it was a twentieth of a whole run.
pub fn record_len(t: &Transaction) -> u64 {
    let name = |v: Option<&str>| v.map_or(0, text_len);
    record_len_named(
        t,
        name(t.poller_name.as_deref()),
        name(t.receiver_name.as_deref()),
        name(t.correlator.as_deref()),
    )
}

/// [`record_len`] with the lengths of the two name fields and the correlator's given:
/// the summary keeps them beside a pair's names, which stay the same from one
/// transaction to the next, and beside the last correlator. Inlined into the summary's
/// `add` (another codegen unit), which reads the same fields.
#[inline]
pub(crate) fn record_len_named(
    t: &Transaction,
    poller_name: usize,
    receiver_name: usize,
    correlator: usize,
) -> u64 {
    // The words are this crate's own and never quoted (`words_are_never_quoted`).
    let word = |v: Option<&str>| v.map_or(0, str::len);
    let fields = [
        number_len(Some(t.start)),
        number_len(t.stop),
        t.rtt_ns().map_or(0, rtt_us_len),
        poller_name,
        t.poller_id.as_ref().map_or(0, peer_len),
        receiver_name,
        t.receiver_id.as_ref().map_or(0, peer_len),
        word(t.receiver_status.map(Status::as_str)),
        word(Some(t.status.as_str())),
        correlator,
        word(t.match_method.map(MatchMethod::as_str)),
        number_len(Some(t.ping_bytes)),
        number_len(t.pong_bytes),
        number_len(Some(t.correlator_overhead_bytes)),
    ];
    // A comma between fields, and the line terminator.
    (fields.iter().sum::<usize>() + fields.len()) as u64
}

/// Length of a text field (a name, a correlator) as `write` writes it: defused, then
/// quoted if need be.
pub(crate) fn text_len(s: &str) -> usize {
    usize::from(starts_formula(s)) + field_len(s.as_bytes())
}

/// Length of a field as [`push_field`] writes it.
fn field_len(field: &[u8]) -> usize {
    if !may_quote(field) {
        return field.len();
    }
    // Fields are short: one plain scan beats two `memchr` set-ups (as in `push_field`).
    let (mut quoted, mut quotes) = (false, 0);
    for &b in field {
        match b {
            b'"' => {
                quoted = true;
                quotes += 1;
            }
            b',' | b'\n' | b'\r' => quoted = true,
            _ => {}
        }
    }
    if quoted {
        field.len() + quotes + 2
    } else {
        field.len()
    }
}

/// Whether any byte of `field` is below `-` (0x2d). The four that make a field quoted
/// (`"`, `,`, LF, CR) all are, and names and correlators rarely hold another (a space):
/// only those fields are scanned byte by byte (~5 instructions a byte, half of
/// `record_len`). Eight bytes at a time, the last eight overlapping: in
/// `(w - 0x2d..) & !w & 0x80..` the lowest byte below 0x2d borrows nothing from below
/// and wraps to at least 0x80 with its top bit clear in `w`, so the result is not zero;
/// with no byte below 0x2d nothing borrows, and a byte left at or above 0x80 had its
/// top bit set in `w`, so the result is zero (test `may_quote_is_any_byte_below_dash`).
fn may_quote(field: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: &[u8; 8]| {
        let w = u64::from_ne_bytes(*w);
        w.wrapping_sub(LOW * 0x2d) & !w & HIGH
    };
    let (words, tail) = field.as_chunks::<8>();
    if words.is_empty() {
        return tail.iter().any(|&b| b < 0x2d);
    }
    let mut seen = words.iter().fold(0, |acc, w| acc | below(w));
    if let Some(last) = field.last_chunk::<8>() {
        seen |= below(last);
    }
    seen != 0
}

/// Length of a peer ID field: its text as is. `PeerId::parse` admits only
/// `urn:jxta:` and letters, digits, `-`, `_` and `.` after it, so it is never quoted
/// nor defused (`peer_ids_are_written_as_is` checks that on any input).
fn peer_len(p: &PeerId) -> usize {
    p.as_str().len()
}

/// Length of a number as [`push_number`] writes it (no quoting: digits only).
fn number_len(v: Option<u64>) -> usize {
    v.map_or(0, digits)
}

/// `10^i`, up to the largest that fits a `u64`.
const POWERS_OF_10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < t.len() {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Decimal digits of `v`, from its bit length: `bits * 1233 >> 12` is
/// `floor(bits * log10(2))`, the digits of `2^bits - 1` less at most one, and one
/// comparison settles it (a handful of instructions where `checked_ilog10` took ~25,
/// five numbers a record). `v | 1` has as many digits as `v` (an even number plus one
/// is never a power of ten) and makes 0 count as the one digit it is written with.
fn digits(v: u64) -> usize {
    let v = v | 1;
    let bits = 64 - v.leading_zeros() as usize;
    let t = (bits * 1233) >> 12;
    t + usize::from(v >= POWERS_OF_10[t])
}

/// Length of [`format_rtt_us`]'s text.
fn rtt_us_len(ns: u64) -> usize {
    let frac = ns % 1000;
    let decimals = match frac {
        0 => 0,
        f if f % 100 == 0 => 2,
        f if f % 10 == 0 => 3,
        _ => 4,
    };
    number_len(Some(ns / 1000)) + decimals
}

/// Writes transactions as CSV records (header first).
///
/// Fields are encoded here rather than by the `csv` crate's writer: a record is
/// built in a reused buffer in one pass, with no string per field. The cost is paid for
/// every transaction (the summary reports what the CSV costs). Measured with
/// `cargo bench -p observer --bench stages -- report/csv` (the same records through
/// this writer and through `csv::Writer`, fields formatted alike): 0.53 against
/// 0.66 µs per record on the generated four-peers capture (1,104 records), 0.38
/// against 0.86 µs on the JXSE 2.5 capture (criterion means): 1.2 to 2.3 times faster.
/// Small next to a whole run, but paid per transaction, and the output is checked byte
/// for byte against the crate's, so the crate would add nothing else. The encoding is RFC 4180's, as `csv` writes it with its
/// default `QuoteStyle::Necessary`: a field is quoted when it holds a comma, a quote,
/// CR or LF, and quotes inside are doubled (tests compare with the `csv` crate).
pub struct TransactionCsvWriter<W: Write> {
    out: W,
    record: Vec<u8>,
    bytes: u64,
    socket_columns: bool,
    cause_columns: bool,
}

/// Appends one field (after a comma unless it is the record's first), quoted only if
/// it must be. `record` holds the line so far, `first` whether it is still empty of
/// fields (an empty first field leaves it empty too).
fn push_field(record: &mut Vec<u8>, first: &mut bool, field: &[u8]) {
    if !std::mem::take(first) {
        record.push(b',');
    }
    // Fields are short (a peer ID is the longest): a plain scan beats memchr's set-up.
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        record.extend_from_slice(field);
        return;
    }
    record.push(b'"');
    for part in field.split_inclusive(|&b| b == b'"') {
        record.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            record.push(b'"');
        }
    }
    record.push(b'"');
}

fn push_number(record: &mut Vec<u8>, first: &mut bool, v: Option<u64>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    if let Some(mut v) = v {
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
    }
    push_field(record, first, &digits[at..]);
}

impl<W: Write> TransactionCsvWriter<W> {
    /// Writes the header.
    pub fn new(out: W) -> Result<Self, RecordError> {
        Self::with_header(out, false, false)
    }

    /// Writes the header with [`SOCKET_COLUMNS`] appended (the reference peer's CSV).
    pub fn with_socket_columns(out: W) -> Result<Self, RecordError> {
        Self::with_header(out, true, false)
    }

    /// Writes the header with [`CAUSE_COLUMNS`] appended (`analyze`, `live`).
    pub fn with_cause_columns(out: W) -> Result<Self, RecordError> {
        let mut w = Self::with_header(out, false, true)?;
        w.cause_columns = true;
        Ok(w)
    }

    /// Continues an existing file written by [`Self::with_cause_columns`].
    pub fn without_header_with_causes(out: W) -> Self {
        TransactionCsvWriter {
            cause_columns: true,
            ..Self::without_header(out)
        }
    }

    fn with_header(
        mut out: W,
        socket_columns: bool,
        cause_columns: bool,
    ) -> Result<Self, RecordError> {
        let mut header = CSV_HEADER.to_string();
        if socket_columns {
            header.push(',');
            header.push_str(SOCKET_COLUMNS);
        }
        if cause_columns {
            header.push(',');
            header.push_str(CAUSE_COLUMNS);
        }
        header.push('\n');
        out.write_all(header.as_bytes())?;
        Ok(TransactionCsvWriter {
            out,
            record: Vec::with_capacity(512),
            bytes: header.len() as u64,
            socket_columns,
            cause_columns,
        })
    }

    /// A writer that continues an existing file: no header.
    pub fn without_header(out: W) -> Self {
        TransactionCsvWriter {
            out,
            record: Vec::with_capacity(512),
            bytes: 0,
            socket_columns: false,
            cause_columns: false,
        }
    }

    /// Writes one record and returns its size in bytes (line terminator included).
    pub fn write(&mut self, t: &Transaction) -> Result<u64, RecordError> {
        self.write_with_socket(t, &SocketTimes::default())
    }

    /// Writes one record with its socket times (written only by a writer made with
    /// [`Self::with_socket_columns`]).
    pub fn write_with_socket(
        &mut self,
        t: &Transaction,
        socket: &SocketTimes,
    ) -> Result<u64, RecordError> {
        let r = &mut self.record;
        r.clear();
        let f = &mut true;
        let text = |r: &mut Vec<u8>, f: &mut bool, v: Option<&str>| {
            push_field(r, f, defuse(v.unwrap_or_default()).as_bytes())
        };
        let word = |r: &mut Vec<u8>, f: &mut bool, v: Option<&str>| {
            push_field(r, f, v.unwrap_or_default().as_bytes())
        };
        push_number(r, f, Some(t.start));
        push_number(r, f, t.stop);
        word(r, f, t.rtt_ns().map(format_rtt_us).as_deref());
        text(r, f, t.poller_name.as_deref());
        text(r, f, t.poller_id.as_ref().map(PeerId::as_str));
        text(r, f, t.receiver_name.as_deref());
        text(r, f, t.receiver_id.as_ref().map(PeerId::as_str));
        word(r, f, t.receiver_status.map(Status::as_str));
        word(r, f, Some(t.status.as_str()));
        text(r, f, t.correlator.as_deref());
        word(r, f, t.match_method.map(MatchMethod::as_str));
        push_number(r, f, Some(t.ping_bytes));
        push_number(r, f, t.pong_bytes);
        push_number(r, f, Some(t.correlator_overhead_bytes));
        if self.socket_columns {
            let rtt = (t.status == TxStatus::Ok)
                .then(|| socket.rtt_ns())
                .flatten();
            push_number(r, f, socket.start);
            push_number(r, f, socket.stop);
            word(r, f, rtt.map(format_rtt_us).as_deref());
        }
        if self.cause_columns {
            let c = &t.cause;
            let ok = t.status == TxStatus::Ok;
            let us = |v: u64| ok.then(|| format_rtt_us(v));
            word(r, f, Some(c.label().as_str()));
            word(r, f, us(c.tcp_ns).as_deref());
            word(r, f, us(c.conn_ns).as_deref());
            word(r, f, us(c.queue_ns).as_deref());
            push_number(r, f, ok.then_some(c.queue_bytes));
            word(r, f, c.far_ns.map(format_rtt_us).as_deref());
            text(r, f, c.relay.as_ref().map(PeerId::as_str));
        }
        r.push(b'\n');
        self.out.write_all(r)?;
        let n = r.len() as u64;
        self.bytes += n;
        Ok(n)
    }

    /// Bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.out.flush()?;
        Ok(())
    }

    /// The underlying writer.
    pub fn into_inner(self) -> Result<W, RecordError> {
        Ok(self.out)
    }
}

/// One record of a transaction CSV: the transaction, and the socket-level times when
/// the file has them (the reference peer's kernel timestamps).
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRecord {
    pub tx: Transaction,
    pub socket: SocketTimes,
}

impl CsvRecord {
    /// The socket RTT of an `ok` transaction with both kernel timestamps.
    pub fn socket_rtt_ns(&self) -> Option<u64> {
        if self.tx.status != TxStatus::Ok {
            return None;
        }
        self.socket.rtt_ns()
    }
}

/// Reads a transaction CSV in our own format (`analyze --csv`, `peer --csv`).
pub fn read_transactions_csv<R: Read>(r: R) -> Result<Vec<Transaction>, RecordError> {
    Ok(read_records_csv(r, &ColumnMap::default())?
        .into_iter()
        .map(|r| r.tx)
        .collect())
}

/// Reads a file with [`read_records_csv`]; errors name the file.
pub fn read_records_file(
    path: &std::path::Path,
    map: &ColumnMap,
) -> Result<Vec<CsvRecord>, RecordError> {
    let in_file = |e: RecordError| RecordError::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    };
    let f = std::fs::File::open(path).map_err(|e| in_file(e.into()))?;
    read_records_csv(std::io::BufReader::new(f), map).map_err(in_file)
}

/// Reads any transaction CSV by column name: the start, the stop or the RTT, the
/// poller and the receiver (name or peer ID) and the status are required; every other
/// field is read when its column is there; columns the map does not name are ignored.
/// Empty fields are absent values (byte counts then 0). When both stop and RTT are
/// there, the stop is used.
pub fn read_records_csv<R: Read>(r: R, map: &ColumnMap) -> Result<Vec<CsvRecord>, RecordError> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(r);
    let header = rd.headers()?.clone();
    let find = |f: Field| {
        let name = map.column(f);
        header.iter().position(|h| h.trim() == name)
    };
    let cols: Vec<Option<usize>> = Field::ALL.iter().map(|f| find(*f)).collect();
    let col = |f: Field| cols[Field::ALL.iter().position(|x| *x == f).unwrap_or(0)];
    let missing = |fields: &[Field]| -> Result<(), RecordError> {
        if fields.iter().any(|f| col(*f).is_some()) {
            return Ok(());
        }
        Err(RecordError::MissingColumn {
            columns: fields
                .iter()
                .map(|f| format!("{:?}", map.column(*f)))
                .collect::<Vec<_>>()
                .join(" or "),
            header: header
                .iter()
                .collect::<Vec<_>>()
                .join(",")
                .chars()
                .take(200)
                .collect(),
        })
    };
    missing(&[Field::Start])?;
    missing(&[Field::Stop, Field::Rtt])?;
    missing(&[Field::PollerName, Field::PollerPeerId])?;
    missing(&[Field::ReceiverName, Field::ReceiverPeerId])?;
    missing(&[Field::Status])?;
    // Our own cause columns (analyze, live, the store), by their fixed names.
    let cause_cols: Vec<Option<usize>> = CAUSE_COLUMNS
        .split(',')
        .map(|name| header.iter().position(|h| h.trim() == name))
        .collect();
    let mut out = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec?;
        let record = i as u64 + 1;
        let get = |f: Field| col(f).and_then(|k| rec.get(k)).unwrap_or("").trim();
        let bad = |f: Field, value: &str| RecordError::BadField {
            record,
            field: f.key(),
            value: value.chars().take(100).collect(),
        };
        let time = |f: Field| -> Result<Option<u64>, RecordError> {
            match get(f) {
                "" => Ok(None),
                v => map.unit(f).to_ns(v).map(Some).ok_or_else(|| bad(f, v)),
            }
        };
        let count = |f: Field| -> Result<Option<u64>, RecordError> {
            match get(f) {
                "" => Ok(None),
                v => v.parse().map(Some).map_err(|_| bad(f, v)),
            }
        };
        let text = |f: Field| (!get(f).is_empty()).then(|| restore(get(f)).to_owned());
        let peer = |f: Field| -> Result<Option<PeerId>, RecordError> {
            match text(f) {
                None => Ok(None),
                Some(s) => PeerId::parse(&s).map(Some).ok_or_else(|| bad(f, &s)),
            }
        };
        let status = map
            .status(get(Field::Status))
            .ok_or_else(|| bad(Field::Status, get(Field::Status)))?;
        let receiver_status = match get(Field::ReceiverStatus) {
            "" => None,
            s => Some(
                Status::parse(&s.to_lowercase()).ok_or_else(|| bad(Field::ReceiverStatus, s))?,
            ),
        };
        let match_method = match get(Field::MatchMethod) {
            "" => None,
            s => Some(MatchMethod::parse(s).ok_or_else(|| bad(Field::MatchMethod, s))?),
        };
        let start = time(Field::Start)?.ok_or_else(|| bad(Field::Start, ""))?;
        let rtt = time(Field::Rtt)?;
        let stop = match time(Field::Stop)? {
            Some(s) => Some(s),
            None => rtt.map(|r| start.saturating_add(r)),
        };
        if status == TxStatus::Ok && stop.is_none() {
            return Err(bad(Field::Rtt, ""));
        }
        let (poller_name, poller_id) = (text(Field::PollerName), peer(Field::PollerPeerId)?);
        if poller_name.is_none() && poller_id.is_none() {
            return Err(bad(Field::PollerName, ""));
        }
        let (receiver_name, receiver_id) =
            (text(Field::ReceiverName), peer(Field::ReceiverPeerId)?);
        if receiver_name.is_none() && receiver_id.is_none() {
            return Err(bad(Field::ReceiverName, ""));
        }
        let socket_start = time(Field::SocketStart)?;
        let socket_stop = match (
            time(Field::SocketStop)?,
            time(Field::SocketRtt)?,
            socket_start,
        ) {
            (Some(s), _, _) => Some(s),
            (None, Some(r), Some(s)) => Some(s.saturating_add(r)),
            _ => None,
        };
        out.push(CsvRecord {
            tx: Transaction {
                start,
                stop,
                poller_name: poller_name.map(Arc::from),
                poller_id,
                receiver_name: receiver_name.map(Arc::from),
                receiver_id,
                receiver_status,
                status,
                correlator: text(Field::Correlator).map(Arc::from),
                match_method,
                ping_bytes: count(Field::PingBytes)?.unwrap_or(0),
                pong_bytes: count(Field::PongBytes)?,
                correlator_overhead_bytes: count(Field::CorrelatorOverheadBytes)?.unwrap_or(0),
                cause: read_cause(&rec, &cause_cols).map_err(|(field, value)| {
                    RecordError::BadField {
                        record,
                        field,
                        value: value.chars().take(100).collect(),
                    }
                })?,
            },
            socket: SocketTimes {
                start: socket_start,
                stop: socket_stop,
            },
        });
    }
    Ok(out)
}

/// The cause columns of one record (all empty, or absent: no cause); the field's name
/// and text on a bad one. `ping_legs` is not in the CSV and stays 0.
fn read_cause(
    rec: &csv::StringRecord,
    cols: &[Option<usize>],
) -> Result<Cause, (&'static str, String)> {
    let names: Vec<&'static str> = CAUSE_COLUMNS.split(',').collect();
    let get = |i: usize| {
        cols.get(i)
            .copied()
            .flatten()
            .and_then(|k| rec.get(k))
            .unwrap_or("")
            .trim()
    };
    let bad = |i: usize| (names.get(i).copied().unwrap_or("cause"), get(i).to_owned());
    let us = |i: usize| -> Result<Option<u64>, (&'static str, String)> {
        match get(i) {
            "" => Ok(None),
            v => match v.parse::<f64>() {
                // µs with at most ns decimals (the CSV's, or the store's Float64).
                Ok(x) if (0.0..1e15).contains(&x) => Ok(Some((x * 1000.0).round() as u64)),
                _ => Err(bad(i)),
            },
        }
    };
    let flags = Flags::parse(get(0)).ok_or_else(|| bad(0))?;
    let queue_bytes = match get(4) {
        "" => 0,
        v => v.parse().map_err(|_| bad(4))?,
    };
    let relay = match get(6) {
        "" => None,
        v => Some(PeerId::parse(restore(v)).ok_or_else(|| bad(6))?),
    };
    Ok(Cause {
        flags,
        tcp_ns: us(1)?.unwrap_or(0),
        conn_ns: us(2)?.unwrap_or(0),
        queue_ns: us(3)?.unwrap_or(0),
        queue_bytes,
        ping_legs: 0,
        far_ns: us(5)?,
        relay,
    })
}

/// What can go wrong writing or reading a transaction CSV.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no {columns} column in the CSV header {header:?}")]
    MissingColumn { columns: String, header: String },
    #[error("column map: {0}")]
    Map(#[from] MapError),
    #[error("{}: {source}", path.display())]
    InFile {
        path: std::path::PathBuf,
        source: Box<RecordError>,
    },
    #[error("CSV record {record}: bad {field} {value:?}")]
    BadField {
        record: u64,
        field: &'static str,
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written field encoder writes what the `csv` crate writes.
    #[test]
    fn fields_encode_as_the_csv_crate_does() {
        let fields: Vec<&[u8]> = vec![
            b"",
            b"plain",
            b"a,b",
            b"say \"hi\"",
            b"\"",
            b"\"\"",
            b"line\nbreak",
            b"cr\r",
            b"=1+2",
            b" spaced ",
            b"tab\there",
            b"\xc3\xa9t\xc3\xa9",
            b",\"\r\n,",
            b"#comment",
        ];
        for a in &fields {
            for b in &fields {
                let mut ours = Vec::new();
                let first = &mut true;
                push_field(&mut ours, first, a);
                push_field(&mut ours, first, b);
                ours.push(b'\n');
                let mut theirs = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                theirs.write_record([a, b]).unwrap();
                let theirs = theirs.into_inner().unwrap();
                assert_eq!(
                    ours,
                    theirs,
                    "{:?} {:?}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                );
            }
        }
        let mut n = Vec::new();
        let first = &mut true;
        push_number(&mut n, first, Some(0));
        push_number(&mut n, first, Some(u64::MAX));
        push_number(&mut n, first, None);
        assert_eq!(n, b"0,18446744073709551615,");
    }

    fn sample() -> Vec<Transaction> {
        let a = PeerId::parse(
            "urn:jxta:uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03",
        );
        let b = PeerId::parse(
            "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603",
        );
        vec![
            Transaction {
                start: 1_795_528_304_808_000_000,
                stop: Some(1_795_528_304_808_000_000 + 850_123_456),
                poller_name: Some("alice".into()),
                poller_id: a.clone(),
                receiver_name: Some("bob, \"the\" builder".into()),
                receiver_id: b.clone(),
                receiver_status: Some(Status::Busy),
                status: TxStatus::Ok,
                correlator: Some("4611686018427387905".into()),
                match_method: Some(MatchMethod::Correlator),
                ping_bytes: 970,
                pong_bytes: Some(990),
                correlator_overhead_bytes: 88,
                cause: Default::default(),
            },
            Transaction {
                start: 5,
                stop: Some(10_000_000_005),
                poller_name: Some("=HYPERLINK(\"x\")".into()),
                poller_id: None,
                receiver_name: None,
                receiver_id: b,
                receiver_status: None,
                status: TxStatus::Timeout,
                correlator: Some("-42".into()),
                match_method: None,
                ping_bytes: 1,
                pong_bytes: None,
                correlator_overhead_bytes: 0,
                cause: Default::default(),
            },
            Transaction {
                start: 7,
                stop: None,
                poller_name: None,
                poller_id: a,
                receiver_name: Some("'quoted".into()),
                receiver_id: None,
                receiver_status: None,
                status: TxStatus::Open,
                correlator: None,
                match_method: None,
                ping_bytes: 0,
                pong_bytes: None,
                correlator_overhead_bytes: 0,
                cause: Default::default(),
            },
        ]
    }

    /// Digits counted from the bit length are the digits `to_string` writes, at every
    /// power of ten, on both sides of it, and at the ends of the range.
    #[test]
    fn digits_are_the_written_digits() {
        let mut values = vec![0, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1];
        for p in POWERS_OF_10 {
            values.extend([p - 1, p, p + 1, p.saturating_mul(2), p.saturating_mul(9)]);
        }
        for shift in 0..64 {
            values.extend([1u64 << shift, (1u64 << shift) - 1]);
        }
        for v in values {
            assert_eq!(digits(v), v.to_string().len(), "{v}");
        }
    }

    /// A formula start is found by its first byte as `str::starts_with` finds it by
    /// its first character, multi-byte characters included.
    #[test]
    fn formula_starts_by_byte_are_formula_starts_by_char() {
        for s in [
            "", "=1", "+", "-x", "@a", "\tx", "\rx", "x=", "'=", "é", "\u{ff1d}", "\u{3d}",
        ] {
            assert_eq!(starts_formula(s), s.starts_with(FORMULA_STARTS), "{s:?}");
        }
        for c in (0..0x80u8)
            .map(char::from)
            .chain(['é', '\u{2b}', '\u{ff0b}'])
        {
            let s = format!("{c}x");
            assert_eq!(starts_formula(&s), s.starts_with(FORMULA_STARTS), "{s:?}");
        }
    }

    #[test]
    fn may_quote_is_any_byte_below_dash() {
        for len in 0..=27 {
            let text = vec![b'a'; len];
            assert!(!may_quote(&text), "{len}");
            for at in 0..len {
                for b in 0..=u8::MAX {
                    let mut t = text.clone();
                    t[at] = b;
                    assert_eq!(may_quote(&t), b < b'-', "{len} {at} {b}");
                    // A byte with its top bit set ahead of the probe must not hide it
                    // nor stand for it.
                    t[len - 1 - at] = 0xff;
                    assert_eq!(may_quote(&t), t.iter().any(|&c| c < b'-'), "{t:?}");
                }
            }
        }
    }

    #[test]
    fn words_are_never_quoted() {
        let words = [Status::Online, Status::Busy, Status::Away, Status::Offline]
            .map(Status::as_str)
            .into_iter()
            .chain([TxStatus::Ok, TxStatus::Timeout, TxStatus::Open].map(TxStatus::as_str))
            .chain([MatchMethod::Correlator, MatchMethod::Order].map(MatchMethod::as_str));
        for w in words {
            let mut field = Vec::new();
            push_field(&mut field, &mut true, w.as_bytes());
            assert_eq!(field, w.as_bytes());
        }
    }

    /// The computed size is the written size, on records with every kind of field
    /// (quoted, defused, empty, RTTs with 0 to 3 decimals).
    #[test]
    fn record_len_is_what_write_writes() {
        let mut txs = sample();
        for (i, stop) in [0u64, 1, 10, 100, 120, 999, 1000, 1_000_000, 7_000_010]
            .into_iter()
            .enumerate()
        {
            let mut t = txs[i % 3].clone();
            t.stop = Some(t.start + stop);
            t.correlator = Some(format!("+{i},\"\r").into());
            t.poller_name = Some(["", "@x", "\tx", "a\nb", "\u{e9}t\u{e9}"][i % 5].into());
            txs.push(t);
        }
        let mut w = TransactionCsvWriter::without_header(Vec::new());
        for t in &txs {
            assert_eq!(record_len(t), w.write(t).unwrap(), "{t:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn peer_ids_are_written_as_is(
            text in "(urn:jxta:|jxta://| )?[a-zA-Z0-9_.=+@,\"-]{1,6}-[a-zA-Z0-9_.=+@,\"\r\n\t-]{1,40}"
        ) {
            if let Some(p) = PeerId::parse(&text) {
                let mut field = Vec::new();
                push_field(&mut field, &mut true, defuse(p.as_str()).as_bytes());
                proptest::prop_assert_eq!(field.len(), peer_len(&p));
            }
        }

        #[test]
        fn record_len_matches_on_any_text_and_numbers(
            name in ".{0,12}",
            correlator in "[-+=@,\"\r\n\ta-z0-9 ]{0,12}",
            start in proptest::num::u64::ANY,
            rtt in proptest::option::of(0u64..u64::MAX / 2),
            bytes in proptest::num::u64::ANY,
        ) {
            let mut t = sample()[1].clone();
            t.start = start / 2;
            t.stop = rtt.map(|r| t.start + r);
            t.poller_name = Some(name.as_str().into());
            t.receiver_name = Some(name.into());
            t.correlator = Some(correlator.into());
            t.ping_bytes = bytes;
            t.pong_bytes = rtt;
            let mut w = TransactionCsvWriter::without_header(Vec::new());
            proptest::prop_assert_eq!(record_len(&t), w.write(&t).unwrap());
        }
    }

    #[test]
    fn header_is_exact() {
        let w = TransactionCsvWriter::new(Vec::new()).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(out, format!("{CSV_HEADER}\n"));
    }

    #[test]
    fn round_trip_and_bytes_per_record() {
        let txs = sample();
        let mut w = TransactionCsvWriter::new(Vec::new()).unwrap();
        let mut sum = 0;
        for t in &txs {
            sum += w.write(t).unwrap();
        }
        assert_eq!(w.bytes_written(), sum + CSV_HEADER.len() as u64 + 1);
        let bytes = w.into_inner().unwrap();
        assert_eq!(bytes.len() as u64, sum + CSV_HEADER.len() as u64 + 1);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(",850123.456,"), "{text}");
        assert!(text.contains("'=HYPERLINK"), "formula defused: {text}");
        assert!(text.contains(",'-42,"));
        assert!(text.contains(",timeout,"));
        let back = read_transactions_csv(&bytes[..]).unwrap();
        assert_eq!(back, txs);
    }

    /// The cause columns read back as written (all but `ping_legs`, not in the CSV);
    /// a file without them reads as no cause, a bad one is an error naming the column.
    #[test]
    fn cause_columns_round_trip() {
        let mut txs = sample();
        let relay = PeerId::parse(
            "urn:jxta:uuid-59616261646162614E50472050325033C0C1DE89719B456691A596B983BA0E1004",
        );
        txs[0].cause = Cause {
            flags: Flags::parse("retrans+queue+relay").unwrap(),
            tcp_ns: 300_001_234,
            conn_ns: 36_000_000,
            queue_ns: 12_345_678,
            queue_bytes: 800_000,
            ping_legs: 0,
            far_ns: Some(3_029_600_001),
            relay,
        };
        // A timed-out transaction's shares are not written (far is, when measured).
        txs[1].cause.far_ns = Some(7);
        let mut w = TransactionCsvWriter::with_cause_columns(Vec::new()).unwrap();
        for t in &txs {
            w.write(t).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let back = read_transactions_csv(&bytes[..]).unwrap();
        assert_eq!(back, txs);
        assert!(!back[0].cause.flags.is_empty());

        let text = String::from_utf8(bytes).unwrap();
        let bad = text.replace("retrans+queue+relay", "retrans+slow");
        let e = read_transactions_csv(bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad cause \"retrans+slow\""), "{e}");
        let bad = text.replace(",300001.234,", ",-1,");
        let e = read_transactions_csv(bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad tcp_us \"-1\""), "{e}");
    }

    /// A log written by another instrumented peer: its own column names and order,
    /// extra columns, no byte counts, RTT in ms, start as ISO-8601 times, its own
    /// status words.
    #[test]
    fn foreign_log_through_a_column_map() {
        let log = "\
host,when,from_peer,to_peer,elapsed_ms,result,corr_id,jvm_heap_mb,thread
pc1,2026-12-05T18:40:25.250Z,alice,bob,12.5,SUCCESS,77,312,pool-1
pc1,2026-12-05T19:40:26+01:00,alice,bob,,FAILED,78,313,pool-1
pc1,2026-12-05 18:40:27.000001,alice,carol,0.75,success,,314,pool-2
";
        let map = ColumnMap::from_toml(
            r#"
            [columns]
            start = "when"
            rtt = "elapsed_ms"
            poller = "from_peer"
            receiver = "to_peer"
            status = "result"
            correlator = "corr_id"
            [units]
            start = "iso8601"
            rtt = "ms"
            [status]
            ok = ["success"]
            timeout = ["FAILED"]
            "#,
        )
        .unwrap();
        let recs = read_records_csv(log.as_bytes(), &map).unwrap();
        let base = 1_796_496_025_000_000_000u64;
        let got: Vec<_> = recs
            .iter()
            .map(|r| {
                (
                    r.tx.start,
                    r.tx.rtt_ns(),
                    r.tx.status,
                    r.tx.receiver_name.as_deref(),
                    r.tx.correlator.as_deref(),
                    r.tx.ping_bytes,
                    r.tx.pong_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    base + 250_000_000,
                    Some(12_500_000),
                    TxStatus::Ok,
                    Some("bob"),
                    Some("77"),
                    0,
                    None
                ),
                (
                    base + 1_000_000_000,
                    None,
                    TxStatus::Timeout,
                    Some("bob"),
                    Some("78"),
                    0,
                    None
                ),
                (
                    base + 2_000_001_000,
                    Some(750_000),
                    TxStatus::Ok,
                    Some("carol"),
                    None,
                    0,
                    None
                ),
            ]
        );
        assert!(recs.iter().all(|r| r.socket_rtt_ns().is_none()));
        // Without the map the same file is missing our columns, named in the error.
        let e = read_records_csv(log.as_bytes(), &ColumnMap::default()).unwrap_err();
        assert!(e.to_string().contains("start_unix_ns"), "{e}");
        // A status word the map does not know is an error naming the field.
        let bad = log.replace("FAILED", "WEIRD");
        let e = read_records_csv(bad.as_bytes(), &map)
            .unwrap_err()
            .to_string();
        assert!(e.contains("status") && e.contains("WEIRD"), "{e}");
    }

    #[test]
    fn our_columns_plus_extra_columns_and_socket_times() {
        let mut w = TransactionCsvWriter::with_socket_columns(Vec::new()).unwrap();
        let txs = sample();
        let socket = SocketTimes {
            start: Some(txs[0].start + 40_000),
            stop: Some(txs[0].stop.unwrap() - 60_000),
        };
        w.write_with_socket(&txs[0], &socket).unwrap();
        w.write(&txs[1]).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(text.starts_with(&format!("{CSV_HEADER},{SOCKET_COLUMNS}\n")));
        assert!(text.contains(",850023.456\n"), "socket RTT: {text}");
        let recs = read_records_csv(text.as_bytes(), &ColumnMap::default()).unwrap();
        assert_eq!(recs[0].tx, txs[0]);
        assert_eq!(recs[0].socket_rtt_ns(), Some(850_023_456));
        assert_eq!(recs[1].socket, SocketTimes::default());
        // Extra columns of a foreign log around ours, empty byte counts: read.
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let row = lines.next().unwrap().replace(",970,990,88,", ",,,,");
        let extended = format!("jvm,{header},gc_ms\nx,{row},3\n");
        let recs = read_transactions_csv(extended.as_bytes()).unwrap();
        assert_eq!(recs[0].ping_bytes, 0);
        assert_eq!(recs[0].pong_bytes, None);
        assert_eq!(recs[0].rtt_ns(), txs[0].rtt_ns());
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peer7.csv");
        std::fs::write(&p, "a,b\n").unwrap();
        let e = read_records_file(&p, &ColumnMap::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("peer7.csv") && e.contains("start_unix_ns"),
            "{e}"
        );
        let m = dir.path().join("map.toml");
        std::fs::write(&m, "[units]\nrtt = \"weeks\"").unwrap();
        let e = ColumnMap::load(&m).unwrap_err().to_string();
        assert!(e.contains("map.toml") && e.contains("weeks"), "{e}");
    }

    #[test]
    fn rtt_us_formatting() {
        assert_eq!(format_rtt_us(1_234_567), "1234.567");
        assert_eq!(format_rtt_us(1_234_000), "1234");
        assert_eq!(format_rtt_us(1_234_500), "1234.5");
        assert_eq!(format_rtt_us(999), "0.999");
    }

    #[test]
    fn bad_input_is_an_error() {
        let e = read_transactions_csv(&b"a,b\n1,2\n"[..]).unwrap_err();
        assert!(matches!(e, RecordError::MissingColumn { .. }));
        assert!(e.to_string().contains("\"start_unix_ns\""), "{e}");
        // Stop and RTT both missing: the error names both.
        let e = read_transactions_csv(
            &b"start_unix_ns,poller_name,receiver_name,transaction_status\n1,a,b,ok\n"[..],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"stop_unix_ns\" or \"rtt_us\""), "{e}");
        let bad = format!("{CSV_HEADER}\n1,,,,,,,,maybe,,,1,,0\n");
        assert!(matches!(
            read_transactions_csv(bad.as_bytes()),
            Err(RecordError::BadField { .. })
        ));
    }
}
