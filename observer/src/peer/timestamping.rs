//! Kernel timestamps of the reference peer's TCP connections (Linux `SO_TIMESTAMPING`),
//! so that its records hold a socket RTT besides the application's: from the software
//! TX timestamp of the PING's last byte (taken by the driver as the segment leaves) to
//! the software RX timestamp of the segment that carried the PONG's last byte (taken
//! as it entered the stack). Neither includes the time the peer's own task waits for a
//! CPU, which the application's clock does.
//!
//! The kernel gives a TCP read one RX timestamp: that of the last buffer it copied
//! from, and segments queued behind one another may be merged into one buffer under
//! the latest's timestamp. So the timestamp is the PONG's only when the PONG ends the
//! read and nothing was left queued behind it; otherwise it may be a later segment's
//! (a reader 8 ms late under load read the PONG with the next PING and took the PING's
//! arrival for the PONG's) and the PONG's stop is withheld (`PongStamp::Withheld`),
//! counted, never guessed.
//!
//! TX timestamps arrive on the socket's error queue, keyed (`SOF_TIMESTAMPING_OPT_ID`)
//! by the offset of the last byte of the `write` they belong to, counted from when
//! timestamping was enabled; the writer counts the bytes it writes, so a PING's key (its
//! last byte's offset) is known before it is written. The kernel queues a TX timestamp
//! as the segment leaves, so before the PONG can exist: the reader drains the error
//! queue after every read, and a PONG always finds its PING's TX timestamp recorded.
//! Where the kernel refuses (not Linux, an old kernel), the connection runs without:
//! counted (`socket_timestamps_unavailable`), logged, and the socket columns stay empty.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::arm::{Arm, PongStamp};
use super::Shared;

/// TX timestamps and PINGs kept while waiting for their other half: the TX timestamps
/// of PONGs and MESSAGEs never match a PING, so both queues are bounded.
const TX_MATCH_CAPACITY: usize = 256;

/// The timestamps of one connection, shared by its reader, writer and error-queue task.
#[derive(Default)]
pub struct SocketStamps {
    /// RX timestamp of the latest read (0: none).
    last_rx_ns: AtomicU64,
    /// Whether nothing was left queued behind the latest read: its timestamp is then
    /// that of the segment with its last byte.
    last_rx_drained: AtomicBool,
    /// Bytes written since timestamping was enabled.
    written: AtomicU64,
    tx: Mutex<TxMatch>,
}

#[derive(Default)]
struct TxMatch {
    /// (key of the PING's last byte, correlator) without a TX timestamp yet.
    pings: VecDeque<(u32, u64)>,
    /// (key, timestamp) of TX timestamps no PING claimed yet.
    stamps: VecDeque<(u32, u64)>,
}

fn push_bounded(q: &mut VecDeque<(u32, u64)>, v: (u32, u64)) {
    if q.len() >= TX_MATCH_CAPACITY {
        q.pop_front();
    }
    q.push_back(v);
}

fn take(q: &mut VecDeque<(u32, u64)>, key: u32) -> Option<u64> {
    let i = q.iter().position(|(k, _)| *k == key)?;
    q.remove(i).map(|(_, v)| v)
}

impl SocketStamps {
    fn lock(&self) -> std::sync::MutexGuard<'_, TxMatch> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a read's RX timestamp and whether the read left nothing queued behind it.
    pub(super) fn record_rx(&self, ns: u64, drained: bool) {
        self.last_rx_drained.store(drained, Ordering::Relaxed);
        self.last_rx_ns.store(ns, Ordering::Relaxed);
    }

    /// The RX timestamp of the latest read, once, and whether the read left nothing
    /// queued behind it.
    pub fn take_rx(&self) -> Option<(u64, bool)> {
        match self.last_rx_ns.swap(0, Ordering::Relaxed) {
            0 => None,
            ns => Some((ns, self.last_rx_drained.load(Ordering::Relaxed))),
        }
    }

