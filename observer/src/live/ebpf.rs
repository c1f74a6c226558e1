//! The eBPF source: loads `observer-ebpf`'s TC classifier with aya, attaches it to the
//! ingress and egress of each interface, and turns its ring-buffer records back into
//! frames for the pipeline.
//!
//! Filters are attached through netlink (classic `tc` filters on a `clsact` qdisc), not
//! TCX links, so `tc filter show` shows exactly what the observer added; which
//! filters belong to which running observer is recorded by `tc_owner`, so that the
//! next start removes only those of an observer that was killed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;
use observer_ebpf as shared;

use super::OwnedFrame;
use crate::metrics::SourceCounters;
use crate::UnixNanos;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(
        "the eBPF source needs root (or CAP_BPF and CAP_NET_ADMIN); {0}. `--source pcap` may work with fewer privileges"
    )]
    Permission(String),
    #[error("interface {0:?} not found")]
    NoInterface(String),
    #[error("cannot load the eBPF tap: {0}")]
    Load(String),
    #[error("cannot attach the eBPF tap to {interface}: {reason}")]
    Attach { interface: String, reason: String },
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
    #[error("polling the ring buffer: {0}")]
    Poll(std::io::Error),
    #[error("interface {0:?} disappeared")]
    InterfaceGone(String),
}

/// A TCP 4-tuple as the kernel's `flows` map keys it.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct FlowKey(shared::TapFlow);

// SAFETY: `TapFlow` is `repr(C)`, made of integers and byte arrays, with no padding
// (16 + 16 + 2 + 2 bytes): any bit pattern is valid and every byte is initialised.
unsafe impl aya::Pod for FlowKey {}

fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The ring buffer between the kernel program and user space, unless `--ring-buffer`
/// says otherwise. Every packet takes at least one 2 KiB record, so 64 MiB holds about
/// 32,000 packets: what arrives while the reader is not scheduled must fit in it. At
/// 16 MiB two replays of 50,000 packets/s each lost frames on a loaded machine in two
/// runs of three, where 64 MiB lost none (docs/performance.md).
pub const DEFAULT_RING_BYTES: u32 = 64 << 20;
/// The largest ring buffer taken: its memory is the kernel's, locked, for the whole run.
pub const MAX_RING_BYTES: u32 = 1 << 30;

/// Checks a ring-buffer size: the kernel takes a power of two of at least a page.
pub fn ring_bytes(n: u64) -> Result<u32, String> {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if !n.is_power_of_two() || n < page || n > u64::from(MAX_RING_BYTES) {
        return Err(format!(
            "the ring buffer must be a power of two from {page} bytes (a page) to {} MiB, not {n}",
            MAX_RING_BYTES >> 20
        ));
    }
    u32::try_from(n).map_err(|_| format!("{n} bytes is too large a ring buffer"))
}

#[derive(Clone, Debug)]
pub struct TapConfig {
    pub interfaces: Vec<String>,
    /// Ports whose segments always reach user space.
    pub ports: Vec<u16>,
    /// Size of the ring buffer (checked by [`ring_bytes`]).
    pub ring_bytes: u32,
}

/// A packet being put back together from its chunks (one per CPU at a time: a
/// program run emits all chunks of a packet before the next packet on that CPU).
struct Partial {
    pkt_id: u32,
    next: u16,
    chunks: u16,
    ts_ns: u64,
    ifindex: u32,
    pkt_len: u32,
    cut: bool,
    data: Vec<u8>,
}

/// User-space counters of the tap (the kernel's are read from its map).
#[derive(Clone, Copy, Debug, Default)]
pub struct TapUserStats {
    pub frames: u64,
    pub bytes: u64,
    /// Packets whose chunks did not all arrive (the ring buffer was full mid-packet).
    pub incomplete: u64,
    /// Records that could not be parsed or came from an interface we did not attach.
    pub bad_records: u64,
    /// Flow directions that could not be added to the kernel's map.
    pub flow_map_full: u64,
    /// Flow directions user space added to the kernel's map.
    pub flows_marked: u64,
}

