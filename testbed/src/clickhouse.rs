//! A throwaway ClickHouse server: Debian's `clickhouse-server` with its config, data,
//! tmp and logs under a directory the caller owns, on the address and ports it names,
//! optionally inside a network namespace; killed on drop. The config uses only what
//! 18.16 (Debian bookworm) and current releases both read.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{io_error, Error, Result};

/// Where Debian installs the server.
pub const SERVER: &str = "/usr/sbin/clickhouse-server";
/// How long a start may take (18.16 answers in ~1 s here, more on a loaded machine).
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// How long one HTTP exchange may take.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// Whether the server is installed.
pub fn installed() -> bool {
    Path::new(SERVER).exists()
}

/// Where the server runs and who may connect.
#[derive(Debug, Clone)]
pub struct Config {
    /// Config, data, tmp and logs.
    pub dir: PathBuf,
    pub listen: IpAddr,
    pub http_port: u16,
    pub tcp_port: u16,
    /// Client networks every user may connect from (an address or a CIDR block).
    pub networks: Vec<String>,
    /// Users with a password, besides `default` without one.
    pub users: Vec<(String, String)>,
    /// The network namespace to run in (where `listen` exists), `None` for this one.
    pub netns: Option<String>,
}

impl Config {
    /// On 127.0.0.1, free ports, loopback clients only, no extra user.
    pub fn loopback(dir: &Path) -> Result<Config> {
        Ok(Config {
            dir: dir.to_path_buf(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: crate::free_port()?,
            tcp_port: crate::free_port()?,
            networks: vec!["127.0.0.1".into()],
            users: Vec::new(),
            netns: None,
        })
    }

    fn write_files(&self) -> Result<()> {
        let dir = &self.dir;
        for sub in ["data", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io_error(format!("creating {}", dir.join(sub).display())))?;
        }
        let d = dir.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
    <http_port>{}</http_port>
    <tcp_port>{}</tcp_port>
    <listen_host>{}</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>5368709120</mark_cache_size>
</yandex>
"#,
            self.http_port, self.tcp_port, self.listen
        );
        let networks: String = self
            .networks
            .iter()
            .map(|n| format!("<ip>{n}</ip>"))
            .collect();
        let user = |name: &str, password: &str| {
            format!(
                "        <{name}><password>{password}</password><networks>{networks}</networks><profile>default</profile><quota>default</quota></{name}>\n"
            )
        };
        let mut users = user("default", "");
        for (name, password) in &self.users {
            users.push_str(&user(name, password));
        }
        let users = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
{users}    </users>
    <quotas><default></default></quotas>
</yandex>
"#
        );
        for (name, text) in [("config.xml", config), ("users.xml", users)] {
            std::fs::write(dir.join(name), text)
                .map_err(io_error(format!("writing {}", dir.join(name).display())))?;
        }
        Ok(())
    }
}

/// A running server; killed on drop.
pub struct Server {
    cfg: Config,
    child: Option<Child>,
}

impl Server {
    /// Writes the config and starts the server; returns once it answers `/ping`.
    pub fn start(cfg: Config) -> Result<Server> {
        cfg.write_files()?;
        let mut server = Server { cfg, child: None };
        server.restart()?;
        Ok(server)
    }

    /// Starts the server again on the same data, address and ports (a client's URL
    /// stays valid), after [`Server::kill`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let dir = &self.cfg.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stdout.log"))
            .map_err(io_error("opening stdout.log"))?;
        let log2 = log.try_clone().map_err(io_error("stdout.log"))?;
        let mut cmd = match &self.cfg.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SERVER]);
                c
            }
            None => Command::new(SERVER),
        };
        cmd.arg(format!("--config-file={}/config.xml", dir.display()))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            command: format!("{SERVER} (Debian's clickhouse-server)"),
            source,
        })?;
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if matches!(self.http("GET", "/ping", ""), Ok((200, ref b)) if b == "Ok.\n") {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(Error::ClickHouse(format!(
                    "exited ({status}): {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                )));
            }
            if t0.elapsed() > START_LIMIT {
                self.kill();
                return Err(Error::ClickHouse(format!(
                    "did not answer /ping within {START_LIMIT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server at once (SIGKILL: no clean shutdown, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The server's process ID while it runs (`ip netns exec` execs into it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://ADDRESS:PORT` of the HTTP interface.
    pub fn url(&self) -> String {
        format!(
            "http://{}",
            SocketAddr::new(self.cfg.listen, self.cfg.http_port)
        )
    }

    /// Runs `sql` as `default`; the server's message when it refuses.
    pub fn query(&self, sql: &str) -> Result<String> {
        let (status, body) = self.http("POST", "/", sql)?;
        if status != 200 {
            return Err(Error::ClickHouse(format!("{sql}: {}", body.trim())));
        }
        Ok(body)
    }

    /// `SELECT version()`.
    pub fn version(&self) -> Result<String> {
        Ok(self.query("SELECT version()")?.trim().to_string())
    }

    /// One HTTP/1.0 exchange: status and body. From a thread that enters the server's
    /// namespace when it has one (its address exists only there).
    pub fn http(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let addr = SocketAddr::new(self.cfg.listen, self.cfg.http_port);
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.cfg.listen,
            body.len()
        );
        let Some(ns) = &self.cfg.netns else {
            return exchange(addr, &request);
        };
        let ns = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&ns).map_err(io_error(ns.clone()))?;
            // SAFETY: a valid descriptor of a network namespace; setns changes only this
            // thread's namespace, and the thread ends with the exchange.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(Error::Io {
                    what: format!("setns {ns}"),
                    source: std::io::Error::last_os_error(),
                });
            }
            exchange(addr, &request)
        })
        .join()
        .map_err(|_| Error::ClickHouse("the HTTP thread panicked".into()))?
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn exchange(addr: SocketAddr, request: &str) -> Result<(u16, String)> {
    let what = format!("HTTP to {addr}");
    let mut s = std::net::TcpStream::connect(addr).map_err(io_error(what.clone()))?;
    s.set_read_timeout(Some(ANSWER_LIMIT))
        .map_err(io_error(what.clone()))?;
    s.write_all(request.as_bytes())
        .map_err(io_error(what.clone()))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(io_error(what.clone()))?;
    let bad = || Error::ClickHouse(format!("{what}: not an HTTP answer: {out:.200}"));
    let (head, body) = out.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_get_the_allowed_networks_and_passwords() {
        let dir = std::env::temp_dir().join(format!("testbed-ch-{}", std::process::id()));
        let mut cfg = Config::loopback(&dir).expect("ports");
        cfg.networks = vec!["10.213.9.0/24".into()];
        cfg.users = vec![("observer".into(), "secret".into())];
        cfg.write_files().expect("written");
        let users = std::fs::read_to_string(dir.join("users.xml")).expect("users.xml");
        let config = std::fs::read_to_string(dir.join("config.xml")).expect("config.xml");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            users.matches("<ip>10.213.9.0/24</ip>").count(),
            2,
            "{users}"
        );
        assert!(users.contains("<password>secret</password>"), "{users}");
        assert!(
            config.contains(&format!("<http_port>{}</http_port>", cfg.http_port)),
            "{config}"
        );
    }
}
