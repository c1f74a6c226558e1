//! Live runs: frames from a live source into the same `Pipeline` as offline, with the
//! sinks a long-running observer needs (CSV appended as transactions finish, a pcapng
//! of what the tap saw, the metrics endpoint, a one-line status).
//!
//! Over 600 lines: the live loop with its CSV rotation, saver and status line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Pipeline, PipelineConfig, PipelineResult};
use crate::capture::{CaptureWriter, FrameBuf, FrameMerger, LinkType, WriteFormat};
use crate::live::{LiveError, OwnedFrame};
use crate::metrics::http::{MetricsServer, Snapshot};
use crate::metrics::window::{self, WindowStats, Windows};
use crate::metrics::{LiveMetrics, SourceCounters};
use crate::transaction::Transaction;
use crate::UnixNanos;
use observer_core::engine::{RecordWriter, TransactionSink};
use observer_core::summary::{StatusCounts, Summary};
use observer_core::transaction::csv::TransactionCsvWriter;

/// When to start a new CSV file.
#[derive(Clone, Debug, Default)]
pub struct CsvRotation {
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub pipeline: PipelineConfig,
    pub csv: Option<PathBuf>,
    pub csv_rotation: CsvRotation,
    /// Save every frame the source delivered (pcapng), like tcpdump's `-w`.
    pub save: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    pub metrics_public: bool,
    /// Refresh a one-line status on stderr (only when it is a terminal).
    pub status_line: bool,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Names of the interfaces, in the order frames number them.
    pub interfaces: Vec<String>,
    /// Switch to this user once everything is open (None: stay as started).
    pub user: Option<String>,
    /// Where the caller writes the figures when the run ends: checked before the
    /// capture starts, as the user the run will be by then.
    pub report_dir: Option<PathBuf>,
    /// Also send every transaction to ClickHouse.
    pub store: Option<crate::store::ClickHouseConfig>,
    /// Per-pair state (metric series, summary table entries) idle this long in capture
    /// time is dropped and counted (None: kept for the whole run, as `analyze` keeps it).
    pub pair_horizon: Option<Duration>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        let mut pipeline = PipelineConfig::default();
        pipeline.reorder.window_ns = crate::capture::DEFAULT_LIVE_REORDER_WINDOW_NS;
        LiveConfig {
            pipeline,
            csv: None,
            csv_rotation: CsvRotation::default(),
            save: None,
            metrics: None,
            metrics_public: false,
            status_line: false,
            duration: None,
            interfaces: Vec::new(),
            user: None,
            report_dir: None,
            store: None,
            pair_horizon: None,
        }
    }
}

/// How long a live run keeps a pair's series and summary entry after its latest
/// transaction: a pair polling at any usual interval (JXTA's default is 30 s) stays,
/// while a gateway's pairs that come and go by the hundred thousand do not pile up
/// over weeks.
pub const DEFAULT_PAIR_HORIZON: Duration = Duration::from_secs(3600);

/// How often the idle pairs are looked for: each sweep walks every pair.
const PAIR_SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A live source, polled by the run loop.
pub enum LiveSource {
    #[cfg(target_os = "linux")]
    Ebpf(Box<crate::live::ebpf::EbpfTap>),
    #[cfg(feature = "pcap")]
    Pcap(crate::live::pcap::PcapSource),
    /// Frames handed in by the caller: a capture replayed ([`LiveSource::replay`]).
    /// Its frames' own stamps are the run's clock (see [`Clock`]).
    Channel {
        rx: std::sync::mpsc::Receiver<OwnedFrame>,
        link_types: Vec<LinkType>,
        events: u64,
        bytes: u64,
    },
}

/// Frames a replay keeps queued ahead of the run loop: the producer waits beyond it,
/// so a replay costs the memory of a few frames, not of the capture.
const REPLAY_QUEUE_FRAMES: usize = 64;