    /// A PING of `len` bytes is about to be written: its last byte's key is known now,
    /// whether it goes out in one `write` or several.
    pub fn ping_expected(&self, corr: u64, len: u64, arm: &Arm) {
        // The key wraps like the kernel's u32 counter.
        let key = self
            .written
            .load(Ordering::Relaxed)
            .wrapping_add(len)
            .wrapping_sub(1) as u32;
        let mut g = self.lock();
        match take(&mut g.stamps, key) {
            Some(ns) => {
                drop(g);
                arm.socket_start(corr, ns);
            }
            None => push_bounded(&mut g.pings, (key, corr)),
        }
    }

    fn tx_stamp(&self, key: u32, ns: u64, arm: &Arm) {
        let mut g = self.lock();
        match take(&mut g.pings, key) {
            Some(corr) => {
                drop(g);
                arm.socket_start(corr, ns);
            }
            None => push_bounded(&mut g.stamps, (key, ns)),
        }
    }
}

/// The kernel timestamp of a message completed by a read whose [`SocketStamps::take_rx`]
/// was `rx`: `ends_read` says whether the message's last byte is the read's last byte.
pub fn pong_stamp(rx: Option<(u64, bool)>, ends_read: bool) -> PongStamp {
    match rx {
        None => PongStamp::None,
        Some((ns, true)) if ends_read => PongStamp::At(ns),
        Some(_) => PongStamp::Withheld,
    }
}

/// Turns timestamping on for a connected socket on which nothing was written yet.
pub fn enable(stream: &TcpStream) -> io::Result<()> {
    sys::enable(stream)
}

