//! A throwaway ClickHouse server for a test: Debian's `clickhouse-server` on loopback
//! ports, its config, data, tmp and logs under a directory the test owns, killed on drop.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the server.
pub const SERVER: &str = "/usr/sbin/clickhouse-server";
/// How long a start may take before the test fails (18.16 answers in ~1 s here).
const START_LIMIT: Duration = Duration::from_secs(60);

/// A user with a password, besides `default` without one.
pub const TEST_USER: &str = "observer";
pub const TEST_PASSWORD: &str = "test-password";

/// Whether the server is installed (see [`super::missing_requirement`]).
pub fn available() -> bool {
    Path::new(SERVER).exists() || super::missing_requirement("clickhouse-server")
}

pub struct ClickHouse {
    pub dir: PathBuf,
    pub http_port: u16,
    child: Option<Child>,
}

impl ClickHouse {
    /// Starts a server with its state in `dir` on free ports.
    pub fn start(dir: &Path) -> ClickHouse {
        Self::start_on(dir, super::free_port())
    }

    /// Starts a server with its state in `dir` on `http_port` (a restart keeps the
    /// port, so that a client's URL stays valid).
    pub fn start_on(dir: &Path, http_port: u16) -> ClickHouse {
        let tcp_port = super::free_port();
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        std::fs::create_dir_all(dir.join("tmp")).expect("tmp dir");
        let d = dir.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>5368709120</mark_cache_size>
</yandex>
"#
        );
        let users = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
        <{TEST_USER}><password>{TEST_PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></{TEST_USER}>
    </users>
    <quotas><default></default></quotas>
</yandex>
"#
        );
        std::fs::write(dir.join("config.xml"), config).expect("config.xml");
        std::fs::write(dir.join("users.xml"), users).expect("users.xml");
        let out = std::fs::File::create(dir.join("stdout.log")).expect("stdout log");
        let child = Command::new(SERVER)
            .arg(format!("--config-file={d}/config.xml"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start clickhouse-server");
        let mut server = ClickHouse {
            dir: dir.to_path_buf(),
            http_port,
            child: Some(child),
        };
        let t0 = Instant::now();
        while http(http_port, "GET", "/ping", "").is_none_or(|(s, b)| s != 200 || b != "Ok.\n") {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                panic!(
                    "clickhouse-server exited ({status}): {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                t0.elapsed() < START_LIMIT,
                "clickhouse-server did not answer /ping within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs `sql`; panics with the server's message when it refuses.
    pub fn query(&self, sql: &str) -> String {
        let (status, body) = http(self.http_port, "POST", "/", sql).expect("clickhouse answers");
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    /// Kills the server at once (SIGKILL: no clean shutdown, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `SELECT version()`.
    pub fn version(&self) -> String {
        self.query("SELECT version()").trim().to_string()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.0 exchange: status and body, `None` when nothing answers.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
