//! The transaction CSV: one record per transaction, the study's record format.

use std::io::{Read, Write};

use super::ReportError;
use crate::jim::Status;
use crate::jxta::PeerId;
use crate::transaction::{MatchMethod, Transaction, TxStatus};

pub const CSV_HEADER: &str = "start_unix_ns,stop_unix_ns,rtt_us,poller_name,poller_peer_id,receiver_name,receiver_peer_id,receiver_status,transaction_status,correlator,match_method,ping_bytes,pong_bytes,correlator_overhead_bytes";

/// Characters that make spreadsheets evaluate a cell as a formula. Text from the wire
/// (names, IDs, correlators) starting with one is prefixed with `'`, which spreadsheets
/// show as text; `read_transactions_csv` removes it again.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn defuse(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(FORMULA_STARTS) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

fn restore(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
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

fn parse_rtt_us(s: &str) -> Option<u64> {
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    if f.len() > 3 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: u64 = if f.is_empty() {
        0
    } else {
        format!("{f:0<3}").parse().ok()?
    };
    w.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(frac)
}

/// Writes transactions as CSV records (header first).
///
/// Fields are encoded here rather than by the `csv` crate's writer: a record is
/// built in a reused buffer in one pass, which made the per-record cost (paid for
/// every transaction, since the summary reports what the CSV costs) a tenth of
/// what it was. The encoding is RFC 4180's, as `csv` writes it with its default
/// `QuoteStyle::Necessary`: a field is quoted when it holds a comma, a quote, CR
/// or LF, and quotes inside are doubled (tests compare with the `csv` crate).
pub struct TransactionCsvWriter<W: Write> {
    out: W,
    record: Vec<u8>,
    bytes: u64,
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
    pub fn new(mut out: W) -> Result<Self, ReportError> {
        out.write_all(CSV_HEADER.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(TransactionCsvWriter {
            out,
            record: Vec::with_capacity(512),
            bytes: CSV_HEADER.len() as u64 + 1,
        })
    }

    /// A writer that continues an existing file: no header.
    pub fn without_header(out: W) -> Self {
        TransactionCsvWriter {
            out,
            record: Vec::with_capacity(512),
            bytes: 0,
        }
    }

    /// Writes one record and returns its size in bytes (line terminator included).
    pub fn write(&mut self, t: &Transaction) -> Result<u64, ReportError> {
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

    pub fn flush(&mut self) -> Result<(), ReportError> {
        self.out.flush()?;
        Ok(())
    }

    /// The underlying writer.
    pub fn into_inner(self) -> Result<W, ReportError> {
        Ok(self.out)
    }
}

/// Reads a CSV written by `TransactionCsvWriter` back into transactions.
pub fn read_transactions_csv<R: Read>(r: R) -> Result<Vec<Transaction>, ReportError> {
    let mut rd = csv::ReaderBuilder::new().has_headers(true).from_reader(r);
    let header = rd.headers()?.iter().collect::<Vec<_>>().join(",");
    if header != CSV_HEADER {
        return Err(ReportError::BadHeader(header.chars().take(200).collect()));
    }
    let mut out = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec?;
        let record = i as u64 + 1;
        let get = |k: usize| rec.get(k).unwrap_or("");
        let bad = |field: &'static str, value: &str| ReportError::BadField {
            record,
            field,
            value: value.chars().take(100).collect(),
        };
        let num = |k: usize, field: &'static str| -> Result<u64, ReportError> {
            get(k).parse().map_err(|_| bad(field, get(k)))
        };
        let opt_num = |k: usize, field: &'static str| -> Result<Option<u64>, ReportError> {
            if get(k).is_empty() {
                Ok(None)
            } else {
                num(k, field).map(Some)
            }
        };
        let text = |k: usize| (!get(k).is_empty()).then(|| restore(get(k)).to_owned());
        let peer = |k: usize, field: &'static str| -> Result<Option<PeerId>, ReportError> {
            match text(k) {
                None => Ok(None),
                Some(s) => PeerId::parse(&s).map(Some).ok_or_else(|| bad(field, &s)),
            }
        };
        let status = TxStatus::parse(get(8)).ok_or_else(|| bad("transaction_status", get(8)))?;
        let receiver_status = match get(7) {
            "" => None,
            s => Some(Status::parse(s).ok_or_else(|| bad("receiver_status", s))?),
        };
        let match_method = match get(10) {
            "" => None,
            s => Some(MatchMethod::parse(s).ok_or_else(|| bad("match_method", s))?),
        };
        if !get(2).is_empty() && parse_rtt_us(get(2)).is_none() {
            return Err(bad("rtt_us", get(2)));
        }
        out.push(Transaction {
            start: num(0, "start_unix_ns")?,
            stop: opt_num(1, "stop_unix_ns")?,
            poller_name: text(3),
            poller_id: peer(4, "poller_peer_id")?,
            receiver_name: text(5),
            receiver_id: peer(6, "receiver_peer_id")?,
            receiver_status,
            status,
            correlator: text(9),
            match_method,
            ping_bytes: num(11, "ping_bytes")?,
            pong_bytes: opt_num(12, "pong_bytes")?,
            correlator_overhead_bytes: num(13, "correlator_overhead_bytes")?,
        });
    }
    Ok(out)
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
            },
        ]
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

    #[test]
    fn rtt_us_formatting() {
        assert_eq!(format_rtt_us(1_234_567), "1234.567");
        assert_eq!(format_rtt_us(1_234_000), "1234");
        assert_eq!(format_rtt_us(1_234_500), "1234.5");
        assert_eq!(format_rtt_us(999), "0.999");
        assert_eq!(parse_rtt_us("1234.5"), Some(1_234_500));
        assert_eq!(parse_rtt_us("1234"), Some(1_234_000));
        assert_eq!(parse_rtt_us("1.2345"), None);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            read_transactions_csv(&b"a,b\n1,2\n"[..]),
            Err(ReportError::BadHeader(_))
        ));
        let bad = format!("{CSV_HEADER}\n1,,,,,,,,maybe,,,1,,0\n");
        assert!(matches!(
            read_transactions_csv(bad.as_bytes()),
            Err(ReportError::BadField { .. })
        ));
    }
}