/// Takes every TX timestamp waiting on the error queue; `Err` when the socket failed.
fn drain_now(stream: &TcpStream, stamps: &SocketStamps, arm: &Arm) -> io::Result<()> {
    loop {
        match stream.try_io(Interest::ERROR, || sys::recv_tx_stamp(stream)) {
            Ok(Some((key, ns))) => stamps.tx_stamp(key, ns, arm),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Drains the error queue of `stream` as TX timestamps arrive, until the connection
/// fails; run as a task beside the connection and aborted with it (the reader drains
/// too, so that the queue stays short while nothing is read).
pub async fn drain_tx(stream: Arc<TcpStream>, stamps: Arc<SocketStamps>, shared: Arc<Shared>) {
    loop {
        if stream.ready(Interest::ERROR).await.is_err() {
            return;
        }
        if drain_now(&stream, &stamps, &shared.arm).is_err() {
            return;
        }
    }
}

/// The read side of a timestamped connection: reads with `recvmsg` and keeps the RX
/// timestamp that comes with the data.
pub struct StampedRead {
    pub stream: Arc<TcpStream>,
    pub stamps: Arc<SocketStamps>,
    pub shared: Arc<Shared>,
}

impl AsyncRead for StampedRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let dst = buf.initialize_unfilled();
            match this
                .stream
                .try_io(Interest::READABLE, || sys::recv_stamped(&this.stream, dst))
            {
                Ok((n, rx)) => {
                    if let Some(ns) = rx {
                        // Asked after the read: a segment arriving in between only
                        // withholds a timestamp that was right, never keeps a wrong one.
                        let drained = sys::queued(&this.stream).is_ok_and(|q| q == 0);
                        this.stamps.record_rx(ns, drained);
                    }
                    // A socket error shows on the next read.
                    let _ = drain_now(&this.stream, &this.stamps, &this.shared.arm);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The write side: counts the bytes written (the TX timestamps' keys).
pub struct StampedWrite {
    pub stream: Arc<TcpStream>,
    pub stamps: Arc<SocketStamps>,
}

impl AsyncWrite for StampedWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write(buf) {
                Ok(n) => {
                    self.stamps.written.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(sys::shutdown_write(&self.stream))
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::os::fd::AsRawFd;

    use tokio::net::TcpStream;

    /// `ee_info` of a timestamp taken as the data left (linux/errqueue.h).
    const SCM_TSTAMP_SND: u32 = 0;

    const FLAGS: libc::c_uint = libc::SOF_TIMESTAMPING_TX_SOFTWARE
        | libc::SOF_TIMESTAMPING_RX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_ID
        | libc::SOF_TIMESTAMPING_OPT_TSONLY;

    fn set_flags(s: &TcpStream, flags: libc::c_uint) -> io::Result<()> {
        // SAFETY: the fd belongs to `s`, which is borrowed for the call; the option
        // value is a live c_uint and its exact size is passed.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPING,
                (&flags as *const libc::c_uint).cast(),
                size_of::<libc::c_uint>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn enable(s: &TcpStream) -> io::Result<()> {
        // OPT_ID_TCP (Linux 6.2) counts keys from the bytes written, which is what the
        // writer counts; without it they count from the bytes acknowledged, the same
        // here because nothing has been written yet.
        set_flags(s, FLAGS | libc::SOF_TIMESTAMPING_OPT_ID_TCP).or_else(|_| set_flags(s, FLAGS))
    }

    fn timespec_ns(t: &libc::timespec) -> Option<u64> {
        let secs = u64::try_from(t.tv_sec).ok()?;
        let ns = u64::try_from(t.tv_nsec).ok()?;
        let v = secs.checked_mul(1_000_000_000)?.checked_add(ns)?;
        (v != 0).then_some(v)
    }

    /// Control-message space: one `scm_timestamping` and one `sock_extended_err` (with
    /// its address) fit several times over; u64 elements align it for `cmsghdr`.
    type Control = [u64; 64];

    /// What one `recvmsg` returned: the bytes, the software timestamp of a
    /// `SCM_TIMESTAMPING` message, and the key of an extended error of origin
    /// timestamping.
    struct Received {
        n: usize,
        ts: Option<u64>,
        key: Option<u32>,
    }

    /// One `recvmsg` into `buf` with `flags`.
    fn recvmsg(s: &TcpStream, buf: &mut [u8], flags: libc::c_int) -> io::Result<Received> {
        let mut control: Control = [0; 64];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is its empty value.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<Control>() as _;
        // SAFETY: the fd belongs to `s`, borrowed for the call. `msg` points to `iov`
        // (describing `buf`, exclusively borrowed, with its true length) and to
        // `control` (with its true size), all alive until the call returns; the kernel
        // writes no more than those lengths.
        let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, flags | libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Received {
            n: n as usize,
            ts: None,
            key: None,
        };
        // SAFETY: the CMSG_* functions walk the control buffer within the length the
        // kernel set in `msg.msg_controllen` (never above the buffer's size) and
        // return null at its end. Each payload is read only after checking its
        // cmsg_len covers the type read, with read_unaligned (no alignment assumed).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let h = &*c;
                let data = libc::CMSG_DATA(c);
                let fits = |len: usize| h.cmsg_len as usize >= libc::CMSG_LEN(len as u32) as usize;
                if h.cmsg_level == libc::SOL_SOCKET
                    && h.cmsg_type == libc::SO_TIMESTAMPING
                    && fits(size_of::<[libc::timespec; 3]>())
                {
                    // [software, deprecated, hardware]
                    let t: [libc::timespec; 3] = std::ptr::read_unaligned(data.cast());
                    out.ts = timespec_ns(&t[0]);
                } else if ((h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR)
                    || (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR))
                    && fits(size_of::<libc::sock_extended_err>())
                {
                    let e: libc::sock_extended_err = std::ptr::read_unaligned(data.cast());
                    if e.ee_errno == libc::ENOMSG as u32
                        && e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                        && e.ee_info == SCM_TSTAMP_SND
                    {
                        out.key = Some(e.ee_data);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(out)
    }

    pub fn recv_stamped(s: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
        let r = recvmsg(s, buf, 0)?;
        Ok((r.n, r.ts))
    }

    /// One message of the error queue: `Some((key, ns))` for a TX timestamp.
    pub fn recv_tx_stamp(s: &TcpStream) -> io::Result<Option<(u32, u64)>> {
        // OPT_TSONLY: no payload comes back, only the control messages.
        let r = recvmsg(s, &mut [], libc::MSG_ERRQUEUE)?;
        Ok(r.key.zip(r.ts))
    }

    /// Bytes received and not read yet (`SIOCINQ`).
    pub fn queued(s: &TcpStream) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: the fd belongs to `s`, borrowed for the call; FIONREAD (SIOCINQ on a
        // TCP socket) writes one c_int into the live `n`.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) } == 0 {
            Ok(usize::try_from(n).unwrap_or(0))
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn shutdown_write(s: &TcpStream) -> io::Result<()> {
        // SAFETY: the fd belongs to `s`, borrowed for the call.
        if unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;

    use tokio::net::TcpStream;

    fn unsupported<T>() -> io::Result<T> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_TIMESTAMPING is Linux only",
        ))
    }

    pub fn enable(_: &TcpStream) -> io::Result<()> {
        unsupported()
    }

    pub fn recv_stamped(_: &TcpStream, _: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
        unsupported()
    }

    pub fn recv_tx_stamp(_: &TcpStream) -> io::Result<Option<(u32, u64)>> {
        unsupported()
    }

    pub fn queued(_: &TcpStream) -> io::Result<usize> {
        unsupported()
    }

    pub fn shutdown_write(_: &TcpStream) -> io::Result<()> {
        unsupported()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::arm::{now_ns, Receiver};
    use crate::peer::config::derived_peer_id;

    fn arm() -> Arm {
        let bob = Receiver {
            name: "bob".into(),
            peer_id: derived_peer_id("bob"),
        };
        Arm::new(
            "alice",
            derived_peer_id("alice"),
            vec![bob],
            8,
            1_000_000_000,
            true,
            None,
        )
        .unwrap()
    }

    /// A PING's TX timestamp is matched by the key of its last byte, whether the
    /// timestamp arrives before or after the PING is registered; other writes' stamps
    /// do not match.
    #[test]
    fn tx_stamps_match_pings_by_last_byte() {
        let a = arm();
        let st = SocketStamps::default();
        // A 100-byte welcome, then two PINGs of 50 bytes (keys 149 and 199).
        st.written.store(100, Ordering::Relaxed);
        let (c1, c2) = (a.next_correlator(), a.next_correlator());
        a.start(0, c1, 50, 0);
        st.ping_expected(c1, 50, &a);
        st.written.fetch_add(50, Ordering::Relaxed);
        st.tx_stamp(99, 1_000, &a); // the welcome's
        st.tx_stamp(149, 2_000, &a);
        // The second PING's stamp comes first (written by another task's syscall).
        a.start(0, c2, 50, 0);
        st.tx_stamp(199, 3_000, &a);
        st.ping_expected(c2, 50, &a);
        let now = now_ns();
        assert!(a.stop(0, Some(c1), None, 60, 0, now, PongStamp::At(2_500)));
        assert!(a.stop(0, Some(c2), None, 60, 0, now, PongStamp::At(3_700)));
        let r = a.recent(2);
        assert_eq!(r[1].socket.rtt_ns(), Some(500));
        assert_eq!(r[0].socket.rtt_ns(), Some(700));
        assert_eq!(a.snapshot().1.socket_rtt_missing, 0);
        // The unmatched welcome stamp stays queued, bounded.
        for k in 0..(2 * TX_MATCH_CAPACITY as u32) {
            st.tx_stamp(10_000 + k, 1, &a);
        }
        assert_eq!(st.lock().stamps.len(), TX_MATCH_CAPACITY);
    }

    #[test]
    fn rx_stamp_is_taken_once() {
        let st = SocketStamps::default();
        assert_eq!(st.take_rx(), None);
        st.record_rx(42, true);
        assert_eq!(st.take_rx(), Some((42, true)));
        assert_eq!(st.take_rx(), None);
    }

    /// A PONG's stamp is kept only when the PONG ends the read and the read left
    /// nothing queued; otherwise the stamp may be a later segment's and is withheld.
    #[test]
    fn a_pong_stamp_is_kept_only_when_nothing_followed_it() {
        assert_eq!(pong_stamp(None, true), PongStamp::None);
        assert_eq!(pong_stamp(Some((42, true)), true), PongStamp::At(42));
        assert_eq!(pong_stamp(Some((42, true)), false), PongStamp::Withheld);
        assert_eq!(pong_stamp(Some((42, false)), true), PongStamp::Withheld);
        assert_eq!(pong_stamp(Some((42, false)), false), PongStamp::Withheld);
    }
}
