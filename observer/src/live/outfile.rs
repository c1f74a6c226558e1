//! Opening the files a live run writes (`--csv`, its rotations, `-w`).
//!
//! A live observer starts as root and writes into directories other users may be able
//! to write (the drop user, for CSV rotation and `--report`). Opening a path there with
//! plain `File::create` follows a symlink or a hard link planted by that user and makes
//! root truncate or append to any file on the machine. The rules, checked here and
//! tested in `tests/security.rs`:
//!
//! - never follow a symlink in the last component (`O_NOFOLLOW`); `O_CLOEXEC` so that
//!   the `tc` run at exit does not inherit the descriptors;
//! - a file we create is created with `O_EXCL` and mode 0600 (it holds chat text);
//! - an existing file is only reused (appended to, or truncated for `-w`) when it is a
//!   regular file owned by us with a single link, checked on the open descriptor;
//! - a directory that someone other than us (or root) can write is refused unless it
//!   is sticky (like `/tmp`), where others cannot replace our entries.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits of every file a live run creates.
pub const OUTPUT_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("refusing to write {path}: it is a symbolic link")]
    Symlink { path: PathBuf },
    #[error("refusing to write {path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
}

/// How an existing file at the path is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Append after what is there (a CSV across runs).
    Append,
    /// Start the file again (a new capture).
    Truncate,
}

/// Opens `path` for writing under the rules of the module.
pub fn open_output(path: &Path, existing: Existing) -> Result<File, OutputError> {
    check_directory(path)?;
    let euid = current_euid();
    let io_err = |source: io::Error| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut create = OpenOptions::new();
    create
        .write(true)
        .create_new(true)
        .mode(OUTPUT_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if existing == Existing::Append {
        create.append(true);
    }
    match create.open(path) {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(classify(path, e)),
    }
    // The path exists: open it without creating or following, then judge what was
    // opened (not what the path named a moment ago).
    let mut reuse = OpenOptions::new();
    reuse
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    if existing == Existing::Append {
        reuse.append(true);
    }
    let file = reuse.open(path).map_err(|e| classify(path, e))?;
    let meta = file.metadata().map_err(io_err)?;
    let unsafe_file = |reason: String| OutputError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.file_type().is_file() {
        return Err(unsafe_file("it is not a regular file".into()));
    }
    if meta.uid() != euid {
        return Err(unsafe_file(format!(
            "it belongs to uid {}, not to this process (uid {euid}); remove it or choose another name",
            meta.uid()
        )));
    }
    if meta.nlink() != 1 {
        return Err(unsafe_file(format!(
            "it has {} hard links (another name could be a file this run must not touch)",
            meta.nlink()
        )));
    }
    if existing == Existing::Truncate {
        file.set_len(0).map_err(io_err)?;
    }
    // Tighten a file an earlier version left world-readable.
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(OUTPUT_MODE))
            .map_err(io_err)?;
    }
    Ok(file)
}

/// Refuses a directory that another user can write, unless it is sticky.
pub fn check_directory(path: &Path) -> Result<(), OutputError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).map_err(|source| OutputError::Io {
        path: dir.clone(),
        source,
    })?;
    let mode = meta.permissions().mode();
    let euid = current_euid();
    let others_write = mode & 0o002 != 0
        || (mode & 0o020 != 0 && meta.gid() != 0)
        || (meta.uid() != euid && meta.uid() != 0);
    let sticky = mode & 0o1000 != 0;
    if others_write && !sticky {
        return Err(OutputError::Unsafe {
            path: path.to_path_buf(),
            reason: format!(
                "its directory {} can be written by other users (mode {:o}, owner uid {}) and is not sticky; \
                 write into a directory only root (or the --user) controls",
                dir.display(),
                mode & 0o7777,
                meta.uid()
            ),
        });
    }
    Ok(())
}

fn classify(path: &Path, e: io::Error) -> OutputError {
    // O_NOFOLLOW on a symlink fails with ELOOP.
    if e.raw_os_error() == Some(libc::ELOOP) {
        OutputError::Symlink {
            path: path.to_path_buf(),
        }
    } else {
        OutputError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        d
    }

    #[test]
    fn new_file_is_private() {
        let d = private_dir();
        let p = d.path().join("out.csv");
        open_output(&p, Existing::Append).expect("open");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn symlink_is_refused_and_target_untouched() {
        let d = private_dir();
        let target = d.path().join("precious");
        std::fs::write(&target, b"keep me").expect("write");
        let link = d.path().join("out.pcapng");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        for how in [Existing::Append, Existing::Truncate] {
            let r = open_output(&link, how);
            assert!(matches!(r, Err(OutputError::Symlink { .. })), "{r:?}");
        }
        assert_eq!(std::fs::read(&target).expect("read"), b"keep me");
    }

    /// The case of the review: the drop user plants a symlink in a directory it can
    /// write (sticky, like /tmp) pointing at a root-only file, and root opens the
    /// output there. Run as root, the symlink belongs to `nobody`.
    #[test]
    fn symlink_planted_by_the_drop_user_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let secret = tempfile::NamedTempFile::new().expect("secret");
        std::fs::write(secret.path(), b"root only").expect("write");
        std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let link = d.path().join("live.pcapng");
        std::os::unix::fs::symlink(secret.path(), &link).expect("symlink");
        if current_euid() == 0 {
            let c = std::ffi::CString::new(link.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::lchown(c.as_ptr(), 65534, 65534) }, 0);
        }
        for how in [Existing::Truncate, Existing::Append] {
            let r = open_output(&link, how);
            assert!(matches!(r, Err(OutputError::Symlink { .. })), "{r:?}");
        }
        assert_eq!(std::fs::read(secret.path()).expect("read"), b"root only");
    }

    #[test]
    fn hard_link_is_refused() {
        let d = private_dir();
        let target = d.path().join("precious");
        std::fs::write(&target, b"keep me").expect("write");
        let link = d.path().join("out.csv");
        std::fs::hard_link(&target, &link).expect("link");
        let r = open_output(&link, Existing::Truncate);
        assert!(matches!(r, Err(OutputError::Unsafe { .. })), "{r:?}");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep me");
    }

    #[test]
    fn own_file_is_appended_or_truncated() {
        let d = private_dir();
        let p = d.path().join("out.csv");
        std::fs::write(&p, b"a\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut f = open_output(&p, Existing::Append).expect("append");
        f.write_all(b"b\n").expect("write");
        drop(f);
        assert_eq!(std::fs::read(&p).expect("read"), b"a\nb\n");
        // Tightened on the way.
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(open_output(&p, Existing::Truncate).expect("truncate"));
        assert_eq!(std::fs::read(&p).expect("read"), b"");
    }

    #[test]
    fn world_writable_directory_needs_sticky_bit() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let p = d.path().join("out.csv");
        let r = open_output(&p, Existing::Append);
        assert!(matches!(r, Err(OutputError::Unsafe { .. })), "{r:?}");
        assert!(!p.exists());
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        open_output(&p, Existing::Append).expect("sticky directory is fine");
    }

    #[test]
    fn directory_is_not_a_file() {
        let d = private_dir();
        let r = open_output(d.path(), Existing::Truncate);
        assert!(r.is_err());
    }
}