impl LiveSource {
    /// A capture held in memory delivered frame by frame, in file order, as a tap on
    /// its interfaces would (a thread feeds a bounded queue; the source ends with the
    /// capture): a live run without an interface, for tests and replays.
    pub fn replay(
        name: &str,
        bytes: Vec<u8>,
        link_types: Vec<LinkType>,
    ) -> Result<LiveSource, crate::capture::CaptureError> {
        let mut reader = crate::capture::CaptureReader::from_bytes(name, bytes)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(REPLAY_QUEUE_FRAMES);
        std::thread::spawn(move || {
            // A damaged record ends the replay as it would end a file's analysis.
            while let Ok(Some(f)) = reader.next_frame() {
                let frame = OwnedFrame {
                    ts: f.ts,
                    interface: f.interface,
                    data: f.data.to_vec(),
                    orig_len: f.orig_len,
                };
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        Ok(LiveSource::channel(rx, link_types))
    }

    /// The frames `rx` delivers, on interfaces of these link types.
    fn channel(rx: std::sync::mpsc::Receiver<OwnedFrame>, link_types: Vec<LinkType>) -> Self {
        LiveSource::Channel {
            rx,
            link_types,
            events: 0,
            bytes: 0,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            #[cfg(target_os = "linux")]
            LiveSource::Ebpf(_) => "ebpf",
            #[cfg(feature = "pcap")]
            LiveSource::Pcap(_) => "pcap",
            LiveSource::Channel { .. } => "channel",
        }
    }

    /// A tap's frames are stamped as they arrive, so the wall clock is theirs, and a
    /// quiet wire still moves it; a replay's frames carry a past capture's stamps and
    /// come as fast as they are read.
    fn clock(&self) -> Clock {
        match self {
            LiveSource::Channel { .. } => Clock::Capture,
            #[allow(unreachable_patterns)]
            _ => Clock::Wall,
        }
    }

    fn link_type(&self, interface: u32) -> LinkType {
        let list = match self {
            // The tap copies packets from their Ethernet header.
            #[cfg(target_os = "linux")]
            LiveSource::Ebpf(_) => return LinkType::ETHERNET,
            #[cfg(feature = "pcap")]
            LiveSource::Pcap(p) => &p.link_types,
            LiveSource::Channel { link_types, .. } => link_types,
        };
        list.get(interface as usize)
            .copied()
            .unwrap_or(LinkType::ETHERNET)
    }

    fn link_types(&self, n: usize) -> Vec<LinkType> {
        (0..n as u32).map(|i| self.link_type(i)).collect()
    }

    /// Returns `Ok(None)` when the source has ended (a channel whose sender is gone).
    fn poll(
        &mut self,
        timeout: Duration,
        out: &mut dyn FnMut(OwnedFrame),
    ) -> Result<Option<usize>, LiveError> {
        match self {
            #[cfg(target_os = "linux")]
            LiveSource::Ebpf(t) => t
                .poll(timeout, out)
                .map(Some)
                .map_err(|e| LiveError::Capture(e.to_string())),
            #[cfg(feature = "pcap")]
            LiveSource::Pcap(p) => p.poll(timeout, out).map(Some),
            LiveSource::Channel {
                rx, events, bytes, ..
            } => {
                // One frame a poll: the run's periodic work, on the frames' clock,
                // then falls between the same frames however the replay thread is
                // scheduled (batches of up to 4,096 frames moved the ordered release,
                // and the heap's peak, with the replay's timing).
                let frame = match rx.recv_timeout(timeout) {
                    Ok(f) => f,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(Some(0)),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
                };
                *events += 1;
                *bytes += frame.data.len() as u64;
                out(frame);
                Ok(Some(1))
            }
        }
    }

    fn mark_flow(&mut self, a: SocketAddr, b: SocketAddr) {
        match self {
            #[cfg(target_os = "linux")]
            LiveSource::Ebpf(t) => {
                if let Err(e) = t.mark_flow(a, b) {
                    tracing::warn!("{e}");
                }
            }
            _ => {
                let _ = (a, b);
            }
        }
    }

    /// Detaches a tap (filters and qdisc); other sources just stop.
    pub fn close(self) -> Result<(), LiveError> {
        match self {
            #[cfg(target_os = "linux")]
            LiveSource::Ebpf(t) => t.detach().map_err(|e| LiveError::Capture(e.to_string())),
            _ => Ok(()),
        }
    }

    fn counters(&self) -> SourceCounters {
        match self {
            #[cfg(target_os = "linux")]
            LiveSource::Ebpf(t) => t.counters(),
            #[cfg(feature = "pcap")]
            LiveSource::Pcap(p) => SourceCounters {
                source: "pcap",
                events: p.events,
                bytes: p.bytes,
                kernel_drops: p.kernel_drops(),
                ..SourceCounters::default()
            },
            LiveSource::Channel { events, bytes, .. } => SourceCounters {
                source: "channel",
                events: *events,
                bytes: *bytes,
                ..SourceCounters::default()
            },
        }
    }
}

/// What a finished live run hands back.
pub struct LiveOutcome {
    /// The pipeline's counters; its `transactions` is empty (they went to the sinks).
    pub result: PipelineResult,
    /// The whole run, built as `analyze` builds it (same order, same builder), so it
    /// equals the analysis of the run's `-w` file.
    pub summary: Summary,
    /// The rolling windows (last minute, last hour) at the end of the run.
    pub windows: Vec<(&'static str, WindowStats)>,
    pub source: SourceCounters,
    /// Pairs dropped from the per-pair views (`--pair-horizon`).
    pub pair_expiry: crate::metrics::PairExpiry,
    /// What the ClickHouse sink did, when there was one.
    pub store: Option<crate::store::StoreStats>,
    /// The error that ended the run early once it was capturing (the source vanished,
    /// an output could not be written): the summary still covers everything seen
    /// until then; set-up errors are `Err` instead, nothing having been seen.
    pub failure: Option<LiveError>,
}

/// The CSV sink: appends, flushes every batch, rotates by size or age.
struct CsvSink {
    path: PathBuf,
    rotation: CsvRotation,
    writer: TransactionCsvWriter<BufWriter<File>>,
    opened: Instant,
    bytes: u64,
    rotations: u32,
}

impl CsvSink {
    fn open(path: &Path, rotation: CsvRotation) -> Result<Self, LiveError> {
        let err = |source| LiveError::Write {
            path: path.display().to_string(),
            source,
        };
        let file = crate::live::outfile::open_output(path, crate::live::outfile::Existing::Append)?;
        let existing = file.metadata().map_err(err)?.len();
        let writer = if existing > 0 {
            // Appending to an earlier run's file: its header is already there.
            TransactionCsvWriter::without_header_with_causes(BufWriter::new(file))
        } else {
            TransactionCsvWriter::with_cause_columns(BufWriter::new(file)).map_err(|e| {
                LiveError::Write {
                    path: path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?
        };
        Ok(CsvSink {
            path: path.to_path_buf(),
            rotation,
            writer,
            opened: Instant::now(),
            bytes: existing,
            rotations: 0,
        })
    }

    fn write(&mut self, t: &Transaction) -> Result<(), LiveError> {
        let n = self
            .writer
            .write(t)
            .map_err(|e| self.io_err(e.to_string()))?;
        self.bytes += n;
        Ok(())
    }

    fn io_err(&self, msg: String) -> LiveError {
        LiveError::Write {
            path: self.path.display().to_string(),
            source: std::io::Error::other(msg),
        }
    }

    /// Flushes to the file (the flush policy: at most one second of records is in
    /// memory at any time), then rotates if due.
    fn flush(&mut self) -> Result<(), LiveError> {
        self.writer
            .flush()
            .map_err(|e| self.io_err(e.to_string()))?;
        let by_size = self.rotation.max_bytes.is_some_and(|m| self.bytes >= m);
        let by_age = self
            .rotation
            .max_age
            .is_some_and(|a| self.opened.elapsed() >= a);
        if by_size || by_age {
            self.rotations += 1;
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let rotated = PathBuf::from(format!(
                "{}.{stamp}.{}",
                self.path.display(),
                self.rotations
            ));
            // A rotation that fails (the directory became unwritable, the disk is full)
            // must not end the run: records go on into the current file.
            if let Err(e) = std::fs::rename(&self.path, &rotated) {
                tracing::error!(
                    "cannot rotate {} to {}: {e}; appending to it instead",
                    self.path.display(),
                    rotated.display()
                );
                self.opened = Instant::now();
                return Ok(());
            }
            match CsvSink::open(&self.path, self.rotation.clone()) {
                Ok(next) => {
                    *self = CsvSink {
                        rotations: self.rotations,
                        ..next
                    }
                }
                Err(e) => {
                    // The old file was moved; keep writing into it under its new name.
                    tracing::error!("{e}; appending to {} instead", rotated.display());
                    self.path = rotated;
                    self.opened = Instant::now();
                }
            }
        }
        Ok(())
    }
}

/// Creates (if needed) and writes a probe file in every directory the run writes in
/// after set-up: the CSV's (rotation renames and creates files there) and the report's.
fn check_later_outputs(cfg: &LiveConfig, switched_to: Option<&str>) -> Result<(), LiveError> {
    let rotates = cfg.csv_rotation.max_bytes.is_some() || cfg.csv_rotation.max_age.is_some();
    let csv_dir = cfg.csv.as_deref().filter(|_| rotates).map(|p| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    });
    let dirs = [
        (csv_dir, "the rotated CSV"),
        (cfg.report_dir.as_deref(), "the report"),
    ];
    for (dir, what) in dirs {
        let Some(dir) = dir else {
            continue;
        };
        let probe = dir.join(format!(".observer-write-check-{}", std::process::id()));
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map(drop)
        });
        let _ = std::fs::remove_file(&probe);
        if let Err(source) = written {
            return Err(match switched_to {
                Some(user) => LiveError::NotWritableAfterDrop {
                    path: dir.display().to_string(),
                    user: user.to_string(),
                    what,
                    source,
                },
                None => LiveError::Write {
                    path: dir.display().to_string(),
                    source,
                },
            });
        }
    }
    Ok(())
}

/// What moves a live run's periodic work (the release of what is due, CSV flushes,
/// metrics, the sweep of idle pairs) and a quiet wire's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// A tap: every second of wall time, and a quiet wire lets PINGs time out.
    Wall,
    /// A replay: every second of the frames' own time, and nothing passes between
    /// frames. The run then releases, times out and holds exactly what the frames
    /// decide, however its threads are scheduled: with the wall clock, a replay
    /// stamped in the past read by a descheduled thread was a "quiet wire" that
    /// moved the clock to the present and timed out every PING outstanding.
    Capture,
}

/// Periodic work due every `every` of the run's [`Clock`].
struct Every {
    clock: Clock,
    every: Duration,
    wall: Instant,
    capture: Option<UnixNanos>,
}

impl Every {
    fn new(clock: Clock, every: Duration) -> Self {
        Every {
            clock,
            every,
            wall: Instant::now(),
            capture: None,
        }
    }

    /// Whether the work is due at capture time `now`; if so, it counts as done.
    fn due(&mut self, now: UnixNanos) -> bool {
        match self.clock {
            Clock::Wall => {
                let due = self.wall.elapsed() >= self.every;
                if due {
                    self.wall = Instant::now();
                }
                due
            }
            Clock::Capture => {
                let every = u64::try_from(self.every.as_nanos()).unwrap_or(u64::MAX);
                let due = self
                    .capture
                    .is_none_or(|last| now >= last.saturating_add(every));
                if due {
                    self.capture = Some(now);
                }
                due
            }
        }
    }
}

fn wall_now() -> UnixNanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl RecordWriter for CsvSink {
    type Error = LiveError;
    fn write_record(&mut self, t: &Transaction) -> Result<(), LiveError> {
        self.write(t)
    }
}

/// Where every finished transaction goes, in report order; none is kept.
struct Sinks<'a> {
    /// The summary and the CSV, as `analyze` has them.
    transactions: TransactionSink<CsvSink>,
    store: Option<crate::store::ClickHouseSink>,
    metrics: LiveMetrics,
    windows: Windows,
    on_transaction: &'a mut dyn FnMut(&Transaction),
    /// The first write that failed; the run stops on it.
    error: Option<LiveError>,
}

impl Sinks<'_> {
    fn take(&mut self, t: Transaction) {
        self.metrics.record(&t);
        self.transactions.add(&t);
        self.windows.add(&t);
        (self.on_transaction)(&t);
        if let Some(s) = &self.store {
            if let Err(e) = s.try_push(&t) {
                self.error.get_or_insert(e.into());
            }
        }
    }

    /// Drops the per-pair state idle for longer than `horizon` before `now` (capture
    /// time); the totals and rolling windows are not per pair and stay exact.
    fn expire_idle(&mut self, now: u64, horizon: Duration) {
        let horizon_ns = u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX);
        let Some(before) = now.checked_sub(horizon_ns) else {
            return;
        };
        let series = self.metrics.expire_idle(before);
        let summary = self.transactions.expire_idle(before);
        self.metrics.expiry.summary += summary;
        if series + summary > 0 {
            tracing::debug!(series, summary, "idle pairs expired");
        }
    }

