use super::LinkType;
use crate::UnixNanos;
use std::io::{self, Write};

/// Snaplen written in headers; libpcap's default maximum.
const SNAPLEN: u32 = 262_144;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFormat {
    Pcap {
        nanos: bool,
        big_endian: bool,
    },
    /// Little-endian pcapng, one section; interface 0 has nanosecond resolution.
    Pcapng,
}

/// Writes pcap or pcapng by hand so that the same frames always give the same
/// bytes (no host name, OS or application options, no clock reads).
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    out: W,
    format: WriteFormat,
    /// pcapng only: decimal resolution exponent of each interface.
    tsresol: Vec<u8>,
    /// Writes pcapng big-endian; only tests set it, to exercise the reader.
    pub(super) big_endian: bool,
    scratch: Vec<u8>,
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the file header (and, for pcapng, interface 0 with ns resolution).
    pub fn new(w: W, format: WriteFormat, link_type: LinkType) -> io::Result<Self> {
        let mut writer = CaptureWriter {
            out: w,
            format,
            tsresol: Vec::new(),
            big_endian: matches!(
                format,
                WriteFormat::Pcap {
                    big_endian: true,
                    ..
                }
            ),
            scratch: Vec::with_capacity(2048),
        };
        match format {
            WriteFormat::Pcap { nanos, .. } => {
                let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
                writer.put32(magic);
                writer.put16(2);
                writer.put16(4);
                writer.put32(0);
                writer.put32(0);
                writer.put32(SNAPLEN);
                writer.put32(link_type.0);
                writer.flush_scratch()?;
            }
            WriteFormat::Pcapng => {
                writer.write_shb()?;
                writer.add_interface(link_type, 9)?;
            }
        }
        Ok(writer)
    }

    /// Restarts the output as a big-endian pcapng section (test helper).
    #[cfg(test)]
    pub(super) fn new_pcapng_be(w: W, link_type: LinkType) -> io::Result<Self> {
        let mut writer = CaptureWriter {
            out: w,
            format: WriteFormat::Pcapng,
            tsresol: Vec::new(),
            big_endian: true,
            scratch: Vec::new(),
        };
        writer.write_shb()?;
        writer.add_interface(link_type, 9)?;
        Ok(writer)
    }

    /// Starts a new pcapng section: interfaces are forgotten, as readers do.
    pub fn new_section(&mut self) -> io::Result<()> {
        if !matches!(self.format, WriteFormat::Pcapng) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "pcap files have a single section",
            ));
        }
        self.tsresol.clear();
        self.write_shb()
    }

    /// Adds a pcapng interface whose timestamps have 10^-`ts_resolution_exp10`
    /// second resolution (0..=9); returns its id.
    pub fn add_interface(
        &mut self,
        link_type: LinkType,
        ts_resolution_exp10: u8,
    ) -> io::Result<u32> {
        if !matches!(self.format, WriteFormat::Pcapng) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "pcap files have a single interface",
            ));
        }
        if ts_resolution_exp10 > 9 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "timestamp resolution finer than 1 ns cannot be represented",
            ));
        }
        let link = u16::try_from(link_type.0).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "pcapng link types are 16-bit")
        })?;
        // Header 16 + if_tsresol option (4 + 1 padded to 4) + opt_endofopt 4 + trailer 4.
        let len = 16 + 8 + 4 + 4;
        self.put32(1);
        self.put32(len);
        self.put16(link);
        self.put16(0);
        self.put32(SNAPLEN);
        self.put16(9);
        self.put16(1);
        self.scratch
            .extend_from_slice(&[ts_resolution_exp10, 0, 0, 0]);
        self.put32(0);
        self.put32(len);
        self.flush_scratch()?;
        self.tsresol.push(ts_resolution_exp10);
        u32::try_from(self.tsresol.len() - 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many interfaces"))
    }

    /// Writes one frame. Sub-resolution digits of `ts` are truncated;
    /// `orig_len` below `data.len()` is raised to it.
    pub fn write_frame(
        &mut self,
        interface: u32,
        ts: UnixNanos,
        data: &[u8],
        orig_len: u32,
    ) -> io::Result<()> {
        let caplen = u32::try_from(data.len())
            .ok()
            .filter(|&l| l <= super::MAX_BLOCK_LEN - 64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let orig_len = orig_len.max(caplen);
        match self.format {
            WriteFormat::Pcap { nanos, .. } => {
                if interface != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "pcap files have a single interface (0)",
                    ));
                }
                let sec = u32::try_from(ts / 1_000_000_000).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "timestamp beyond 2106 does not fit pcap",
                    )
                })?;
                let ns = (ts % 1_000_000_000) as u32;
                self.put32(sec);
                self.put32(if nanos { ns } else { ns / 1000 });
                self.put32(caplen);
                self.put32(orig_len);
                self.scratch.extend_from_slice(data);
            }
            WriteFormat::Pcapng => {
                let exp = *self.tsresol.get(interface as usize).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "unknown pcapng interface")
                })?;
                let units = ts / 10u64.pow(9 - u32::from(exp));
                let padded = caplen.next_multiple_of(4);
                let len = 32 + padded;
                self.put32(6);
                self.put32(len);
                self.put32(interface);
                self.put32((units >> 32) as u32);
                self.put32(units as u32);
                self.put32(caplen);
                self.put32(orig_len);
                self.scratch.extend_from_slice(data);
                self.scratch
                    .resize(self.scratch.len() + (padded - caplen) as usize, 0);
                self.put32(len);
            }
        }
        self.flush_scratch()
    }

    /// Pushes buffered bytes to the underlying writer (a live `-w` file is readable up
    /// to the last flush even if the observer is killed).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_shb(&mut self) -> io::Result<()> {
        self.put32(0x0a0d_0d0a);
        self.put32(28);
        self.put32(0x1a2b_3c4d);
        self.put16(1);
        self.put16(0);
        // Section length unknown: we stream.
        self.scratch.extend_from_slice(&[0xff; 8]);
        self.put32(28);
        self.flush_scratch()
    }

    fn put16(&mut self, v: u16) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.scratch.extend_from_slice(&b);
    }

    fn put32(&mut self, v: u32) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.scratch.extend_from_slice(&b);
    }

    fn flush_scratch(&mut self) -> io::Result<()> {
        let r = self.out.write_all(&self.scratch);
        self.scratch.clear();
        r
    }
}
