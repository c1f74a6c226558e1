//! Dropping root once the capture is set up, like tcpdump's `-Z`: the live observer
//! parses traffic anyone on the LAN can send, so it should not do that as root.
//!
//! What it keeps: an eBPF tap must detach its filters and qdisc on exit
//! (CAP_NET_ADMIN, also for the `tc` it runs; CAP_BPF for the programs). They stay
//! *permitted* but not effective while the wire is parsed, and are raised only for the
//! teardown (`raise_for_teardown`). Its maps and ring buffer are used through
//! descriptors opened before the drop, which needs no capability. The bounding set is
//! trimmed to what is kept and `no_new_privs` is set, so nothing can be regained. A
//! libpcap source keeps nothing: its sockets are already open.

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

    // While still root: nothing this process runs later may gain privileges
    // (setuid binaries, file capabilities), and no capability outside `keep` can ever
    // come back, whatever the parser is made to do.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(last_os(user, "prctl(PR_SET_NO_NEW_PRIVS)"));
    }
    let caps_err = |e: caps::errors::CapsError| PrivilegeError::Caps {
        user: user.to_string(),
        reason: e.to_string(),
    };
    for c in caps::all() {
        if !keep.contains(&c) {
            caps::drop(None, CapSet::Bounding, c).map_err(caps_err)?;
        }
    }
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
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(last_os(user, "setresgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(last_os(user, "setresuid"));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    // Kept but not effective: the thread that parses the wire holds no usable
    // capability; `raise_for_teardown` makes them effective for the detach only.
    let set: CapsHashSet = keep.iter().copied().collect();
    caps::set(None, CapSet::Permitted, &set).map_err(caps_err)?;
    caps::clear(None, CapSet::Effective).map_err(caps_err)?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err)?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err)?;
    verify(user, uid, gid, &set)?;
    Ok(Dropped::To {
        uid,
        gid,
        kept: keep.iter().map(|c| c.to_string()).collect(),
    })
}

/// Checks that the drop happened rather than assuming it: every uid and gid (real,
/// effective, saved) is the user's, no supplementary group is left, nothing is
/// effective, and only `kept` is permitted.
fn verify(user: &str, uid: u32, gid: u32, kept: &CapsHashSet) -> Result<(), PrivilegeError> {
    let fail = |reason: String| PrivilegeError::Caps {
        user: user.to_string(),
        reason,
    };
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: pointers to local integers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    if (r, e, s) != (uid, uid, uid) {
        return Err(fail(format!("uids are {r}/{e}/{s}, not {uid}")));
    }
    // SAFETY: pointers to local integers.
    unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
    if (r, e, s) != (gid, gid, gid) {
        return Err(fail(format!("gids are {r}/{e}/{s}, not {gid}")));
    }
    // SAFETY: a zero-length query returns the count without writing.
    let groups = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if groups != 0 {
        return Err(fail(format!("{groups} supplementary groups remain")));
    }
    let read = |set| caps::read(None, set).map_err(|e| fail(e.to_string()));
    if !read(CapSet::Effective)?.is_empty() {
        return Err(fail("capabilities are still effective".into()));
    }
    if &read(CapSet::Permitted)? != kept {
        return Err(fail(
            "the permitted capabilities are not the kept ones".into(),
        ));
    }
    Ok(())
}

/// Makes the permitted capabilities effective again, and ambient so that the `tc`
/// run to remove a qdisc has them: only for tearing the capture down at exit.
/// Nothing to do (and no error) when the process never dropped root.
pub fn raise_for_teardown() {
    let Ok(permitted) = caps::read(None, CapSet::Permitted) else {
        return;
    };
    for c in permitted {
        let _ = caps::raise(None, CapSet::Effective, c);
        let _ = caps::raise(None, CapSet::Inheritable, c);
        let _ = caps::raise(None, CapSet::Ambient, c);
    }
}

/// Runs `f` with `cap` effective (when permitted), and lowers it again.
pub fn with_effective<T>(cap: Capability, f: impl FnOnce() -> T) -> T {
    let raised = caps::raise(None, CapSet::Effective, cap).is_ok();
    let out = f();
    // SAFETY: geteuid has no preconditions. Root keeps what it had.
    if raised && unsafe { libc::geteuid() } != 0 {
        let _ = caps::drop(None, CapSet::Effective, cap);
    }
    out
}

/// The capabilities a source needs after set-up.
pub fn needed(ebpf: bool) -> Vec<Capability> {
    if ebpf {
        vec![Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
    } else {
        Vec::new()
    }
}
