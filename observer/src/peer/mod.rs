//! `observer peer`: an instrumented JIM reference peer.
//!
//! It speaks the JXTA TCP transport (welcome lines, message packages, `jxmg` messages
//! laid out like JXSE 2.5 unicast pipe messages) with the library's own encoders and
//! stream parser, polls its buddies (PING every interval, PONG with its state to every
//! PING), delivers or refuses MESSAGE documents, and measures its own PING/PONG round
//! trips the way the study's instrumentation did ([`arm`]). The records go to a CSV
//! file in the observer's transaction format and to a management endpoint
//! ([`management`]), so the passive measurement can be checked against them
//! (`observer validate`).
//!
//! Choices this module makes (see `docs/peer.md`):
//! - IDs: peer and pipe IDs are derived from names unless configured.
//! - One connection per peer pair; duplicates resolved by the smaller-initiator rule
//!   ([`connection`]).
//! - A MESSAGE to an offline peer is answered with a MESSAGE document whose body starts
//!   with `REFUSED:`; both sides count it (`messages_refused`, `messages_refused_by_peer`).
//! - A PING to a buddy with no open connection is not sent (nothing on the wire) and is
//!   counted as `pings_not_sent_unconnected`; PINGs already sent stay open until their
//!   PONG or their timeout, also across a lost connection.
//! - A PING that finds the transaction pool full is not sent (counted `pool_full`), so
//!   every PING on the wire has a record.

pub mod arm;
pub mod config;
pub mod connection;
pub mod management;
pub mod timestamping;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

pub use arm::{Arm, Record};
pub use config::{Buddy, ConfigError, Delay, PeerConfig};

/// Why the peer could not start.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create {}", path.display())]
    CreateCsv {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the CSV header")]
    CsvHeader(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the management endpoint {addr}")]
    Management {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the address of a listening socket")]
    LocalAddr(#[source] std::io::Error),
}

/// A control command that could not be carried out; the message is the one-line
/// answer given to whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown state {0:?} (online, busy, away, offline)")]
    UnknownState(String),
    #[error("usage: msg NAME TEXT")]
    MessageUsage,
    #[error("unknown command {0:?} (state, msg)")]
    UnknownCommand(String),
    #[error("no buddy called {0:?}")]
    NoBuddy(String),
    #[error("{0} is not connected")]
    NotConnected(String),
    #[error("the queue to {0} is full")]
    QueueFull(String),
}

use crate::jim::Status;
use crate::jxta::PeerId;

/// A registered connection to one peer.
pub struct ConnEntry {
    pub id: u64,
    /// Who opened the TCP connection (for the duplicate rule).
    pub initiator: PeerId,
    pub tx: mpsc::Sender<connection::Out>,
    pub close: Arc<Notify>,
    /// The peer's listening address as its welcome line gave it.
    pub peer_addr: String,
}

/// A MESSAGE received (or a refusal of one of ours).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedMessage {
    pub at_unix_ns: u64,
    pub from: String,
    pub body: String,
    pub refusal: bool,
}

const RECENT_MESSAGES: usize = 128;

/// State shared by every task of the peer.
pub struct Shared {
    pub cfg: PeerConfig,
    pub arm: Arm,
    state: Mutex<Status>,
    conns: Mutex<HashMap<PeerId, ConnEntry>>,
    counters: Mutex<BTreeMap<&'static str, u64>>,
    bad_input: Mutex<BTreeMap<&'static str, u64>>,
    messages: Mutex<VecDeque<ReceivedMessage>>,
    rng: Mutex<config::Rng>,
    conn_ids: AtomicU64,
    /// PINGs received so far, numbering them for the scripted injections.
    pings_seen: AtomicU64,
    /// The port actually listened on (the configured one may be 0).
    listen_port: u16,
    /// The address to advertise when listening on an unspecified address: learned
    /// from the first connection's local address.
    learned_ip: Mutex<Option<IpAddr>>,
    stopping: AtomicBool,
    started: std::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn count(&self, what: &'static str, n: u64) {
        *lock(&self.counters).entry(what).or_insert(0) += n;
    }

    /// Bad input from the network: the connection is closed, the peer goes on.
    pub fn bad_input(&self, why: &'static str) {
        tracing::warn!("bad input from the network ({why}): connection closed");
        *lock(&self.bad_input).entry(why).or_insert(0) += 1;
    }

    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.counters).clone()
    }

    pub fn bad_inputs(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.bad_input).clone()
    }

    pub fn state(&self) -> Status {
        *lock(&self.state)
    }

    pub fn set_state(&self, s: Status) {
        let mut g = lock(&self.state);
        if *g != s {
            tracing::info!("state {} -> {}", *g, s);
            *g = s;
            drop(g);
            self.count("state_changes", 1);
        }
    }

    pub fn reply_delay(&self) -> Duration {
        self.cfg.reply_delay.sample(&mut lock(&self.rng))
    }

    /// The number of this PING among those received (from 1).
    pub fn next_ping_seen(&self) -> u64 {
        self.pings_seen.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The transport address this peer advertises (welcome line, endpoint addresses).
    pub fn public_addr(&self, local: Option<SocketAddr>) -> SocketAddr {
        let ip = self.cfg.listen.ip();
        if !ip.is_unspecified() {
            return SocketAddr::new(ip, self.listen_port);
        }
        let mut learned = lock(&self.learned_ip);
        if let Some(l) = local {
            if learned.is_none() && !l.ip().is_unspecified() {
                *learned = Some(l.ip());
            }
        }
        let ip = local
            .map(|l| l.ip())
            .or(*learned)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, self.listen_port)
    }

    pub fn buddy_index(&self, peer: &PeerId) -> Option<usize> {
        self.cfg.buddies.iter().position(|b| &b.peer_id == peer)
    }

    /// Registers a connection whose welcome exchange completed. With one already
    /// registered for the peer, the one initiated by the smaller peer ID stays (on a
    /// tie, the newer one: its initiator has given up on the older). Returns `false`
    /// when the new connection lost and must close.
    pub fn register(&self, peer: &PeerId, entry: ConnEntry) -> bool {
        let mut conns = lock(&self.conns);
        if let Some(old) = conns.get(peer) {
            if old.initiator < entry.initiator {
                return false;
            }
            old.close.notify_one();
            self.count("connections_replaced", 1);
        }
        conns.insert(peer.clone(), entry);
        true
    }

    pub fn unregister(&self, peer: &PeerId, id: u64) {
        let mut conns = lock(&self.conns);
        if conns.get(peer).is_some_and(|e| e.id == id) {
            conns.remove(peer);
        }
    }

    /// The queue to `peer`'s connection and the peer's listening address.
    pub fn sender(&self, peer: &PeerId) -> Option<(mpsc::Sender<connection::Out>, String)> {
        lock(&self.conns)
            .get(peer)
            .map(|e| (e.tx.clone(), e.peer_addr.clone()))
    }

    pub fn connected(&self) -> Vec<PeerId> {
        lock(&self.conns).keys().cloned().collect()
    }

    pub fn note_message(&self, from: &str, body: &str, refusal: bool) {
        let mut m = lock(&self.messages);
        if m.len() >= RECENT_MESSAGES {
            m.pop_front();
        }
        m.push_back(ReceivedMessage {
            at_unix_ns: arm::now_ns(),
            from: from.to_string(),
            body: body.chars().take(4096).collect(),
            refusal,
        });
    }

    pub fn recent_messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.messages).iter().cloned().collect()
    }
}

