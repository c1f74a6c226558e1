//! Where the transactions of a run go, in report order, whatever the source (`analyze`
//! on one thread or on shards, `live`): the summary, and the record (the transaction
//! CSV, or a live run's rotating one) when one is written. The pipeline's ordered
//! release ([`super::Pipeline::release_ordered`], or the merging thread's) feeds it.

use std::io::Write;

use crate::summary::{StatusCounts, Summary, SummaryBuilder};
use crate::transaction::csv::{RecordError, TransactionCsvWriter};
use crate::transaction::{Matcher, Transaction};

/// Writes one record per transaction.
pub trait RecordWriter {
    type Error;
    fn write_record(&mut self, t: &Transaction) -> Result<(), Self::Error>;
}

impl<W: Write> RecordWriter for TransactionCsvWriter<W> {
    type Error = RecordError;
    fn write_record(&mut self, t: &Transaction) -> Result<(), RecordError> {
        self.write(t).map(|_| ())
    }
}

/// The summary of every transaction handed in, and its record while writing works.
pub struct TransactionSink<R: RecordWriter> {
    summary: SummaryBuilder,
    record: Option<R>,
    /// The first write that failed: the record stops there (a full disk would fail
    /// every row after), the summary goes on.
    error: Option<R::Error>,
}

impl<R: RecordWriter> TransactionSink<R> {
    pub fn new(record: Option<R>) -> Self {
        Self::with_summary(SummaryBuilder::default(), record)
    }

    /// With a builder of its own (e.g. a bound on the exact RTTs kept).
    pub fn with_summary(summary: SummaryBuilder, record: Option<R>) -> Self {
        TransactionSink {
            summary,
            record,
            error: None,
        }
    }

    pub fn add(&mut self, t: &Transaction) {
        self.summary.add(t);
        if let Some(r) = &mut self.record {
            if let Err(e) = r.write_record(t) {
                self.error.get_or_insert(e);
                self.record = None;
            }
        }
    }

    /// The write that failed, once.
    pub fn take_error(&mut self) -> Option<R::Error> {
        self.error.take()
    }

    /// The record writer (to flush or rotate it), while writing works.
    pub fn record_mut(&mut self) -> Option<&mut R> {
        self.record.as_mut()
    }

    /// The summary's pairs idle since before `before`, dropped from its per-pair view
    /// (see [`SummaryBuilder::expire_idle`]); how many.
    pub fn expire_idle(&mut self, before: crate::UnixNanos) -> u64 {
        self.summary.expire_idle(before)
    }

    /// Transactions summarised so far, by status.
    pub fn counts(&self) -> &StatusCounts {
        self.summary.counts()
    }

    /// The run's summary (with the matcher's tallies and the run's length), the record
    /// writer unless a write failed, and the failure.
    pub fn finish(
        self,
        matcher: &Matcher,
        duration_ns: u64,
    ) -> (Summary, Option<R>, Option<R::Error>) {
        (
            self.summary.finish(matcher, duration_ns),
            self.record,
            self.error,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::example::example_run;

    /// A writer that fails from its `n`th record on.
    struct FailsAt(usize, Vec<Transaction>);

    impl RecordWriter for FailsAt {
        type Error = usize;
        fn write_record(&mut self, t: &Transaction) -> Result<(), usize> {
            if self.1.len() + 1 >= self.0 {
                return Err(self.1.len());
            }
            self.1.push(t.clone());
            Ok(())
        }
    }

    /// Every transaction is summarised; the record takes them until a write fails,
    /// and that failure is kept (once) while the summary goes on.
    #[test]
    fn summary_goes_on_after_the_record_fails() {
        let (txs, m) = example_run();
        let expected = Summary::build(&txs, &m, 1);
        let mut all = TransactionSink::new(Some(FailsAt(usize::MAX, Vec::new())));
        let mut failing = TransactionSink::new(Some(FailsAt(2, Vec::new())));
        for t in &txs {
            all.add(t);
            failing.add(t);
        }
        assert_eq!(failing.counts().total, txs.len() as u64);
        let (summary, record, error) = all.finish(&m, 1);
        assert_eq!(summary, expected);
        assert_eq!(record.map(|r| r.1), Some(txs.clone()));
        assert_eq!(error, None);
        assert_eq!(failing.take_error(), Some(1));
        assert_eq!(failing.take_error(), None);
        assert!(failing.record_mut().is_none());
        let (summary, record, _) = failing.finish(&m, 1);
        assert_eq!(summary, expected);
        assert!(record.is_none());
    }
}
