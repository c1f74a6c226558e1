//! The fixtures the integration tests and the xtask scenarios and benchmarks share:
//! `ip` and network namespaces, veth pairs that remove themselves, tcpreplay into a
//! veth, child processes stopped on drop, and a throwaway ClickHouse server. Needs root
//! for everything that touches the network configuration.

pub mod clickhouse;
mod net;
mod process;

pub use net::{ip, netns_exec, Replay, Veth};
pub use process::{cpu_seconds, free_port, thread_cpu_seconds, Children, Killer};

use std::process::ExitStatus;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("clickhouse-server: {0}")]
    ClickHouse(String),
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