    /// A CSV that failed (a full disk) is written no more (the sink drops it): the
    /// summary and the other sinks still take every transaction until the run ends.
    fn flush_csv(&mut self) {
        if let Some(e) = self.transactions.take_error() {
            self.error.get_or_insert(e);
        }
        if let Some(Err(e)) = self.transactions.record_mut().map(CsvSink::flush) {
            self.error.get_or_insert(e);
        }
    }
}

/// At most this long, once a stop is asked, reading what the source already holds
/// (on a wire that never goes quiet the drain ends here).
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// Runs until `stop` is set, the duration is over, or the source ends; what the source
/// holds when it stops is read first (at most [`STOP_DRAIN`]).
pub fn run(
    source: LiveSource,
    cfg: LiveConfig,
    stop: &AtomicBool,
) -> Result<LiveOutcome, LiveError> {
    run_each(source, cfg, stop, &mut |_| {})
}

/// The decoding as offline, with the horizons a run of weeks needs (docs/live.md): a
/// finished correlator serves only to recognise a copy or a late PONG, so it is kept one
/// more timeout past its PING's deadline, not until 65,536 newer ones came; presence
/// for the pair horizon.
fn live_pipeline(cfg: &LiveConfig) -> PipelineConfig {
    let mut p = cfg.pipeline.clone();
    p.matcher.forget_finished_after_ns = Some(p.matcher.timeout_ns);
    p.matcher.presence_horizon_ns = cfg
        .pair_horizon
        .map(|h| u64::try_from(h.as_nanos()).unwrap_or(u64::MAX));
    p
}

