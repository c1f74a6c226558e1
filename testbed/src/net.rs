use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::{Error, Result};

/// Longest interface name Linux takes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Runs `command`, its stdout discarded; an error naming it (with its stderr) when it
/// cannot start or fails.
fn run(command: &mut Command) -> Result<()> {
    let name = format!("{command:?}");
    let out = command.output().map_err(|source| Error::Spawn {
        command: name.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Failed {
            command: name,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// `ip ARGS…`.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// `ip netns exec NS ARGS…`.
pub fn netns_exec(ns: &str, args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// How fast tcpreplay sends.
#[derive(Debug, Clone, Copy)]
pub enum Replay {
    /// The capture's own timing sped up this many times.
    Multiplier(u64),
    /// As fast as the link takes it.
    TopSpeed,
    /// This many packets per second, whatever the capture's timing.
    Pps(u64),
}

/// A veth pair: `host` in the root namespace, `peer` in a namespace made for it; both
/// removed on drop, also when the caller panics.
pub struct Veth {
    pub ns: String,
    pub host: String,
    pub peer: String,
}

impl Veth {
    /// `tag` keeps the names of concurrent users apart (with this process's ID); at most
    /// 7 bytes, so that interface names fit Linux's 15.
    pub fn new(tag: &str) -> Result<Veth> {
        let id = std::process::id() % 100_000;
        let host = format!("ob{tag}A{id}");
        if host.len() > IFNAME_MAX {
            return Err(Error::Invalid(format!(
                "veth name {host} (tag {tag:?}) is longer than {IFNAME_MAX} bytes"
            )));
        }
        let v = Veth {
            ns: format!("obs-{tag}-{id}"),
            host,
            peer: format!("ob{tag}B{id}"),
        };
        ip(&["netns", "add", &v.ns])?;
        // From here on, drop removes what exists if a step fails.
        ip(&[
            "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer,
        ])?;
        ip(&["link", "set", &v.peer, "netns", &v.ns])?;
        ip(&["link", "set", &v.host, "up"])?;
        ip(&["-n", &v.ns, "link", "set", &v.peer, "up"])?;
        Ok(v)
    }

    /// Sends `capture` out of `peer` (it arrives on `host`) with tcpreplay; returns once
    /// everything is sent.
    pub fn replay(&self, capture: &Path, speed: Replay) -> Result<()> {
        run(&mut self.replay_command(capture, speed))
    }

    /// The tcpreplay command `replay` runs, for callers that start several at once and
    /// read tcpreplay's own figures from its stdout.
    pub fn replay_command(&self, capture: &Path, speed: Replay) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "tcpreplay",
            "-q",
            "-i",
            &self.peer,
        ]);
        match speed {
            Replay::Multiplier(m) => cmd.arg(format!("--multiplier={m}")),
            Replay::TopSpeed => cmd.arg("--topspeed"),
            Replay::Pps(n) => cmd.arg(format!("--pps={n}")),
        };
        cmd.arg(OsStr::new(capture));
        cmd
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer end, and with it the host end; the
        // link is deleted first in case the peer never made it into the namespace.
        let _ = ip(&["link", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_long_a_tag_is_refused_before_touching_the_system() {
        let e = Veth::new("muchtoolong").err().expect("refused");
        assert!(e.to_string().contains("longer than 15"), "{e}");
    }

    #[test]
    fn a_failing_command_names_itself_and_its_stderr() {
        let e = ip(&["no-such-object"]).expect_err("ip refuses");
        let text = e.to_string();
        assert!(text.contains("no-such-object"), "{text}");
    }
}
