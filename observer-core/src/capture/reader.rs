//! Over 600 lines: pcap and pcapng share one reader's mapping and paging.

use super::{CaptureError, CaptureFormat, CaptureStats, Frame, LinkType};
use crate::UnixNanos;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// Largest record or pcapng block we are willing to buffer. Real link layers
/// stay under 256 KiB (libpcap's maximum snaplen); 16 MiB leaves room for
/// odd captures while making a corrupt length field an error instead of a
/// giant allocation.
pub const MAX_BLOCK_LEN: u32 = 16 << 20;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const SHB_TYPE: u32 = 0x0a0d_0d0a;
const BOM: u32 = 0x1a2b_3c4d;
const IDB_TYPE: u32 = 1;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

const BUF_CAPACITY: usize = 256 << 10;

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: LinkType,
    snaplen: u32,
    tsresol: u8,
    tsoffset: i64,
}

#[derive(Debug)]
enum State {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link_type: LinkType,
    },
    Pcapng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
    /// A fatal error was reported: the stream is over.
    Done,
}

/// Where the bytes of the current record come from. `block()` is the record (or
/// pcapng block) being parsed: `clear` starts a new one, `read` appends to it.
enum Input {
    /// Any byte stream (standard input, a pipe): copied into `buf`.
    Stream {
        reader: BufReader<Box<dyn Read + Send>>,
        buf: Vec<u8>,
    },
    /// Bytes addressable in place (a mapped file, or bytes in memory); the block is
    /// `map[start..end]`, and `end` is also the read position.
    Mapped {
        /// Shared with the shards of `--threads`, which read frames from it by place
        /// ([`SharedMap`]) after this reader has moved on or been dropped.
        map: Arc<Backing>,
        start: usize,
        end: usize,
        /// Below this, pages the reader has passed have been handed back (see
        /// `Input::clear`).
        released: usize,
    },
}

/// What a `Mapped` input reads from. `Memory` exists so that tests and the fuzz
/// target drive the in-place path without a file.
enum Backing {
    File(memmap2::Mmap),
    Memory(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::File(m) => m,
            Backing::Memory(v) => v,
        }
    }
}

/// The bytes of a reader's input read in place, shared: a frame's place (see
/// [`CaptureReader::next_frame_placed`]) stays readable from it while a clone lives,
/// after the reader has moved on or been dropped (`--threads` hands its shards frames
/// by place rather than copied).
#[derive(Clone)]
pub struct SharedMap(Arc<Backing>);

impl SharedMap {
    /// Whether both are the same input's bytes.
    pub fn same(&self, other: &SharedMap) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Hands back the pages of `[from, upto)` (widened to whole pages) of a mapped
    /// file: once read, they would stay in the resident set. They may be read again
    /// (a page faults back in from the page cache with the same bytes).
    pub fn release(&self, from: usize, upto: usize) {
        drop_pages(&self.0, from, upto);
    }
}

impl std::ops::Deref for SharedMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Mapped pages behind the read position are handed back in steps of this much (the
/// resident capture is up to a step behind the reader and two behind the hand-on of
/// held frames, per reader: every shard of `--threads` has one).
const RELEASE_STEP: usize = 512 << 10;

/// Hands back the pages of `map[from..upto)` (a file's; bytes in memory stay).
fn drop_pages(map: &Backing, from: usize, upto: usize) {
    if let Backing::File(map) = map {
        // SAFETY: borrows of these bytes may be live (a held frame being handed on, a
        // shard of `--threads` reading a frame by its place on another thread), and
        // that is sound because the map is a read-only mapping of a file: a
        // dropped page read again faults back in from the page cache with the same
        // bytes, so nothing is lost, only residency. (A file truncated under the map is
        // the SIGBUS limitation docs/robustness.md states, with or without this.)
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                from,
                upto.saturating_sub(from),
            )
        };
    }
}

/// The pages that handing held frames on faults back in (see `Input::clear`), handed
/// back again as the hand-on moves past them: a burst that hands on a whole window at
/// once (the next frame stamped seconds later, or the end of the input) would otherwise
/// map all of its tens of MB again until the reader next moved a MiB.
#[derive(Debug, Default)]
pub struct HeldPages {
    /// Below this, pages have been handed back a second time (a multiple of
    /// [`RELEASE_STEP`]).
    released: usize,
}