/// Like [`run`], also handing each finished transaction to `on_transaction`, in the
/// order `analyze` hands them on.
pub fn run_each(
    mut source: LiveSource,
    cfg: LiveConfig,
    stop: &AtomicBool,
    on_transaction: &mut dyn FnMut(&Transaction),
) -> Result<LiveOutcome, LiveError> {
    // Several interfaces (or one tap's per-CPU buffers) deliver frames slightly out of
    // time order: the same window as offline puts them back.
    let mut merger = FrameMerger::new(cfg.pipeline.reorder.clone());
    // The tap passes a flow on only once it is marked, and the pipeline now sees frames
    // a window late: welcome lines are spotted as frames arrive, so that marking a flow
    // found by content waits for no window.
    let mut early = (source.name() == "ebpf" && merger.window_ns() > 0)
        .then(|| crate::packet::PacketDecoder::new(cfg.pipeline.packet.clone()));
    let mut welcomed: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut pipeline = Pipeline::new(live_pipeline(&cfg));
    pipeline.announce_jxta_flows();
    let csv = match &cfg.csv {
        Some(p) => Some(CsvSink::open(p, cfg.csv_rotation.clone())?),
        None => None,
    };
    // Opened before privileges are dropped: the spool may be in a root-only directory.
    let store = match &cfg.store {
        Some(c) => Some(crate::store::ClickHouseSink::start(c.clone())?),
        None => None,
    };
    let link_types = source.link_types(cfg.interfaces.len().max(1));
    let mut saver = match &cfg.save {
        Some(p) => Some(open_saver(p, &link_types)?),
        None => None,
    };
    let snapshot: Snapshot = Arc::default();
    let server = match cfg.metrics {
        Some(addr) => Some(
            MetricsServer::start(addr, cfg.metrics_public, snapshot.clone())
                .map_err(|e| LiveError::Capture(e.to_string()))?,
        ),
        None => None,
    };
    // Everything that needs root is open now (capture, output files, listening
    // socket): parse the wire as an unprivileged user from here on.
    #[allow(unused_mut)]
    let mut switched_to: Option<&str> = None;
    #[cfg(target_os = "linux")]
    if let Some(user) = &cfg.user {
        let ebpf = source.name() == "ebpf";
        match crate::live::privileges::drop_root(user, &crate::live::privileges::needed(ebpf)) {
            Ok(crate::live::privileges::Dropped::To { uid, kept, .. }) => {
                tracing::info!(uid, ?kept, "running as {user}");
                switched_to = Some(user);
            }
            Ok(crate::live::privileges::Dropped::NotRoot) => {}
            Err(e) => return Err(LiveError::Capture(e.to_string())),
        }
    }
    // What is written later (CSV rotation, the report) must be writable by whom the run
    // now is: finding out at the end would lose the summary.
    check_later_outputs(&cfg, switched_to)?;
    let status = (cfg.status_line && std::io::stderr().is_terminal()).then(status_bar);
    let mut sinks = Sinks {
        transactions: TransactionSink::new(csv),
        store,
        metrics: LiveMetrics::default(),
        windows: Windows::default(),
        on_transaction,
        error: None,
    };
    let started = Instant::now();
    let clock = source.clock();
    let mut tick = Every::new(clock, Duration::from_secs(1));
    let mut sweep = Every::new(clock, PAIR_SWEEP_EVERY);
    let mut write_error: Option<LiveError> = None;
    let saved_path = cfg
        .save
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();

    // Set when the run is asked to stop: what the source already holds (the tap's
    // ring, libpcap's buffer, a replay's queue) was captured before and is read first,
    // until the source has nothing ready or for at most `STOP_DRAIN`. Stopping at once
    // left a backlog unread: a loaded machine's live run lost the last transactions
    // the peers recorded (tests/security.rs, flow-map flood, 15 of 26).
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_none()
            && (stop.load(Ordering::Relaxed)
                || cfg.duration.is_some_and(|d| started.elapsed() >= d))
        {
            stopping = Some(Instant::now());
        }
        let wait = if stopping.is_some() {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        let polled = source.poll(wait, &mut |f| {
            if let Some(w) = &mut saver {
                if let Err(e) = w.write_frame(f.interface, f.ts, &f.data, f.orig_len) {
                    write_error.get_or_insert(LiveError::Write {
                        path: saved_path.clone(),
                        source: e,
                    });
                }
            }
            let buf = FrameBuf {
                ts: f.ts,
                link_type: link_types
                    .get(f.interface as usize)
                    .copied()
                    .unwrap_or(LinkType::ETHERNET),
                interface: f.interface,
                orig_len: f.orig_len,
                data: f.data,
            };
            if let Some(seg) = early.as_mut().and_then(|d| d.decode(&buf.frame())) {
                if matches!(&seg.l4, crate::packet::L4::Tcp { payload, .. }
                    if payload.starts_with(crate::jxta::welcome::WELCOME_SIGNATURE))
                {
                    welcomed.push((seg.src, seg.dst));
                }
            }
            // The frame's bytes move into the reorder queue, not copied again.
            if let Err(buf) = merger.offer_owned(buf) {
                pipeline.frame(&buf.frame());
            }
            merger.release(None, &mut |fr| pipeline.frame(fr));
        });
        if let Some(e) = write_error.take() {
            // The `-w` file is given up; the run ends below with its summary.
            saver = None;
            sinks.error.get_or_insert(e);
        }
        let drained = stopping
            .is_some_and(|since| matches!(polled, Ok(Some(0))) || since.elapsed() >= STOP_DRAIN);
        let ended = match polled {
            Ok(None) => true,
            Ok(Some(0)) if clock == Clock::Wall => {
                // A quiet wire: let time pass so PINGs still time out. Keep a margin for
                // frames stamped a moment ago that are still queued; frames held for
                // reordering that long are due, and the pipeline's clock stays behind
                // what is still held.
                let now = wall_now().saturating_sub(200_000_000);
                merger.advance(now);
                merger.release(None, &mut |fr| pipeline.frame(fr));
                pipeline.advance_to(now.saturating_sub(merger.window_ns()));
                false
            }
            Ok(Some(_)) => false,
            Err(e) => {
                // The interface vanished or the capture broke: keep what was found
                // (flushed below), remove the tap, then report.
                sinks.error.get_or_insert(e);
                true
            }
        };
        pipeline.release_ordered(&mut |t| sinks.take(t));
        // Flows found to be JXTA by content pass the tap's in-kernel filter from now on.
        for (a, b) in welcomed.drain(..).chain(pipeline.take_jxta_flows()) {
            source.mark_flow(a, b);
        }
        if tick.due(pipeline.now()) || ended {
            // Offline the release waits for a batch; live, what is due goes out every
            // second however few.
            pipeline.release_ordered_now(&mut |t| sinks.take(t));
            sinks.flush_csv();
            if let Some(Err(source)) = saver.as_mut().map(|w| w.flush()) {
                saver = None;
                sinks.error.get_or_insert(LiveError::Write {
                    path: saved_path.clone(),
                    source,
                });
            }
            if let Some(h) = cfg.pair_horizon {
                if sweep.due(pipeline.now()) {
                    sinks.expire_idle(pipeline.now(), h);
                }
            }
            let counters = source.counters();
            pipeline.set_reorder_stats(merger.stats());
            let windows = sinks.windows.stats(pipeline.now());
            let store_stats = sinks.store.as_ref().map(|s| s.counters().snapshot());
            // Only for an endpoint to serve: with 10,000 pairs' series it is ~10 MB,
            // built every second (the soak's profile: the largest block of its heap).
            if server.is_some() {
                let mut exposition = sinks.metrics.exposition(
                    pipeline.matcher(),
                    pipeline.packet_stats(),
                    pipeline.flow_stats(),
                    &pipeline.jxta_stats(),
                    pipeline.jim_stats(),
                    pipeline.active_flows(),
                    &counters,
                );
                window::add_to(&windows, &mut exposition);
                if let Some(s) = &store_stats {
                    s.add_to(&mut exposition);
                }
                if let Ok(mut s) = snapshot.lock() {
                    *s = Arc::new(exposition);
                }
            }
            if let Some(bar) = &status {
                bar.set_message(status_text(
                    sinks.transactions.counts(),
                    &windows,
                    &counters,
                    pipeline.active_flows(),
                    store_stats.as_ref(),
                ));
            }
        }
        // A failed output or source ends the run here, with everything seen so far
        // still going to the summary below.
        if ended || drained || sinks.error.is_some() {
            break;
        }
    }
    if let Some(bar) = status {
        bar.finish();
    }
    tracing::info!(source = source.name(), "live capture stopped");
    let counters = source.counters();
    let closed = source.close();
    merger.flush(None, &mut |fr| pipeline.frame(fr));
    pipeline.set_reorder_stats(merger.stats());
    let mut result = pipeline.finish();
    for t in std::mem::take(&mut result.transactions) {
        sinks.take(t);
    }
    sinks.flush_csv();
    if let Some(Err(source)) = saver.take().map(|w| w.finish()) {
        sinks.error.get_or_insert(LiveError::Write {
            path: saved_path,
            source,
        });
    }
    let Sinks {
        store,
        transactions,
        mut windows,
        error,
        metrics,
        ..
    } = sinks;
    // The first error is the one reported; a later one (a detach after the interface
    // went, a store that cannot finish) is logged.
    let mut failure = error;
    let mut also = |e: LiveError| match &failure {
        Some(_) => tracing::error!("{e}"),
        None => failure = Some(e),
    };
    let store = match store.map(|s| s.finish()) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            also(e.into());
            None
        }
        None => None,
    };
    if let Err(e) = closed {
        also(e);
    }
    // Every write error was collected above: what is left is the summary.
    let (summary, _, _) = transactions.finish(&result.matcher, result.duration_ns());
    Ok(LiveOutcome {
        windows: windows.stats(result.last_ts),
        summary,
        result,
        source: counters,
        pair_expiry: metrics.expiry,
        store,
        failure,
    })
}