impl Shared {
    /// The peer's state, without sockets: `run` adds the listeners and tasks; the fuzz
    /// target drives connections over in-memory pipes.
    pub fn new(cfg: PeerConfig, listen_port: u16) -> Result<Arc<Shared>, PeerError> {
        let csv = match &cfg.csv {
            Some(p) => Some(
                std::fs::File::create(p).map_err(|source| PeerError::CreateCsv {
                    path: p.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let receivers = cfg
            .buddies
            .iter()
            .map(|b| arm::Receiver {
                name: b.name.clone(),
                peer_id: b.peer_id.clone(),
            })
            .collect();
        let arm = Arm::new(
            &cfg.name,
            cfg.peer_id.clone(),
            receivers,
            cfg.pool_size,
            u64::try_from(cfg.timeout.as_nanos()).unwrap_or(u64::MAX),
            cfg.correlator,
            csv,
        )
        .map_err(PeerError::CsvHeader)?;
        let seed = config::fnv1a(3, cfg.name.as_bytes()) ^ arm::now_ns();
        let shared = Arc::new(Shared {
            arm,
            state: Mutex::new(cfg.initial_state),
            conns: Mutex::new(HashMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            bad_input: Mutex::new(BTreeMap::new()),
            messages: Mutex::new(VecDeque::new()),
            rng: Mutex::new(config::Rng::new(seed)),
            conn_ids: AtomicU64::new(1),
            pings_seen: AtomicU64::new(0),
            listen_port,
            learned_ip: Mutex::new(None),
            stopping: AtomicBool::new(false),
            started: std::time::Instant::now(),
            cfg,
        });
        Ok(shared)
    }
}

/// Runs the peer until `--duration` elapses, SIGINT or SIGTERM. On the way out it stops
/// polling, waits (at most 3 s, at most the timeout) for PONGs still due, and flushes
/// the CSV.
pub async fn run(cfg: PeerConfig) -> Result<Arc<Shared>, PeerError> {
    cfg.validate()?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| PeerError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let listen_port = listener.local_addr().map_err(PeerError::LocalAddr)?.port();
    let mgmt = match cfg.management {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| PeerError::Management { addr, source })?,
        ),
        None => None,
    };
    let shared = Shared::new(cfg, listen_port)?;
    eprintln!(
        "observer peer {} ({}) listening on {}:{listen_port}{}",
        shared.cfg.name,
        shared.cfg.peer_id,
        shared.cfg.listen.ip(),
        match &mgmt {
            Some(m) => format!(
                ", management on http://{}",
                m.local_addr().map_err(PeerError::LocalAddr)?
            ),
            None => String::new(),
        }
    );

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(accept_loop(shared.clone(), listener)));
    for i in 0..shared.cfg.buddies.len() {
        tasks.push(tokio::spawn(dial_loop(shared.clone(), i)));
    }
    {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(50));
            loop {
                t.tick().await;
                s.arm.sweep(arm::now_ns());
            }
        }));
    }
    if let Some(m) = mgmt {
        tasks.push(tokio::spawn(management::serve(shared.clone(), m)));
    }
    if shared.cfg.stdin_commands {
        tasks.push(tokio::spawn(stdin_commands(shared.clone())));
    }
    for (at, state) in shared.cfg.state_schedule.clone() {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(at).await;
            s.set_state(state);
        }));
    }

    // Polling until told to stop.
    let interval = shared.cfg.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = shared.cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let signals = shutdown_signal();
    tokio::pin!(signals);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                for i in 0..shared.cfg.buddies.len() {
                    connection::queue_ping(&shared, i);
                }
            }
            _ = &mut until_deadline => break,
            _ = &mut signals => break,
        }
    }
    shared.stopping.store(true, Ordering::Relaxed);
    let drain = shared.cfg.timeout.min(Duration::from_secs(3));
    let drain_end = tokio::time::Instant::now() + drain;
    while shared.arm.open_count() > 0 && tokio::time::Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.arm.flush();
    for t in tasks {
        t.abort();
    }
    Ok(shared)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection::run(shared.clone(), stream, false, None));
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Keeps a connection to buddy `i`: dials when there is none, with backoff
/// (250 ms doubling to 10 s) while the buddy is unreachable. The peer with the larger
/// peer ID waits a moment before its first dial, so two peers started together
/// usually open one connection, not two.
async fn dial_loop(shared: Arc<Shared>, i: usize) {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(10);
    let buddy = shared.cfg.buddies[i].clone();
    if shared.cfg.peer_id > buddy.peer_id {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut backoff = MIN;
    loop {
        if shared.stopping() {
            return;
        }
        if shared.sender(&buddy.peer_id).is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let attempt =
            tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(buddy.addr)).await;
        match attempt {
            Ok(Ok(stream)) => {
                let began = std::time::Instant::now();
                connection::run(shared.clone(), stream, true, Some(buddy.peer_id.clone())).await;
                backoff = if began.elapsed() > Duration::from_secs(5) {
                    MIN
                } else {
                    (backoff * 2).min(MAX)
                };
                tokio::time::sleep(MIN).await;
            }
            _ => {
                shared.count("dial_failures", 1);
                tracing::debug!(
                    "cannot reach {} at {}; retry in {backoff:?}",
                    buddy.name,
                    buddy.addr
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX);
            }
        }
    }
}

