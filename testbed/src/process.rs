use std::process::Child;
use std::time::{Duration, Instant};

/// How long [`Children`] waits for SIGTERM to take effect before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A child process killed (SIGKILL) on drop, also when the test panics.
pub struct Killer(pub Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Named children stopped on drop (failure, Ctrl-C): SIGTERM to all first, so that
/// those with workers (stress-ng) stop them rather than orphan them, then SIGKILL to
/// whatever still runs after a short grace.
#[derive(Default)]
pub struct Children(pub Vec<(String, Child)>);

fn sigterm(c: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(c.id()) {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

impl Children {
    /// Stops the children whose names `pick` chooses (SIGTERM, then waits for each),
    /// in the order they were started; gives each one's exit status.
    pub fn stop(
        &mut self,
        pick: impl Fn(&str) -> bool,
    ) -> Vec<(String, std::io::Result<std::process::ExitStatus>)> {
        self.0
            .iter_mut()
            .filter(|(name, _)| pick(name))
            .map(|(name, c)| {
                sigterm(c);
                (name.clone(), c.wait())
            })
            .collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                sigterm(c);
            }
        }
        let t0 = Instant::now();
        for (_, c) in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && t0.elapsed() < TERM_GRACE {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where [`free_port`] starts looking, below the kernel's ephemeral range.
const FIXED_PORTS_FROM: u16 = 10_000;
/// Fewer ports than this between there and the ephemeral range: `bind(0)`'s instead.
const MIN_FIXED_PORTS: u16 = 1_000;

/// A loopback port nothing listens on now, for a server a test starts: fixed ports
/// collide between concurrent runs.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), and never the
/// same twice in one process: a port from `bind(0)` is free again the moment it is
/// returned, so the kernel may hand it to the next `bind(0)` or `connect` (another
/// test's server on port 0, a client's source port) before the server meant for it
/// binds it, and a test then talks to a stranger. Concurrent processes start at
/// different places (the pid) and a port is checked by binding it.
pub fn free_port() -> crate::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let low = ephemeral_low().unwrap_or(32_768);
    if low <= FIXED_PORTS_FROM + MIN_FIXED_PORTS {
        return ephemeral_port();
    }
    let span = u32::from(low - FIXED_PORTS_FROM);
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        // Below `low`, itself a port: within u16.
        let port = FIXED_PORTS_FROM + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    ephemeral_port()
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

fn ephemeral_port() -> crate::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(crate::io_error("binding an ephemeral port"))?;
    Ok(l.local_addr()
        .map_err(crate::io_error("ephemeral port"))?
        .port())
}

/// CPU seconds (user, system) a live process used so far (its exited threads
/// included), from `/proc`.
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user, system) one live thread `tid` of process `pid` used so far.
pub fn thread_cpu_seconds(pid: u32, tid: u32) -> Option<(f64, f64)> {
    stat_cpu(&format!("/proc/{pid}/task/{tid}/stat"))
}

fn stat_cpu(path: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces; the fields after it start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime / tck, stime / tck))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn children_stop_on_drop() {
        let child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        drop(Children(vec![("sleep".into(), child)]));
        // Reaped: /proc has no entry any more.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    /// Ports handed out are distinct, outside the range the kernel picks from for
    /// `bind(0)` and `connect`, and free (bindable) when returned.
    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let low = ephemeral_low().expect("ip_local_port_range");
        let ports: Vec<u16> = (0..200).map(|_| free_port().expect("a port")).collect();
        // A range starting too low for fixed ports below it: `bind(0)`'s, by design.
        if low > FIXED_PORTS_FROM + MIN_FIXED_PORTS {
            let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
            assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
            for p in &ports {
                assert!(*p >= FIXED_PORTS_FROM && *p < low, "{p} not below {low}");
            }
        }
        let last = ports.last().copied().unwrap_or_default();
        assert!(std::net::TcpListener::bind(("127.0.0.1", last)).is_ok());
    }

    #[test]
    fn cpu_of_self_is_read() {
        let (user, sys) = cpu_seconds(std::process::id()).expect("own /proc/PID/stat");
        assert!(user >= 0.0 && sys >= 0.0);
    }
}
