//! The libpcap source: one capture thread per interface, frames handed to the pipeline
//! thread through a bounded channel (a full channel blocks the reader, so the loss shows
//! up as libpcap's kernel drops rather than silently).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::capture::LinkType;
use crate::UnixNanos;

use super::{LiveError, OwnedFrame};

/// Capture threads for a set of interfaces.
pub struct PcapSource {
    rx: Receiver<OwnedFrame>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pub link_types: Vec<LinkType>,
    kernel_drops: Vec<Arc<AtomicU64>>,
    errors: Arc<std::sync::Mutex<Option<String>>>,
    pub events: u64,
    pub bytes: u64,
}

/// libpcap's DLT numbers differ from LINKTYPE numbers for a few link types.
fn link_type_of(dlt: i32) -> LinkType {
    match dlt {
        12 | 14 => LinkType::RAW,
        other => LinkType(other as u32),
    }
}

impl PcapSource {
    /// Opens every interface (promiscuous, snaplen 262144, immediate mode) with an
    /// optional BPF filter expression.
    pub fn open(interfaces: &[String], filter: Option<&str>) -> Result<Self, LiveError> {
        let (tx, rx) = sync_channel::<OwnedFrame>(16_384);
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(std::sync::Mutex::new(None));
        let mut threads = Vec::new();
        let mut link_types = Vec::new();
        let mut kernel_drops = Vec::new();
        for (index, name) in interfaces.iter().enumerate() {
            let mut cap = pcap::Capture::from_device(name.as_str())
                .and_then(|c| {
                    // A large kernel buffer rides out bursts while the pipeline works.
                    c.promisc(true)
                        .buffer_size(64 << 20)
                        .snaplen(262_144)
                        .immediate_mode(true)
                        .timeout(100)
                        .open()
                })
                .map_err(|e| LiveError::Open {
                    interface: name.clone(),
                    reason: e.to_string(),
                })?;
            if let Some(f) = filter {
                cap.filter(f, true).map_err(|e| LiveError::Open {
                    interface: name.clone(),
                    reason: format!("filter {f:?}: {e}"),
                })?;
            }
            // Non-blocking: libpcap's read timeout does not reliably return on a quiet
            // interface in immediate mode, and a reader must notice `stop` promptly.
            let cap = cap.setnonblock().map_err(|e| LiveError::Open {
                interface: name.clone(),
                reason: e.to_string(),
            })?;
            link_types.push(link_type_of(cap.get_datalink().0));
            let drops = Arc::new(AtomicU64::new(0));
            kernel_drops.push(drops.clone());
            threads.push(spawn_reader(
                name.clone(),
                index as u32,
                cap,
                tx.clone(),
                stop.clone(),
                drops,
                errors.clone(),
            ));
        }
        Ok(PcapSource {
            rx,
            threads,
            stop,
            link_types,
            kernel_drops,
            errors,
            events: 0,
            bytes: 0,
        })
    }

    /// Waits up to `timeout` for frames and hands every available one to `out`.
    pub fn poll(
        &mut self,
        timeout: Duration,
        out: &mut dyn FnMut(OwnedFrame),
    ) -> Result<usize, LiveError> {
        if let Ok(mut e) = self.errors.lock() {
            if let Some(msg) = e.take() {
                return Err(LiveError::Capture(msg));
            }
        }
        let mut n = 0;
        match self.rx.recv_timeout(timeout) {
            Ok(f) => {
                self.count(&f);
                out(f);
                n += 1;
            }
            Err(RecvTimeoutError::Timeout) => return Ok(0),
            Err(RecvTimeoutError::Disconnected) => {
                // The threads stop on an error they recorded just before.
                let why = self.errors.lock().ok().and_then(|mut e| e.take());
                return Err(LiveError::Capture(
                    why.unwrap_or_else(|| "every capture thread stopped".into()),
                ));
            }
        }
        // Drain what is already queued, bounded so the caller gets control back.
        while n < 4096 {
            match self.rx.try_recv() {
                Ok(f) => {
                    self.count(&f);
                    out(f);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        Ok(n)
    }

    fn count(&mut self, f: &OwnedFrame) {
        self.events += 1;
        self.bytes += f.data.len() as u64;
    }

    pub fn kernel_drops(&self) -> u64 {
        self.kernel_drops
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for PcapSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock readers stuck on a full channel.
        while self.rx.try_recv().is_ok() {}
        for t in self.threads.drain(..) {
            while !t.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = t.join();
        }
    }
}

fn spawn_reader(
    name: String,
    index: u32,
    mut cap: pcap::Capture<pcap::Active>,
    tx: SyncSender<OwnedFrame>,
    stop: Arc<AtomicBool>,
    drops: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Option<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last_stats = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match cap.next_packet() {
                Ok(p) => {
                    let ts = p.header.ts;
                    let ts: UnixNanos = (ts.tv_sec.max(0) as u64) * 1_000_000_000
                        + (ts.tv_usec.max(0) as u64) * 1_000;
                    let frame = OwnedFrame {
                        ts,
                        interface: index,
                        data: p.data.to_vec(),
                        orig_len: p.header.len,
                    };
                    if tx.send(frame).is_err() {
                        return;
                    }
                }
                Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => {
                    // Nothing queued: a short nap bounds both latency and wake-ups.
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    if let Ok(mut slot) = errors.lock() {
                        slot.get_or_insert(format!("{name}: {e}"));
                    }
                    return;
                }
            }
            if last_stats.elapsed() > Duration::from_millis(500) {
                if let Ok(s) = cap.stats() {
                    drops.store(
                        u64::from(s.dropped) + u64::from(s.if_dropped),
                        Ordering::Relaxed,
                    );
                }
                last_stats = std::time::Instant::now();
            }
        }
    })
}
