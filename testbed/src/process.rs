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

/// A loopback port nothing listens on now, for a server a test starts: fixed ports
/// collide between concurrent runs.
pub fn free_port() -> crate::Result<u16> {
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

    #[test]
    fn cpu_of_self_is_read() {
        let (user, sys) = cpu_seconds(std::process::id()).expect("own /proc/PID/stat");
        assert!(user >= 0.0 && sys >= 0.0);
    }
}
