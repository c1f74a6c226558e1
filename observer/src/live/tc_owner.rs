//! Which tc filters belong to which running observer.
//!
//! Several observers may tap one interface, and one killed with SIGKILL leaves its
//! filters behind. Removing "every filter with our name" at start-up (as before)
//! silently blinded a running instance. Instead each instance records the filters it
//! attached (interface, direction, priority, handle) in its own file under
//! [`OWNERS_DIR`] and holds an exclusive `flock` on that file for its lifetime: a file
//! whose lock can be taken belongs to a process that is gone. At start-up, a filter
//! with our name is stale only when no live owner claims it. Start-up (clean-up,
//! attach, claim) runs under a global lock so that two observers starting together
//! cannot take each other's fresh filters for stale ones.
//!
//! At exit the clsact qdisc is removed only when this instance created it and no
//! filter at all remains on it (another tool's, or another observer's).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use aya::programs::tc::{SchedClassifierLink, TcHandle};
use aya::programs::{Link, TcAttachType};

/// Where owners record their filters (root-only).
pub const OWNERS_DIR: &str = "/run/observer";

/// One filter: (interface, direction, priority, handle).
pub type Claim = (String, &'static str, u16, u32);

pub fn dir_name(dir: TcAttachType) -> &'static str {
    match dir {
        TcAttachType::Egress => "egress",
        _ => "ingress",
    }
}

fn attach_type(name: &str) -> TcAttachType {
    if name == "egress" {
        TcAttachType::Egress
    } else {
        TcAttachType::Ingress
    }
}

/// An exclusive `flock`, released when the file is closed.
fn lock(file: &File, wait: bool) -> bool {
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: a valid descriptor owned by `file` for the duration of the call.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The owners directory, created root-only; refused if anyone else could write it.
fn owners_dir() -> std::io::Result<PathBuf> {
    let dir = PathBuf::from(OWNERS_DIR);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != 0 || meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{OWNERS_DIR} must be a directory owned by root and writable by root only"
        )));
    }
    Ok(dir)
}

/// Held while clean-up, attach and claim run; dropped when set-up is over.
pub struct SetupLock(#[allow(dead_code)] File);

pub fn setup_lock() -> std::io::Result<SetupLock> {
    let f = open_file(&owners_dir()?.join("setup.lock"))?;
    lock(&f, true);
    Ok(SetupLock(f))
}

/// This instance's record, locked for its lifetime.
pub struct Ownership {
    file: File,
}

impl Ownership {
    pub fn create() -> std::io::Result<Ownership> {
        let path = owners_dir()?.join(format!("tap.{}", std::process::id()));
        let file = open_file(&path)?;
        if !lock(&file, false) {
            return Err(std::io::Error::other(format!(
                "{} is locked by another process",
                path.display()
            )));
        }
        file.set_len(0)?;
        Ok(Ownership { file })
    }

    pub fn claim(&mut self, c: &Claim) -> std::io::Result<()> {
        writeln!(self.file, "{}\t{}\t{}\t{}", c.0, c.1, c.2, c.3)?;
        self.file.sync_data()
    }

    /// The filters are gone: an empty record (the file itself is removed by the next
    /// start, since the unprivileged process may not unlink in the directory).
    pub fn release(&mut self) {
        let _ = self.file.set_len(0);
    }
}

fn parse_claims(text: &str) -> Vec<Claim> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let iface = f.next()?.to_string();
            let dir = match f.next()? {
                "egress" => "egress",
                "ingress" => "ingress",
                _ => return None,
            };
            let prio = f.next()?.parse().ok()?;
            let handle = f.next()?.parse().ok()?;
            Some((iface, dir, prio, handle))
        })
        .collect()
}

/// Claims of observers still running; the records of the dead are removed.
fn live_claims() -> HashSet<Claim> {
    let mut claims = HashSet::new();
    let Ok(dir) = owners_dir() else {
        return claims;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return claims;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("tap.")) else {
            continue;
        };
        if pid == std::process::id().to_string() {
            continue;
        }
        let Ok(file) = open_file(&entry.path()) else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if lock(&file, false) {
            // Its owner is gone.
            let _ = std::fs::remove_file(entry.path());
        } else {
            claims.extend(parse_claims(&text));
        }
    }
    claims
}

/// Filters on `iface` in direction `dir`: (priority, handle, bpf program name).
fn filters(iface: &str, dir: &str) -> Vec<(u16, u32, Option<String>)> {
    let Ok(out) = Command::new("tc")
        .args(["-j", "filter", "show", "dev", iface, dir])
        .output()
    else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(rows)) = serde_json::from_slice(&out.stdout) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| {
            // Rows without options are the chain headers tc prints before filters.
            let opts = r.get("options")?;
            let prio = u16::try_from(r.get("pref")?.as_u64()?).ok()?;
            let handle = opts.get("handle").and_then(|h| h.as_str()).unwrap_or("0");
            let handle = u32::from_str_radix(handle.trim_start_matches("0x"), 16).ok()?;
            let name = opts
                .get("bpf_name")
                .and_then(|n| n.as_str())
                .map(str::to_string);
            Some((prio, handle, name))
        })
        .collect()
}

/// Removes filters named `names` on `interfaces` that no running observer claims
/// (left by one that was killed). Returns how many were removed.
pub fn cleanup_stale(interfaces: &[String], names: &[&str]) -> usize {
    let claims = live_claims();
    let mut removed = 0;
    for iface in interfaces {
        for dir in ["ingress", "egress"] {
            for (prio, handle, name) in filters(iface, dir) {
                let ours = name
                    .as_deref()
                    .is_some_and(|n| names.iter().any(|x| n.starts_with(x)));
                if !ours || claims.contains(&(iface.clone(), dir, prio, handle)) {
                    continue;
                }
                let detached = SchedClassifierLink::attached(
                    iface,
                    attach_type(dir),
                    prio,
                    TcHandle::from(handle),
                    None,
                )
                .map(|l| l.detach().is_ok())
                .unwrap_or(false);
                if detached {
                    tracing::warn!(
                        "removed a stale observer filter on {iface} {dir} (pref {prio}, handle {handle:#x}): its observer is gone"
                    );
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// Whether any filter at all is on `iface` (either direction).
pub fn has_filters(iface: &str) -> bool {
    ["ingress", "egress"]
        .iter()
        .any(|d| !filters(iface, d).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_junk_is_ignored() {
        let text =
            "eth0\tingress\t49152\t1\nlo\tegress\t1\t65537\nbad line\neth1\tsideways\t1\t1\n";
        assert_eq!(
            parse_claims(text),
            vec![
                ("eth0".to_string(), "ingress", 49152, 1),
                ("lo".to_string(), "egress", 1, 65537)
            ]
        );
    }
}