/// A control command (standard input or the management endpoint's `/command`):
/// `state online|busy|away|offline`, `msg NAME TEXT…`. Returns a one-line answer.
pub fn command(shared: &Shared, line: &str) -> Result<String, CommandError> {
    let line = line.trim();
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "state" => {
            let s = Status::parse(rest.trim())
                .ok_or_else(|| CommandError::UnknownState(rest.to_string()))?;
            shared.set_state(s);
            Ok(format!("state {s}"))
        }
        "msg" | "message" => {
            let (to, body) = rest
                .trim()
                .split_once(' ')
                .ok_or(CommandError::MessageUsage)?;
            connection::queue_message(shared, to, body.trim())?;
            Ok(format!("sent to {to}"))
        }
        "" => Ok(String::new()),
        other => Err(CommandError::UnknownCommand(other.to_string())),
    }
}

async fn stdin_commands(shared: Arc<Shared>) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match command(&shared, &line) {
            Ok(a) if !a.is_empty() => eprintln!("{a}"),
            Ok(_) => {}
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// Resident memory and CPU time of this process (Linux `/proc`), for the
/// instrumentation's overhead report; `None` elsewhere.
pub fn process_usage() -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // The kernel's own page size and clock tick rather than 4096 and 100 (arm64 kernels
    // use 16 or 64 KiB pages). Not the `procfs` crate: two fields of two files.
    // SAFETY: sysconf has no preconditions and only reads configuration.
    let (page, tick) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
    let tick = u32::try_from(tick).ok().filter(|t| *t > 0)?;
    Some((
        rss_pages.saturating_mul(page),
        (utime + stime) / f64::from(tick),
    ))
}

#[cfg(test)]
mod tests {
    /// The resident size agrees with the kernel's own `VmRSS` (in kB) to within a
    /// factor of two (memory moves between the reads; a wrong page size is off 4-16x).
    #[test]
    fn process_usage_agrees_with_vmrss() {
        let (rss, _cpu) = super::process_usage().expect("Linux /proc");
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line");
        let vmrss = kb * 1024;
        assert!(rss > vmrss / 2 && rss < vmrss * 2, "{rss} against {vmrss}");
    }
}