fn open_saver(
    path: &Path,
    link_types: &[LinkType],
) -> Result<CaptureWriter<BufWriter<File>>, LiveError> {
    let err = |source| LiveError::Write {
        path: path.display().to_string(),
        source,
    };
    let file = crate::live::outfile::open_output(path, crate::live::outfile::Existing::Truncate)?;
    let first = link_types.first().copied().unwrap_or(LinkType::ETHERNET);
    let mut w =
        CaptureWriter::new(BufWriter::new(file), WriteFormat::Pcapng, first).map_err(err)?;
    for lt in link_types.iter().skip(1) {
        w.add_interface(*lt, 9).map_err(err)?;
    }
    Ok(w)
}

/// The one-line status on stderr. indicatif draws it: it cuts the line to the
/// terminal's width (a wrapped line is not cleared by the next refresh) and redraws it
/// in place, which a hand-written `\r` and erase-line did not do on a narrow terminal.
fn status_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{wide_msg}") {
        bar.set_style(style);
    }
    bar
}

fn status_text(
    total: &StatusCounts,
    windows: &[(&'static str, WindowStats)],
    c: &SourceCounters,
    flows: usize,
    store: Option<&crate::store::StoreStats>,
) -> String {
    use std::fmt::Write as _;
    let mut line = format!(
        "{} transactions ({} ok, {} timeout)",
        total.total, total.ok, total.timeout
    );
    for (label, w) in windows {
        let _ = write!(line, " | {label}: {} ok, {} timeout", w.ok, w.timeout);
        for (q, ms) in &w.quantiles_ms {
            let _ = write!(line, " p{}={ms:.1}ms", (q * 100.0).round());
        }
    }
    if windows.iter().any(|(_, w)| !w.quantiles_ms.is_empty()) {
        let _ = write!(line, " (±{}%)", window::SKETCH_RELATIVE_ERROR * 100.0);
    }
    let _ = write!(
        line,
        " | {} events | drops {} kernel, {} user | {flows} flows",
        c.events, c.kernel_drops, c.userspace_drops
    );
    if let Some(s) = store {
        let _ = write!(
            line,
            " | stored {}, spool {} ({} B), dropped {}",
            s.records_stored,
            s.spool_records,
            s.spool_bytes,
            s.spool_overflow_records + s.records_dropped_busy
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::build::LinkVariant;
    use crate::synth;

    /// The four-peers scenario (timeouts, open PINGs, presence changes, order
    /// matching) as a pcap file's bytes.
    fn four_peers_pcap() -> Vec<u8> {
        synth::four_peers()
            .render()
            .capture_bytes(
                LinkVariant::Ethernet,
                WriteFormat::Pcap {
                    nanos: false,
                    big_endian: false,
                },
            )
            .expect("capture")
    }

    /// A live run fed the four-peers capture (timeouts, open PINGs, presence changes,
    /// order matching), saved with `-w`: its summary is the one `analyze` builds from
    /// the saved file, field for field, and the CSV it appended holds the same rows.
    #[test]
    fn live_summary_equals_analyze_of_the_saved_capture() {
        let bytes = four_peers_pcap();
        let dir = tempfile::tempdir().expect("tempdir");
        let saved = dir.path().join("live.pcapng");
        let csv = dir.path().join("live.csv");
        let cfg = LiveConfig {
            save: Some(saved.clone()),
            csv: Some(csv.clone()),
            interfaces: vec!["eth0".into()],
            ..LiveConfig::default()
        };
        let source = LiveSource::replay("four", bytes, vec![LinkType::ETHERNET]).expect("capture");
        let stop = AtomicBool::new(false);
        let outcome = run(source, cfg, &stop).expect("live run");
        assert!(outcome.result.transactions.is_empty());

        let mut sink = TransactionSink::new(Some(
            TransactionCsvWriter::with_cause_columns(Vec::new()).expect("csv"),
        ));
        let analysis = crate::runtime::analyze_each(
            std::slice::from_ref(&saved),
            PipelineConfig::default(),
            false,
            &mut |t| sink.add(&t),
        );
        assert!(!analysis.damaged(), "{:?}", analysis.inputs);
        let (offline, offline_csv, error) =
            sink.finish(&analysis.result.matcher, analysis.result.duration_ns());
        assert!(error.is_none(), "{error:?}");
        let offline_csv = offline_csv.expect("csv writer");
        assert!(offline.transactions.timeout > 0 && offline.transactions.open > 0);
        assert!(!offline.presence.changes.is_empty());
        assert_eq!(outcome.summary, offline);
        assert_eq!(
            serde_json::to_string(&outcome.summary).expect("json"),
            serde_json::to_string(&offline).expect("json")
        );
        let live_rows = std::fs::read_to_string(&csv).expect("live csv");
        let offline_rows =
            String::from_utf8(offline_csv.into_inner().expect("csv")).expect("utf-8");
        assert_eq!(live_rows, offline_rows);
        // The windows count what the run ended with (all of it lies within the hour).
        let hour = outcome
            .windows
            .iter()
            .find(|(l, _)| *l == "1h")
            .map(|(_, w)| w.clone())
            .expect("1h window");
        assert_eq!(hour.ok, offline.transactions.ok);
        assert_eq!(hour.timeout, offline.transactions.timeout);
        assert_eq!(hour.quantiles_ms.len(), window::QUANTILES.len());
    }

    /// The four-peer capture's transactions as `analyze` finds them, and its frames as
    /// a live source hands them over.
    fn four_peers_offline_and_frames() -> (Vec<Transaction>, Vec<OwnedFrame>) {
        let bytes = four_peers_pcap();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("four.pcap");
        std::fs::write(&path, &bytes).expect("write capture");
        let mut offline = Vec::new();
        let analysis = crate::runtime::analyze_each(
            std::slice::from_ref(&path),
            PipelineConfig::default(),
            false,
            &mut |t| offline.push(t),
        );
        assert!(!analysis.damaged(), "{:?}", analysis.inputs);

        let mut reader = crate::capture::CaptureReader::from_bytes("four", bytes).expect("capture");
        let mut frames = Vec::new();
        while let Some(f) = reader.next_frame().expect("frame") {
            frames.push(OwnedFrame {
                ts: f.ts,
                interface: f.interface,
                data: f.data.to_vec(),
                orig_len: f.orig_len,
            });
        }
        (offline, frames)
    }

    /// Frames the source holds when the stop comes were captured before it: a run asked
    /// to stop before its first poll still reads its whole backlog (a queue that stays
    /// open, as a tap's ring does), and finds what `analyze` finds.
    #[test]
    fn a_stop_reads_what_the_source_already_holds() {
        let (offline, frames) = four_peers_offline_and_frames();
        assert!(!offline.is_empty());
        let (tx, rx) = std::sync::mpsc::sync_channel(frames.len());
        for f in frames {
            tx.send(f).expect("queued");
        }
        let source = LiveSource::channel(rx, vec![LinkType::ETHERNET]);
        let stop = AtomicBool::new(true);
        let mut live = Vec::new();
        run_each(source, LiveConfig::default(), &stop, &mut |t| {
            live.push(t.clone())
        })
        .expect("live run");
        drop(tx);
        assert_eq!(live, offline);
    }

    /// A replay whose thread stalls for longer than a poll (a loaded machine) is not a
    /// quiet wire: its clock is its frames', so the stall times nothing out and the
    /// run finds what the capture's analysis finds. With the wall clock, the stall
    /// moved time to the present (the synthetic capture is stamped in the past) and
    /// every PING outstanding at that moment timed out.
    #[test]
    fn a_stalled_replay_times_nothing_out() {
        let (offline, frames) = four_peers_offline_and_frames();
        let (tx, rx) = std::sync::mpsc::sync_channel(REPLAY_QUEUE_FRAMES);
        let stall_at = frames.len() / 2;
        let feeder = std::thread::spawn(move || {
            for (i, f) in frames.into_iter().enumerate() {
                if i == stall_at || i == stall_at + 1 {
                    // Three polls' worth of nothing.
                    std::thread::sleep(Duration::from_millis(350));
                }
                if tx.send(f).is_err() {
                    break;
                }
            }
        });
        let source = LiveSource::channel(rx, vec![LinkType::ETHERNET]);
        let stop = AtomicBool::new(false);
        let mut live = Vec::new();
        let outcome = run_each(source, LiveConfig::default(), &stop, &mut |t| {
            live.push(t.clone())
        })
        .expect("live run");
        feeder.join().expect("feeder");
        let timeouts = |ts: &[Transaction]| ts.iter().filter(|t| t.stop.is_none()).count();
        assert_eq!(timeouts(&live), timeouts(&offline));
        assert_eq!(live, offline);
        assert_eq!(
            outcome.summary.transactions.total,
            offline.len() as u64,
            "{:?}",
            outcome.summary.transactions
        );
    }
}