impl HeldPages {
    /// Hands nothing back: the frames handed on are read again by place on other
    /// threads (`--threads`), which hand the pages back once they are done with them.
    pub fn kept() -> Self {
        // `handed_on`'s test saturates at `usize::MAX`, past any frame's place.
        HeldPages {
            released: usize::MAX,
        }
    }

    /// A frame whose bytes start at `at` in `reader`'s map was handed on. Frames are
    /// handed on in time order, which is offset order but for reordering: pages a step
    /// behind the furthest frame handed on stay, so a frame reordered across a page
    /// boundary does not fault its page in twice.
    ///
    /// Called for every frame, and nearly always with nothing to hand back: the test is
    /// one comparison. `released` is a multiple of the step, so the step boundary a step
    /// behind the furthest frame passes `released` by a step exactly when the furthest
    /// is two steps past `released`; and after a release the furthest is less than two
    /// steps past the new `released`, so only a frame two steps past it moves the
    /// furthest far enough, and is then the furthest.
    #[inline]
    pub fn handed_on(&mut self, reader: &CaptureReader, at: usize) {
        if at >= self.released.saturating_add(2 * RELEASE_STEP) {
            self.hand_back(reader, at);
        }
    }

    #[cold]
    fn hand_back(&mut self, reader: &CaptureReader, furthest: usize) {
        let upto = furthest.saturating_sub(RELEASE_STEP) & !(RELEASE_STEP - 1);
        if let Input::Mapped { map, .. } = &reader.input {
            drop_pages(map, self.released, upto);
        }
        self.released = upto;
    }
}

impl Input {
    fn block(&self) -> &[u8] {
        match self {
            Input::Stream { buf, .. } => buf,
            Input::Mapped {
                map, start, end, ..
            } => map.get(*start..*end).unwrap_or_default(),
        }
    }

    fn clear(&mut self) {
        match self {
            Input::Stream { buf, .. } => buf.clear(),
            Input::Mapped {
                map,
                start,
                end,
                released,
            } => {
                *start = *end;
                // Pages already read would otherwise stay mapped and count in the
                // resident set until the whole file is: peak RSS would grow with the
                // file. Dropping them costs nothing (they stay in the page cache).
                // Frames held for reordering are read again when handed on: their
                // pages fault back in from the page cache (a minor fault per 64 KiB of
                // fault-around), so a window of held frames costs their offsets, not
                // the tens of MB of pages a busy 2 s spans; [`HeldPages`] drops those
                // a second time.
                if *start >= *released + RELEASE_STEP {
                    let upto = *start & !(RELEASE_STEP - 1);
                    drop_pages(map, *released, upto);
                    *released = upto;
                }
            }
        }
    }

    /// Appends up to `n` bytes to the block; returns how many there were. A stream's
    /// buffer grows with the data actually read, so a lying length field on a short
    /// file never allocates what it claims.
    fn read(&mut self, n: usize) -> io::Result<usize> {
        match self {
            Input::Stream { reader, buf } => reader.take(n as u64).read_to_end(buf),
            Input::Mapped { map, end, .. } => {
                let got = n.min(map.len().saturating_sub(*end));
                *end += got;
                Ok(got)
            }
        }
    }

    /// Skips up to `n` bytes; returns how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        match self {
            Input::Stream { reader, .. } => io::copy(&mut reader.take(n), &mut io::sink()),
            Input::Mapped {
                map, start, end, ..
            } => {
                let left = map.len().saturating_sub(*end) as u64;
                let got = n.min(left);
                *end += got as usize;
                *start = *end;
                Ok(got)
            }
        }
    }
}

/// Where the current frame's bytes sit in the block, plus its metadata.
struct Located {
    start: usize,
    len: usize,
    ts: UnixNanos,
    link_type: LinkType,
    orig_len: u32,
    interface: u32,
}