pub struct EbpfTap {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
    /// The filters attached, owned (dropping one detaches it).
    links: Vec<(String, aya::programs::tc::SchedClassifierLink)>,
    /// The record of those filters, locked while this tap lives (`tc_owner`).
    ownership: Option<super::tc_owner::Ownership>,
    created_qdisc: Vec<String>,
    ifindex: HashMap<u32, u32>,
    /// The kernel's stamps (CLOCK_MONOTONIC) turned into wall-clock time.
    clock: WallClock,
    partial: HashMap<u32, Partial>,
    stats: TapUserStats,
    detached: bool,
    interfaces: Vec<String>,
    last_check: std::time::Instant,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Wall clock minus CLOCK_MONOTONIC now: the wall clock read between two monotonic
/// reads, the tightest of a few tries (a preemption between two reads would otherwise
/// shift every stamp by its length).
fn wall_minus_monotonic() -> i128 {
    let mut best = (i128::MAX, 0);
    for _ in 0..3 {
        let before = clock_ns(libc::CLOCK_MONOTONIC);
        let wall = clock_ns(libc::CLOCK_REALTIME);
        let after = clock_ns(libc::CLOCK_MONOTONIC);
        if after - before < best.0 {
            best = (after - before, wall - (before + after) / 2);
        }
    }
    best.1
}

/// A change of the offset beyond this is the wall clock being set (NTP's step at boot,
/// a resumed VM, an operator), not the jitter of measuring it: counted and logged.
const CLOCK_STEP_NS: i128 = 1_000_000;

/// Turns the kernel's CLOCK_MONOTONIC stamps into wall-clock time. The offset is
/// measured again at every poll, so that records follow the wall clock when it is set,
/// as a capture's stamps do (an offset kept from the attach would leave a run of weeks
/// off by every step since, and by every suspension: CLOCK_MONOTONIC stops then).
#[derive(Clone, Copy, Debug)]
struct WallClock {
    offset_ns: i128,
    steps: u64,
}

impl WallClock {
    fn new() -> Self {
        WallClock {
            offset_ns: wall_minus_monotonic(),
            steps: 0,
        }
    }

    /// Takes a new measurement of the offset; a step is counted and logged.
    fn update(&mut self, offset_ns: i128) {
        let moved = offset_ns - self.offset_ns;
        if moved.abs() > CLOCK_STEP_NS {
            self.steps += 1;
            tracing::warn!(
                step_us = (moved / 1000) as i64,
                "the wall clock was set: packets stamped from now on follow it (an RTT that spans the step includes it, as in a capture)"
            );
        }
        self.offset_ns = offset_ns;
    }

    fn wall(&self, monotonic_ns: u64) -> UnixNanos {
        (i128::from(monotonic_ns) + self.offset_ns).clamp(0, i128::from(u64::MAX)) as UnixNanos
    }
}

fn has_clsact(interface: &str) -> bool {
    Command::new("tc")
        .args(["qdisc", "show", "dev", interface])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("clsact"))
        .unwrap_or(false)
}

/// ARPHRD_ETHER and ARPHRD_LOOPBACK: the devices whose packets start with an
/// Ethernet header at the TC hook, which is what the kernel program parses.
const ETHERNET_LIKE: [u32; 2] = [1, 772];

/// Refuses a device whose packets do not start with an Ethernet header (WireGuard,
/// tun, PPP: ARPHRD_NONE, ARPHRD_PPP, ...): every offset of the kernel program would
/// be wrong and it would see nothing, silently.
fn check_link_type(interface: &str) -> Result<(), TapError> {
    let path = format!("/sys/class/net/{interface}/type");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(()); // No sysfs: nothing to check against.
    };
    match text.trim().parse::<u32>() {
        Ok(t) if ETHERNET_LIKE.contains(&t) => Ok(()),
        Ok(t) => Err(TapError::Attach {
            interface: interface.to_string(),
            reason: format!(
                "its link type ({t}) has no Ethernet header, which the eBPF tap needs; use --source pcap on this interface"
            ),
        }),
        Err(_) => Ok(()),
    }
}

fn ifindex_of(interface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(interface).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (idx != 0).then_some(idx)
}

