//! Dropping root once the capture is set up, like tcpdump's `-Z`: the live observer
//! parses traffic anyone on the LAN can send, so it should not do that as root.
//!
//! What it keeps: an eBPF tap still updates its maps (CAP_BPF) and must detach its
//! filters and qdisc on exit (CAP_NET_ADMIN, also for the `tc` it runs, hence ambient).
//! A libpcap source keeps nothing: its sockets are already open.

use std::ffi::CString;

use caps::{CapSet, Capability, CapsHashSet};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("no such user {0:?} to run as (give --user USER, or --keep-root)")]
    NoUser(String),
    #[error("dropping privileges to {user}: {step} failed: {source}")]
    Step {
        user: String,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("dropping privileges to {user}: capabilities: {reason}")]
    Caps { user: String, reason: String },
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not running as root: nothing to drop.
    NotRoot,
    /// Now running as this uid/gid, with these capabilities kept.
    To {
        uid: u32,
        gid: u32,
        kept: Vec<String>,
    },
}

fn last_os(user: &str, step: &'static str) -> PrivilegeError {
    PrivilegeError::Step {
        user: user.to_string(),
        step,
        source: std::io::Error::last_os_error(),
    }
}

/// Switches the process to `user`, keeping `keep` in the calling thread (which must be
/// the one that later uses them). Other threads keep no capability.
pub fn drop_root(user: &str, keep: &[Capability]) -> Result<Dropped, PrivilegeError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Dropped::NotRoot);
    }
    let name = CString::new(user).map_err(|_| PrivilegeError::NoUser(user.to_string()))?;
    // SAFETY: a valid C string; the returned record is read before any other call
    // that could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(PrivilegeError::NoUser(user.to_string()));
    }
    // SAFETY: non-null record from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };

    // Keep the permitted set across setuid, so the kept capabilities can be re-raised.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(last_os(user, "prctl(PR_SET_KEEPCAPS)"));
    }
    // SAFETY: plain syscalls with integer arguments (setgroups with an empty list).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(last_os(user, "setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(last_os(user, "setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(last_os(user, "setuid"));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    let set: CapsHashSet = keep.iter().copied().collect();
    let caps_err = |e: caps::errors::CapsError| PrivilegeError::Caps {
        user: user.to_string(),
        reason: e.to_string(),
    };
    caps::set(None, CapSet::Permitted, &set).map_err(caps_err)?;
    caps::set(None, CapSet::Effective, &set).map_err(caps_err)?;
    caps::set(None, CapSet::Inheritable, &set).map_err(caps_err)?;
    for c in keep {
        // Ambient, so that `tc` run to remove the qdisc keeps CAP_NET_ADMIN.
        caps::raise(None, CapSet::Ambient, *c).map_err(caps_err)?;
    }
    // SAFETY: no preconditions.
    if unsafe { libc::getuid() } != uid || unsafe { libc::geteuid() } != uid {
        return Err(PrivilegeError::Caps {
            user: user.to_string(),
            reason: "still root after setuid".into(),
        });
    }
    Ok(Dropped::To {
        uid,
        gid,
        kept: keep.iter().map(|c| c.to_string()).collect(),
    })
}

/// The capabilities a source needs after set-up.
pub fn needed(ebpf: bool) -> Vec<Capability> {
    if ebpf {
        vec![Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
    } else {
        Vec::new()
    }
}