/// Streaming pcap / pcapng reader. Memory is bounded by one record (at most
/// [`MAX_BLOCK_LEN`]) plus a fixed read buffer; non-packet pcapng blocks are
/// skipped without being buffered, so it works on pipes of any length.
pub struct CaptureReader {
    name: String,
    input: Input,
    format: CaptureFormat,
    state: State,
    stats: CaptureStats,
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Opens a capture file; `-` reads standard input.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        if path.as_os_str() == "-" {
            return Self::from_reader("<stdin>", Box::new(io::stdin()));
        }
        let name = path.display().to_string();
        let open_err = |source| CaptureError::Open {
            name: name.clone(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        // Opening a directory succeeds on Unix; catch it here so the user gets
        // "is a directory" rather than a read error at byte 0.
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        // A regular file is mapped and its records borrowed in place: no copy through
        // a read buffer (that copy was a tenth of the analysis), and several readers
        // of one file share the page cache (`--threads`). Like ripgrep, we accept
        // that another process truncating the file while it is read ends the run
        // with SIGBUS; `from_reader` is the copying alternative.
        if meta.is_file() && meta.len() > 0 {
            // SAFETY: the map is read-only and private to this reader; the bytes are
            // only ever read as `&[u8]` and checked like any other input.
            if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
                let _ = map.advise(memmap2::Advice::Sequential);
                let mut reader = Self::with_input(
                    name,
                    Input::Mapped {
                        map: Arc::new(Backing::File(map)),
                        start: 0,
                        end: 0,
                        released: 0,
                    },
                );
                reader.read_file_header()?;
                return Ok(reader);
            }
        }
        Self::from_reader(name, Box::new(file))
    }

    fn with_input(name: String, input: Input) -> Self {
        CaptureReader {
            name,
            input,
            format: CaptureFormat::Pcapng,
            state: State::Done,
            stats: CaptureStats::default(),
        }
    }