impl EbpfTap {
    pub fn attach(cfg: &TapConfig) -> Result<Self, TapError> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let mut ifindex = HashMap::new();
        for (i, name) in cfg.interfaces.iter().enumerate() {
            let idx = ifindex_of(name).ok_or_else(|| TapError::NoInterface(name.clone()))?;
            check_link_type(name)?;
            ifindex.insert(idx, i as u32);
        }
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(shared::MAP_EVENTS, cfg.ring_bytes)
            .load(shared::object())
            .map_err(|e| {
                let text = format!("{e:#}");
                if euid != 0 || text.contains("Operation not permitted") || text.contains("EPERM") {
                    TapError::Permission(format!("loading failed: {text}"))
                } else {
                    TapError::Load(text)
                }
            })?;
        let mut tap = EbpfTap {
            events: RingBuf::try_from(
                ebpf.take_map(shared::MAP_EVENTS)
                    .ok_or(TapError::Map("events", "missing from the object".into()))?,
            )
            .map_err(|e| TapError::Map("events", e.to_string()))?,
            ebpf,
            links: Vec::new(),
            ownership: None,
            created_qdisc: Vec::new(),
            ifindex,
            clock: WallClock::new(),
            partial: HashMap::new(),
            stats: TapUserStats::default(),
            detached: false,
            interfaces: cfg.interfaces.clone(),
            last_check: std::time::Instant::now(),
        };
        {
            let mut ports: BpfHashMap<_, u16, u8> = BpfHashMap::try_from(
                tap.ebpf
                    .map_mut(shared::MAP_PORTS)
                    .ok_or(TapError::Map("ports", "missing".into()))?,
            )
            .map_err(|e| TapError::Map("ports", e.to_string()))?;
            for p in &cfg.ports {
                ports
                    .insert(p, 1, 0)
                    .map_err(|e| TapError::Map("ports", e.to_string()))?;
            }
        }
        for name in [shared::PROG_INGRESS, shared::PROG_EGRESS] {
            let prog: &mut SchedClassifier = tap
                .ebpf
                .program_mut(name)
                .ok_or_else(|| TapError::Load(format!("program {name} missing from the object")))?
                .try_into()
                .map_err(|e| TapError::Load(format!("{e}")))?;
            prog.load().map_err(|e| {
                let text = format!("{e:#}");
                if euid != 0 {
                    TapError::Permission(text)
                } else {
                    TapError::Load(text)
                }
            })?;
        }
        // Clean-up, attach and claim under one lock: another observer starting now
        // must not take our fresh filters for stale ones, nor we its.
        let setup = super::tc_owner::setup_lock().map_err(|e| TapError::Attach {
            interface: cfg.interfaces.join(","),
            reason: format!("filter ownership ({}): {e}", super::tc_owner::OWNERS_DIR),
        })?;
        super::tc_owner::cleanup_stale(
            &cfg.interfaces,
            &[shared::PROG_INGRESS, shared::PROG_EGRESS],
        );
        tap.ownership =
            Some(
                super::tc_owner::Ownership::create().map_err(|e| TapError::Attach {
                    interface: cfg.interfaces.join(","),
                    reason: format!("filter ownership ({}): {e}", super::tc_owner::OWNERS_DIR),
                })?,
            );
        // From here on, an error detaches what was attached (Drop).
        for iface in &cfg.interfaces {
            if !has_clsact(iface) {
                tc::qdisc_add_clsact(iface).map_err(|e| TapError::Attach {
                    interface: iface.clone(),
                    reason: format!("adding the clsact qdisc: {e}"),
                })?;
                tap.created_qdisc.push(iface.clone());
            }
            for (dir, name) in [
                (TcAttachType::Ingress, shared::PROG_INGRESS),
                (TcAttachType::Egress, shared::PROG_EGRESS),
            ] {
                let prog: &mut SchedClassifier = tap
                    .ebpf
                    .program_mut(name)
                    .ok_or_else(|| TapError::Load(format!("program {name} missing")))?
                    .try_into()
                    .map_err(|e| TapError::Load(format!("{e}")))?;
                let attach_err = |reason: String| TapError::Attach {
                    interface: iface.clone(),
                    reason,
                };
                let id = prog
                    .attach_with_options(iface, dir, TcAttachOptions::Netlink(NlOptions::default()))
                    .map_err(|e| attach_err(format!("{e:#}")))?;
                let link = prog
                    .take_link(id)
                    .map_err(|e| attach_err(format!("{e:#}")))?;
                let claim = (
                    iface.clone(),
                    super::tc_owner::dir_name(dir),
                    link.priority().map_err(|e| attach_err(format!("{e:#}")))?,
                    u32::from(link.handle().map_err(|e| attach_err(format!("{e:#}")))?),
                );
                tap.links.push((iface.clone(), link));
                if let Some(o) = &mut tap.ownership {
                    o.claim(&claim)
                        .map_err(|e| attach_err(format!("recording the filter: {e}")))?;
                }
            }
        }
        drop(setup);
        Ok(tap)
    }

    /// Lets a flow recognised as JXTA by content through the in-kernel filter (both
    /// directions).
    pub fn mark_flow(&mut self, a: SocketAddr, b: SocketAddr) -> Result<(), TapError> {
        let mut flows: BpfHashMap<_, FlowKey, u8> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(shared::MAP_FLOWS)
                .ok_or(TapError::Map("flows", "missing".into()))?,
        )
        .map_err(|e| TapError::Map("flows", e.to_string()))?;
        for (s, d) in [(a, b), (b, a)] {
            let key = FlowKey(shared::TapFlow {
                saddr: mapped(s.ip()),
                daddr: mapped(d.ip()),
                sport: s.port(),
                dport: d.port(),
            });
            // Kernels before 6.5 check CAP_BPF on every map update, not only at
            // load: raise it (permitted, not effective, after the drop) for a retry.
            let inserted = flows.insert(key, 1, 0).is_ok()
                || crate::live::privileges::with_effective(caps::Capability::CAP_BPF, || {
                    flows.insert(key, 1, 0).is_ok()
                });
            if inserted {
                self.stats.flows_marked += 1;
            } else {
                self.stats.flow_map_full += 1;
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for records and hands every complete packet to `out`.
    pub fn poll(
        &mut self,
        timeout: Duration,
        out: &mut dyn FnMut(OwnedFrame),
    ) -> Result<usize, TapError> {
        // A deleted interface takes its filters with it and simply goes quiet: look for
        // it once a second so the run ends with an error instead of watching nothing.
        if self.last_check.elapsed() >= Duration::from_secs(1) {
            self.last_check = std::time::Instant::now();
            if let Some(gone) = self.interfaces.iter().find(|i| ifindex_of(i).is_none()) {
                return Err(TapError::InterfaceGone(gone.clone()));
            }
        }
        let mut pfd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(TapError::Poll(e));
        }
        self.clock.update(wall_minus_monotonic());
        let mut frames = 0;
        let mut asm = Assembler {
            partial: &mut self.partial,
            stats: &mut self.stats,
            ifindex: &self.ifindex,
            clock: self.clock,
        };
        // Bounded, so the caller regains control under a flood.
        for _ in 0..65_536 {
            let Some(item) = self.events.next() else {
                break;
            };
            let Some((h, data)) = shared::TapEvent::parse(&item) else {
                asm.stats.bad_records += 1;
                continue;
            };
            if let Some(frame) = asm.add(&h, data) {
                asm.stats.frames += 1;
                asm.stats.bytes += frame.data.len() as u64;
                out(frame);
                frames += 1;
            }
        }
        Ok(frames)
    }

    /// The kernel's counters summed over CPUs.
    pub fn kernel_counters(&self) -> [u64; shared::TAP_C_COUNT as usize] {
        let mut out = [0u64; shared::TAP_C_COUNT as usize];
        let Some(map) = self.ebpf.map(shared::MAP_COUNTERS) else {
            return out;
        };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else {
            return out;
        };
        for (i, slot) in out.iter_mut().enumerate() {
            // Kernels before 6.5 want CAP_BPF for a lookup too (see `mark_flow`).
            let values = arr.get(&(i as u32), 0).or_else(|_| {
                crate::live::privileges::with_effective(caps::Capability::CAP_BPF, || {
                    arr.get(&(i as u32), 0)
                })
            });
            if let Ok(values) = values {
                *slot = values.iter().sum();
            }
        }
        out
    }

    pub fn user_stats(&self) -> TapUserStats {
        self.stats
    }

    pub fn counters(&self) -> SourceCounters {
        let k = self.kernel_counters();
        SourceCounters {
            source: "ebpf",
            events: self.stats.frames,
            bytes: self.stats.bytes,
            kernel_drops: k[shared::TAP_C_DROPS as usize],
            userspace_drops: self.stats.incomplete + self.stats.bad_records,
            flows_marked: k[shared::TAP_C_MARKED as usize] + self.stats.flows_marked,
            flow_marks_failed: k[shared::TAP_C_MARK_FAILED as usize] + self.stats.flow_map_full,
            clock_steps: self.clock.steps,
        }
    }

    /// Removes every filter the tap added and the clsact qdiscs it created.
    pub fn detach(mut self) -> Result<(), TapError> {
        self.detach_all()
    }

    fn detach_all(&mut self) -> Result<(), TapError> {
        if self.detached {
            return Ok(());
        }
        self.detached = true;
        crate::live::privileges::raise_for_teardown();
        let mut first_error = None;
        for (iface, link) in self.links.drain(..) {
            if let Err(e) = aya::programs::Link::detach(link) {
                // The interface may be gone (deleted veth): nothing left to remove.
                if ifindex_of(&iface).is_some() {
                    first_error.get_or_insert(TapError::Attach {
                        interface: iface.clone(),
                        reason: format!("detaching: {e}"),
                    });
                }
            }
        }
        if let Some(o) = &mut self.ownership {
            o.release();
        }
        for iface in self.created_qdisc.drain(..) {
            // Only ours, and only empty: removing the qdisc removes every filter on
            // it, another tool's or another observer's included.
            if ifindex_of(&iface).is_some() {
                if super::tc_owner::has_filters(&iface) {
                    tracing::info!("leaving the clsact qdisc on {iface}: other filters use it");
                    continue;
                }
                let _ = Command::new("tc")
                    .args(["qdisc", "del", "dev", &iface, "clsact"])
                    .status();
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Puts packets back together from their chunks.
struct Assembler<'a> {
    partial: &'a mut HashMap<u32, Partial>,
    stats: &'a mut TapUserStats,
    ifindex: &'a HashMap<u32, u32>,
    clock: WallClock,
}

impl Assembler<'_> {
    fn add(&mut self, h: &shared::TapEventHeader, data: &[u8]) -> Option<OwnedFrame> {
        if h.chunk == 0 {
            if self.partial.remove(&h.cpu).is_some() {
                self.stats.incomplete += 1;
            }
            let mut buf = Vec::with_capacity(h.pkt_len.min(65_536) as usize);
            buf.extend_from_slice(data);
            self.partial.insert(
                h.cpu,
                Partial {
                    pkt_id: h.pkt_id,
                    next: 1,
                    chunks: h.chunks,
                    ts_ns: h.ts_ns,
                    ifindex: h.ifindex,
                    pkt_len: h.pkt_len,
                    cut: h.flags & shared::TAP_F_CUT != 0,
                    data: buf,
                },
            );
        } else {
            let p = self.partial.get_mut(&h.cpu);
            match p {
                Some(p) if p.pkt_id == h.pkt_id && p.next == h.chunk => {
                    p.data.extend_from_slice(data);
                    p.next += 1;
                }
                _ => {
                    self.partial.remove(&h.cpu);
                    self.stats.incomplete += 1;
                    return None;
                }
            }
        }
        let done = self.partial.get(&h.cpu).is_some_and(|p| p.next >= p.chunks);
        if !done {
            return None;
        }
        let p = self.partial.remove(&h.cpu)?;
        let Some(&interface) = self.ifindex.get(&p.ifindex) else {
            self.stats.bad_records += 1;
            return None;
        };
        let ts = self.clock.wall(p.ts_ns);
        if p.cut {
            tracing::debug!(len = p.pkt_len, "packet longer than the tap carries");
        }
        Some(OwnedFrame {
            ts,
            interface,
            orig_len: p.pkt_len,
            data: p.data,
        })
    }
}

impl Drop for EbpfTap {
    fn drop(&mut self) {
        if let Err(e) = self.detach_all() {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_follow_the_wall_clock_when_it_is_set() {
        let mut c = WallClock {
            offset_ns: 1_000_000_000_000,
            steps: 0,
        };
        assert_eq!(c.wall(5), 1_000_000_000_005);
        // Measurement jitter moves the offset without counting a step.
        c.update(1_000_000_000_000 + CLOCK_STEP_NS);
        assert_eq!((c.steps, c.wall(5)), (0, 1_000_001_000_005));
        // NTP sets the clock 8 ms ahead, then back: two steps, the stamps follow.
        c.update(1_000_009_000_000);
        assert_eq!((c.steps, c.wall(5)), (1, 1_000_009_000_005));
        c.update(1_000_000_000_000);
        assert_eq!((c.steps, c.wall(5)), (2, 1_000_000_000_005));
        // A wall clock before the epoch, or beyond u64, is clamped, not wrapped.
        c.update(-10);
        assert_eq!(c.wall(5), 0);
        c.update(i128::from(u64::MAX));
        assert_eq!(c.wall(5), u64::MAX);
    }

    #[test]
    fn the_measured_offset_is_the_clocks_difference() {
        let measured = wall_minus_monotonic();
        let naive = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
        // The naive reading can only be off by the time between its two reads, which
        // a loaded machine stretches; a step of the wall clock between the two would
        // count too: a second bounds both for this check.
        assert!(
            (measured - naive).abs() < 1_000_000_000,
            "{measured} vs {naive}"
        );
    }

    #[test]
    fn ring_sizes_are_powers_of_two_from_a_page() {
        assert_eq!(ring_bytes(16 << 20), Ok(16 << 20));
        assert_eq!(
            ring_bytes(u64::from(DEFAULT_RING_BYTES)),
            Ok(DEFAULT_RING_BYTES)
        );
        assert_eq!(ring_bytes(1 << 30), Ok(1 << 30));
        for bad in [0, 100, 3 << 20, 1 << 31, u64::MAX] {
            let e = ring_bytes(bad).expect_err("refused");
            assert!(e.contains("power of two"), "{bad}: {e}");
        }
    }
}
