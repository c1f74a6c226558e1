//! A throwaway ClickHouse server for a test ([`testbed::clickhouse`]) on loopback ports,
//! its state under a directory the test owns, killed on drop; panics where the test
//! should fail.

use std::path::{Path, PathBuf};

use testbed::clickhouse::{Config, Server};

#[allow(unused_imports)] // kept for tests that name it
pub use testbed::clickhouse::SERVER;

/// A user with a password, besides `default` without one.
pub const TEST_USER: &str = "observer";
pub const TEST_PASSWORD: &str = "test-password";

/// Whether the server is installed (see [`super::missing_requirement`]).
pub fn available() -> bool {
    testbed::clickhouse::installed() || super::missing_requirement("clickhouse-server")
}

pub struct ClickHouse {
    pub dir: PathBuf,
    pub http_port: u16,
    server: Server,
}

impl ClickHouse {
    /// Starts a server with its state in `dir` on free ports.
    pub fn start(dir: &Path) -> ClickHouse {
        Self::start_on(dir, super::free_port())
    }

    /// Starts a server with its state in `dir` on `http_port` (a restart keeps the
    /// port, so that a client's URL stays valid).
    pub fn start_on(dir: &Path, http_port: u16) -> ClickHouse {
        let mut cfg = Config::loopback(dir).expect("free ports");
        cfg.http_port = http_port;
        cfg.users = vec![(TEST_USER.into(), TEST_PASSWORD.into())];
        let server = Server::start(cfg).unwrap_or_else(|e| panic!("{e}"));
        ClickHouse {
            dir: dir.to_path_buf(),
            http_port,
            server,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Runs `sql`; panics with the server's message when it refuses.
    pub fn query(&self, sql: &str) -> String {
        self.server.query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kills the server at once (SIGKILL: no clean shutdown, like a crash).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// `SELECT version()`.
    pub fn version(&self) -> String {
        self.server.version().unwrap_or_else(|e| panic!("{e}"))
    }
}