    /// Reads a capture held in memory, in place, as a mapped file is read.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<Self, CaptureError> {
        let mut reader = Self::with_input(
            name.into(),
            Input::Mapped {
                map: Arc::new(Backing::Memory(bytes)),
                start: 0,
                end: 0,
                released: 0,
            },
        );
        reader.read_file_header()?;
        Ok(reader)
    }

    /// Reads a capture from any byte stream (need not be seekable).
    pub fn from_reader(
        name: impl Into<String>,
        r: Box<dyn Read + Send>,
    ) -> Result<Self, CaptureError> {
        let mut reader = Self::with_input(
            name.into(),
            Input::Stream {
                reader: BufReader::with_capacity(BUF_CAPACITY, r),
                buf: Vec::new(),
            },
        );
        reader.read_file_header()?;
        Ok(reader)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// File byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.stats.offset
    }

    /// Returns the next packet, `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        Ok(self.next_frame_placed()?.map(|(f, _)| f))
    }

    /// The whole input when it is read in place (a mapped file, bytes in memory).
    pub fn mapped(&self) -> Option<&[u8]> {
        match &self.input {
            Input::Mapped { map, .. } => Some(map),
            Input::Stream { .. } => None,
        }
    }

    /// The input's bytes, shared, when it is read in place: places of its frames stay
    /// readable from it.
    pub fn shared_map(&self) -> Option<SharedMap> {
        match &self.input {
            Input::Mapped { map, .. } => Some(SharedMap(Arc::clone(map))),
            Input::Stream { .. } => None,
        }
    }

    /// Like [`Self::next_frame`], with where the frame's bytes start in
    /// [`Self::mapped`] when the input is read in place: a frame can then be held as an
    /// offset and read again later (see [`super::FrameMerger`]).
    #[inline]
    pub fn next_frame_placed(
        &mut self,
    ) -> Result<Option<(Frame<'_>, Option<usize>)>, CaptureError> {
        // The shortcut hands back where the record lies, not a borrow: a borrow returned
        // on one branch would hold `self` on the other (the general path) too.
        let Some(l) = self.mapped_pcap_record() else {
            return self.next_frame_general();
        };
        let data = match &self.input {
            Input::Mapped { map, .. } => map.get(l.start..l.start + l.len).unwrap_or_default(),
            Input::Stream { .. } => &[],
        };
        Ok(Some((
            Frame {
                ts: l.ts,
                link_type: l.link_type,
                data,
                orig_len: l.orig_len,
                interface: 0,
            },
            Some(l.start),
        )))
    }

    /// The next record when it is a mapped pcap's, whole ([`Self::mapped_pcap_record`]'s
    /// shortcut): its frame without its bytes (`data` empty), where they start in
    /// [`Self::mapped`], and their length. What a reader that holds frames by their place
    /// needs, without the slice of the bytes (their bounds were checked here already) or
    /// [`Self::next_frame_placed`]'s `Result` around it. `None`: nothing was read or
    /// counted; read the next frame with [`Self::next_frame_placed`].
    #[inline(always)]
    pub fn next_in_place(&mut self) -> Option<(Frame<'static>, usize, u32)> {
        let l = self.mapped_pcap_record()?;
        // A pcap record's length is a `u32` (no test is left once inlined).
        let len = u32::try_from(l.len).unwrap_or(u32::MAX);
        Some((
            Frame {
                ts: l.ts,
                link_type: l.link_type,
                data: &[],
                orig_len: l.orig_len,
                interface: l.interface,
            },
            l.start,
            len,
        ))
    }

    /// Every record and block [`Self::mapped_pcap_record`] does not take.
    #[inline(never)]
    fn next_frame_general(&mut self) -> Result<Option<(Frame<'_>, Option<usize>)>, CaptureError> {
        let located = match self.next_located() {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(None),
            Err(e) => {
                if !e.is_recoverable() {
                    self.state = State::Done;
                }
                return Err(e);
            }
        };
        let placed = match &self.input {
            Input::Mapped { start, .. } => Some(start + located.start),
            Input::Stream { .. } => None,
        };
        let data = self
            .input
            .block()
            .get(located.start..located.start.saturating_add(located.len))
            .unwrap_or_default();
        self.stats.frames += 1;
        self.stats.bytes += data.len() as u64;
        if (data.len() as u64) < u64::from(located.orig_len) {
            self.stats.snaplen_cut += 1;
        }
        Ok(Some((
            Frame {
                ts: located.ts,
                link_type: located.link_type,
                data,
                orig_len: located.orig_len,
                interface: located.interface,
            },
            placed,
        )))
    }

    fn read_file_header(&mut self) -> Result<(), CaptureError> {
        self.input.clear();
        let got = self.read_into_buf(4)?;
        if got == 0 {
            return Err(CaptureError::Empty {
                name: self.name.clone(),
            });
        }
        let magic_le = u32_at(self.input.block(), 0, false);
        let magic_be = u32_at(self.input.block(), 0, true);
        let pcap = [(PCAP_MAGIC_US, false), (PCAP_MAGIC_NS, true)]
            .into_iter()
            .find_map(|(m, nanos)| {
                if magic_le == m {
                    Some((nanos, false))
                } else if magic_be == m {
                    Some((nanos, true))
                } else {
                    None
                }
            });
        if let Some((nanos, big_endian)) = pcap {
            self.need(got, 4, "pcap file header")?;
            self.fill(20, "pcap file header")?;
            let link = u32_at(self.input.block(), 20, big_endian);
            // The upper bits of the link-type field carry FCS information
            // (pcap spec, section "LinkType"); the type itself is 16 bits.
            self.state = State::Pcap {
                big_endian,
                nanos,
                link_type: LinkType(link & 0xffff),
            };
            self.format = CaptureFormat::Pcap { nanos, big_endian };
            self.stats.offset = 24;
            return Ok(());
        }
        if magic_le == SHB_TYPE {
            self.need(got, 4, "pcapng section header")?;
            self.state = State::Pcapng {
                big_endian: false,
                interfaces: Vec::new(),
            };
            self.format = CaptureFormat::Pcapng;
            return self.read_shb_rest();
        }
        Err(CaptureError::NotACapture {
            name: self.name.clone(),
            magic: if got == 4 { magic_be } else { 0 },
        })
    }

    fn next_located(&mut self) -> Result<Option<Located>, CaptureError> {
        loop {
            match &self.state {
                State::Done => return Ok(None),
                State::Pcap {
                    big_endian,
                    nanos,
                    link_type,
                } => {
                    let (be, nanos, link_type) = (*big_endian, *nanos, *link_type);
                    return self.next_pcap_record(be, nanos, link_type);
                }
                State::Pcapng { .. } => {
                    if let Some(l) = self.next_pcapng_block()? {
                        return Ok(Some(l));
                    }
                    if matches!(self.state, State::Done) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn next_pcap_record(
        &mut self,
        be: bool,
        nanos: bool,
        link_type: LinkType,
    ) -> Result<Option<Located>, CaptureError> {
        self.input.clear();
        let got = self.read_into_buf(16)?;
        if got == 0 {
            self.state = State::Done;
            return Ok(None);
        }
        self.need(got, 16, "pcap record header")?;
        let (sec, frac, caplen, orig_len) = pcap_record_header(self.input.block(), be);
        if caplen > MAX_BLOCK_LEN {
            return Err(self.too_large("pcap record", caplen.into()));
        }
        self.input.clear();
        let got = self.read_into_buf(caplen as usize)?;
        // Report the record, not its payload, as the truncated thing: that is
        // where a user would look with a hex editor.
        if got < caplen as usize {
            return Err(CaptureError::Truncated {
                name: self.name.clone(),
                offset: self.stats.offset,
                what: "pcap record",
                needed: 16 + u64::from(caplen),
                got: 16 + got as u64,
            });
        }
        Ok(Some(self.pcap_record_read(
            sec, frac, caplen, orig_len, nanos, link_type,
        )))
    }

    /// A whole pcap record read: counted, and located at the start of what holds it.
    fn pcap_record_read(
        &mut self,
        sec: u32,
        frac: u32,
        caplen: u32,
        orig_len: u32,
        nanos: bool,
        link_type: LinkType,
    ) -> Located {
        self.stats.offset += 16 + u64::from(caplen);
        Located {
            start: 0,
            len: caplen as usize,
            ts: pcap_ts(sec, frac, nanos),
            link_type,
            orig_len,
            interface: 0,
        }
    }

    /// The next pcap record of a mapped input when all of it is there, taken where it
    /// lies and counted: what the general path ([`Self::next_pcap_record`]) finds,
    /// without its two reads (each a call that moves the block), its error paths and its
    /// `Result`. The header is read as one 16-byte array, its words at fixed places.
    /// `None` (pcapng, a stream, the end, a record too large or cut short): nothing was
    /// moved or counted, and the general path reads and reports it. `start` of the
    /// answer is the frame's place in the map.
    #[inline]
    fn mapped_pcap_record(&mut self) -> Option<Located> {
        let State::Pcap {
            big_endian: be,
            nanos,
            link_type,
        } = self.state
        else {
            return None;
        };
        let Input::Mapped {
            map,
            start,
            end,
            released,
        } = &mut self.input
        else {
            return None;
        };
        let at = *end;
        let body = at.checked_add(16)?;
        let header: &[u8; 16] = map.get(at..body)?.try_into().ok()?;
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let words = [word(0), word(4), word(8), word(12)];
        // One test of the byte order for the record, not one a word (each was a swap
        // and a conditional move: ~13 instructions of every frame).
        let [sec, frac, caplen, orig_len] = if be {
            words.map(u32::swap_bytes)
        } else {
            words
        };
        if caplen > MAX_BLOCK_LEN {
            return None;
        }
        let stop = body.checked_add(caplen as usize)?;
        if stop > map.len() {
            return None;
        }
        // What the general path's `clear` does before it reads the record.
        if at >= *released + RELEASE_STEP {
            let upto = at & !(RELEASE_STEP - 1);
            drop_pages(map, *released, upto);
            *released = upto;
        }
        *start = body;
        *end = stop;
        let stats = &mut self.stats;
        stats.offset += 16 + u64::from(caplen);
        stats.frames += 1;
        stats.bytes += u64::from(caplen);
        stats.snaplen_cut += u64::from(caplen < orig_len);
        Some(Located {
            start: body,
            len: caplen as usize,
            ts: pcap_ts(sec, frac, nanos),
            link_type,
            orig_len,
            interface: 0,
        })
    }

    /// Reads one pcapng block. Returns `Ok(None)` for blocks that carry no
    /// packet (the caller loops) and at end of file (state becomes `Done`).
    fn next_pcapng_block(&mut self) -> Result<Option<Located>, CaptureError> {
        let be = match &self.state {
            State::Pcapng { big_endian, .. } => *big_endian,
            _ => return Ok(None),
        };
        self.input.clear();
        let got = self.read_into_buf(8)?;
        if got == 0 {
            self.state = State::Done;
            return Ok(None);
        }
        self.need(got, 8, "pcapng block header")?;
        // The SHB type is a byte-order palindrome, so it is recognised before
        // we know the new section's byte order.
        if u32_at(self.input.block(), 0, false) == SHB_TYPE {
            return self.read_shb_rest().map(|()| None);
        }
        let block_type = u32_at(self.input.block(), 0, be);
        let block_len = u32_at(self.input.block(), 4, be);
        if block_len < 12 || block_len & 3 != 0 {
            return Err(self.malformed(
                "pcapng block",
                format!("block length {block_len} is not a multiple of 4 of at least 12"),
            ));
        }
        match block_type {
            IDB_TYPE | EPB_TYPE | SPB_TYPE => {}
            _ => {
                self.skip(u64::from(block_len) - 8, "pcapng block")?;
                self.stats.offset += u64::from(block_len);
                self.stats.other_blocks += 1;
                return Ok(None);
            }
        }
        if block_len > MAX_BLOCK_LEN {
            return Err(self.too_large("pcapng block", block_len.into()));
        }
        self.fill(block_len as usize - 8, "pcapng block")?;
        let trailer = u32_at(self.input.block(), block_len as usize - 4, be);
        if trailer != block_len {
            return Err(self.malformed(
                "pcapng block",
                format!("leading length {block_len} and trailing length {trailer} differ"),
            ));
        }
        let offset = self.stats.offset;
        self.stats.offset += u64::from(block_len);
        let body_end = block_len as usize - 4;
        match block_type {
            IDB_TYPE => {
                let iface = self.parse_idb(be, body_end, offset)?;
                self.stats.interfaces += 1;
                if let State::Pcapng { interfaces, .. } = &mut self.state {
                    interfaces.push(iface);
                }
                Ok(None)
            }
            EPB_TYPE => self.parse_epb(be, body_end, offset).map(Some),
            _ => self.parse_spb(be, body_end, offset).map(Some),
        }
    }

    /// Reads the rest of a section header block whose start (type, maybe
    /// length) is already in `buf`, and starts a new section.
    fn read_shb_rest(&mut self) -> Result<(), CaptureError> {
        let have = self.input.block().len().min(12);
        self.fill(12 - have, "pcapng section header")?;
        let bom = u32_at(self.input.block(), 8, false);
        let be = if bom == BOM {
            false
        } else if bom == BOM.swap_bytes() {
            true
        } else {
            return Err(self.malformed(
                "pcapng section header",
                format!("byte-order magic {bom:#010x} is neither 0x1a2b3c4d nor its swap"),
            ));
        };
        let block_len = u32_at(self.input.block(), 4, be);
        if block_len < 28 || block_len & 3 != 0 {
            return Err(self.malformed(
                "pcapng section header",
                format!("block length {block_len} is not a multiple of 4 of at least 28"),
            ));
        }
        if block_len > MAX_BLOCK_LEN {
            return Err(self.too_large("pcapng section header", block_len.into()));
        }
        self.fill(block_len as usize - 12, "pcapng section header")?;
        let major = u16_at(self.input.block(), 12, be);
        if major != 1 {
            return Err(self.malformed(
                "pcapng section header",
                format!("unsupported major version {major}"),
            ));
        }
        let trailer = u32_at(self.input.block(), block_len as usize - 4, be);
        if trailer != block_len {
            return Err(self.malformed(
                "pcapng section header",
                format!("leading length {block_len} and trailing length {trailer} differ"),
            ));
        }
        self.stats.offset += u64::from(block_len);
        self.stats.sections += 1;
        self.state = State::Pcapng {
            big_endian: be,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn parse_idb(&self, be: bool, body_end: usize, offset: u64) -> Result<Interface, CaptureError> {
        if body_end < 16 {
            return Err(self.malformed_at(
                offset,
                "interface description",
                "block too short".into(),
            ));
        }
        let mut iface = Interface {
            link_type: LinkType(u32::from(u16_at(self.input.block(), 8, be))),
            snaplen: u32_at(self.input.block(), 12, be),
            tsresol: 6,
            tsoffset: 0,
        };
        let mut pos = 16;
        while pos + 4 <= body_end {
            let code = u16_at(self.input.block(), pos, be);
            let len = usize::from(u16_at(self.input.block(), pos + 2, be));
            let value_start = pos + 4;
            let Some(value) = self.input.block().get(value_start..value_start + len) else {
                return Err(self.malformed_at(
                    offset + pos as u64,
                    "interface description option",
                    format!("option {code} of length {len} overruns its block"),
                ));
            };
            if value_start + len > body_end {
                return Err(self.malformed_at(
                    offset + pos as u64,
                    "interface description option",
                    format!("option {code} of length {len} overruns its block"),
                ));
            }
            match (code, value) {
                (OPT_END, _) => break,
                (OPT_IF_TSRESOL, [r, ..]) => iface.tsresol = *r,
                (OPT_IF_TSOFFSET, v) if v.len() >= 8 => {
                    iface.tsoffset = u64_at(v, 0, be) as i64;
                }
                _ => {}
            }
            pos = value_start + len.next_multiple_of(4);
        }
        Ok(iface)
    }

    fn interface(&self, id: u32, offset: u64) -> Result<Interface, CaptureError> {
        let ifaces: &[Interface] = match &self.state {
            State::Pcapng { interfaces, .. } => interfaces,
            _ => &[],
        };
        ifaces
            .get(id as usize)
            .copied()
            .ok_or_else(|| CaptureError::UnknownInterface {
                name: self.name.clone(),
                offset,
                interface: id,
                declared: ifaces.len(),
            })
    }

    fn parse_epb(&self, be: bool, body_end: usize, offset: u64) -> Result<Located, CaptureError> {
        if body_end < 28 {
            return Err(self.malformed_at(
                offset,
                "enhanced packet block",
                "block too short".into(),
            ));
        }
        let if_id = u32_at(self.input.block(), 8, be);
        let ts_units = (u64::from(u32_at(self.input.block(), 12, be)) << 32)
            | u64::from(u32_at(self.input.block(), 16, be));
        let caplen = u32_at(self.input.block(), 20, be);
        let orig_len = u32_at(self.input.block(), 24, be);
        if caplen as usize > body_end - 28 {
            return Err(self.malformed_at(
                offset,
                "enhanced packet block",
                format!("captured length {caplen} exceeds the block"),
            ));
        }
        let iface = self.interface(if_id, offset)?;
        Ok(Located {
            start: 28,
            len: caplen as usize,
            ts: iface_nanos(ts_units, iface.tsresol, iface.tsoffset),
            link_type: iface.link_type,
            orig_len,
            interface: if_id,
        })
    }

    fn parse_spb(&self, be: bool, body_end: usize, offset: u64) -> Result<Located, CaptureError> {
        if body_end < 12 {
            return Err(self.malformed_at(offset, "simple packet block", "block too short".into()));
        }
        let orig_len = u32_at(self.input.block(), 8, be);
        let iface = self.interface(0, offset)?;
        // An SPB has no captured-length field: it is the original length cut
        // to the interface snaplen (0 = unlimited), padding excluded.
        let mut len = (body_end - 12).min(orig_len as usize);
        if iface.snaplen != 0 {
            len = len.min(iface.snaplen as usize);
        }
        Ok(Located {
            start: 12,
            len,
            // SPBs carry no timestamp; 0 makes that visible instead of inventing one.
            ts: 0,
            link_type: iface.link_type,
            orig_len,
            interface: 0,
        })
    }

    /// Appends up to `n` bytes from the input to `buf`; returns how many came.
    /// The buffer grows with the data actually read, so a lying length field
    /// on a short file never allocates what it claims.
    fn read_into_buf(&mut self, n: usize) -> Result<usize, CaptureError> {
        match self.input.read(n) {
            Ok(got) => Ok(got),
            Err(source) => Err(CaptureError::Io {
                name: self.name.clone(),
                offset: self.stats.offset,
                source,
            }),
        }
    }

    fn fill(&mut self, n: usize, what: &'static str) -> Result<(), CaptureError> {
        let before = self.input.block().len();
        let got = self.read_into_buf(n)?;
        if got < n {
            return Err(CaptureError::Truncated {
                name: self.name.clone(),
                offset: self.stats.offset,
                what,
                needed: (before + n) as u64,
                got: (before + got) as u64,
            });
        }
        Ok(())
    }

    fn need(&self, got: usize, n: usize, what: &'static str) -> Result<(), CaptureError> {
        if got < n {
            return Err(CaptureError::Truncated {
                name: self.name.clone(),
                offset: self.stats.offset,
                what,
                needed: n as u64,
                got: got as u64,
            });
        }
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), CaptureError> {
        match self.input.skip(n) {
            Ok(got) if got == n => Ok(()),
            Ok(got) => Err(CaptureError::Truncated {
                name: self.name.clone(),
                offset: self.stats.offset,
                what,
                needed: n + 8,
                got: got + 8,
            }),
            Err(source) => Err(CaptureError::Io {
                name: self.name.clone(),
                offset: self.stats.offset,
                source,
            }),
        }
    }

    fn malformed(&self, what: &'static str, detail: String) -> CaptureError {
        self.malformed_at(self.stats.offset, what, detail)
    }

    fn malformed_at(&self, offset: u64, what: &'static str, detail: String) -> CaptureError {
        CaptureError::Malformed {
            name: self.name.clone(),
            offset,
            what,
            detail,
        }
    }

    fn too_large(&self, what: &'static str, len: u64) -> CaptureError {
        CaptureError::TooLarge {
            name: self.name.clone(),
            offset: self.stats.offset,
            what,
            len,
            limit: MAX_BLOCK_LEN.into(),
        }
    }
}

/// Converts a pcapng timestamp in interface units to Unix nanoseconds.
/// `tsresol`: high bit clear = 10^-n s, set = 2^-n s. `tsoffset` is in seconds.
/// Saturates rather than wrapping: an absurd resolution gives a clamped
/// timestamp, never a panic.
pub(crate) fn iface_nanos(units: u64, tsresol: u8, tsoffset: i64) -> UnixNanos {
    let exp = u32::from(tsresol & 0x7f);
    let ns: u128 = if tsresol & 0x80 == 0 {
        if exp <= 9 {
            u128::from(units) * 10u128.pow(9 - exp)
        } else if exp - 9 <= 38 {
            u128::from(units) / 10u128.pow(exp - 9)
        } else {
            0
        }
    } else {
        (u128::from(units) * 1_000_000_000) >> exp
    };
    let ns = i128::try_from(ns).unwrap_or(i128::MAX);
    let total = ns.saturating_add(i128::from(tsoffset) * 1_000_000_000);
    u64::try_from(total.max(0)).unwrap_or(u64::MAX)
}

/// A pcap record header's seconds, fraction, captured and original lengths.
fn pcap_record_header(h: &[u8], be: bool) -> (u32, u32, u32, u32) {
    (
        u32_at(h, 0, be),
        u32_at(h, 4, be),
        u32_at(h, 8, be),
        u32_at(h, 12, be),
    )
}

/// A pcap record's time: the fraction is micro- or nanoseconds by the file's magic.
fn pcap_ts(sec: u32, frac: u32, nanos: bool) -> UnixNanos {
    let frac_ns = if nanos {
        u64::from(frac)
    } else {
        u64::from(frac) * 1000
    };
    u64::from(sec) * 1_000_000_000 + frac_ns
}

fn u16_at(b: &[u8], at: usize, be: bool) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], at: usize, be: bool) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u64_at(b: &[u8], at: usize, be: bool) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    if be {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`HeldPages::handed_on`] as it was: the furthest frame kept, the boundary a step
    /// behind it compared at every frame. Returns where pages were handed back to.
    fn furthest_model(furthest: &mut usize, released: &mut usize, at: usize) {
        *furthest = (*furthest).max(at);
        let upto = furthest.saturating_sub(RELEASE_STEP) & !(RELEASE_STEP - 1);
        if upto >= *released + RELEASE_STEP {
            *released = upto;
        }
    }

    fn hands_back_as_the_model(offsets: &[usize]) {
        let mut pcap = Vec::new();
        for word in [PCAP_MAGIC_US, 0x0004_0002, 0, 0, 65_535, 1] {
            pcap.extend_from_slice(&word.to_le_bytes());
        }
        let reader = CaptureReader::from_bytes("held", pcap).expect("a pcap header");
        let mut pages = HeldPages::default();
        let (mut furthest, mut released) = (0, 0);
        for (i, &at) in offsets.iter().enumerate() {
            pages.handed_on(&reader, at);
            furthest_model(&mut furthest, &mut released, at);
            assert_eq!(pages.released, released, "frame {i} at {at}");
        }
    }

    #[test]
    fn held_pages_at_the_step_edges() {
        let s = RELEASE_STEP;
        hands_back_as_the_model(&[
            0,
            s - 1,
            s,
            2 * s - 1,
            2 * s,
            2 * s + 1,
            s,
            3 * s - 1,
            4 * s - 1,
            4 * s,
            3 * s,
            10 * s + 7,
            10 * s,
            12 * s - 1,
            12 * s,
            usize::MAX - 1,
            usize::MAX,
            0,
        ]);
    }

    proptest! {
        /// Frames in offset order with some handed on before frames read earlier
        /// (reordered), across many steps.
        #[test]
        fn held_pages_hand_back_as_the_furthest_model(
            steps in proptest::collection::vec((0usize..3 * RELEASE_STEP, any::<bool>()), 1..200),
        ) {
            let mut at = 0usize;
            let offsets: Vec<usize> = steps
                .iter()
                .map(|&(d, back)| {
                    if back {
                        at.saturating_sub(d)
                    } else {
                        at += d;
                        at
                    }
                })
                .collect();
            hands_back_as_the_model(&offsets);
        }
    }
}
