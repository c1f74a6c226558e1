//! The reference peer's configuration: who it is, its buddies, its timing.
//!
//! Peer and pipe IDs are derived from names unless given, so two peers started by hand
//! with `--name alice --buddy bob=…` and `--name bob --buddy alice=…` agree on each
//! other's IDs without exchanging advertisements (the reference peer has no discovery).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::jxta::PeerId;

/// Where the peer listens for JXTA TCP connections unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9701));
/// The management endpoint the command line opens unless told otherwise (loopback, so
/// it needs no token).
pub const DEFAULT_MANAGEMENT: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9801));
/// Time between two polls of each buddy (JIM's own period).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// A PING unanswered this long is recorded as a timeout: the observer's own default, so
/// that both sides call the same transactions timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_nanos(crate::transaction::DEFAULT_TIMEOUT_NS);
/// Transactions outstanding at once, all buddies together.
pub const DEFAULT_POOL_SIZE: usize = 1024;
/// Largest JXTA message accepted from the network.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 20;

/// What is wrong with a peer's configuration. The messages name the values, not the
/// command-line flags: the binary says which flag gave them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0:?}: expected KIND:ARGS (fixed:200ms, uniform:100ms,900ms, normal:850ms,300ms)")]
    DelayForm(String),
    #[error("{text:?} is not a duration")]
    DelayDuration {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{0:?}: expected fixed:D, uniform:MIN,MAX (MIN <= MAX) or normal:MEAN,SD")]
    DelayKind(String),
    #[error("{0:?}: expected NAME=HOST:PORT[,PEER-ID]")]
    BuddyForm(String),
    #[error("buddy name {0:?} is empty or contains , = : or a space")]
    BuddyName(String),
    #[error("buddy {name}: {addr:?} is not HOST:PORT (an IP address and a port)")]
    BuddyAddress {
        name: String,
        addr: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("buddy {name}: {id:?} is not a peer ID")]
    BuddyPeerId { name: String, id: String },
    #[error("buddy list is not valid TOML")]
    BuddyToml(#[source] toml::de::Error),
    #[error("the poll interval and the timeout must be greater than zero")]
    ZeroTime,
    #[error("the management endpoint {0} is not on loopback and has no bearer token")]
    ManagementWithoutToken(SocketAddr),
    #[error("buddy {0} is listed twice")]
    DuplicateBuddy(String),
    #[error("buddy {0} has this peer's own peer ID")]
    OwnPeerId(String),
    #[error("{0:?}: expected N:VALUE with N > 0 (every Nth PING received), e.g. 4:1500ms")]
    EveryForm(String),
}

/// Something done to every `every`th PING received (the `every`th, `2 × every`th, …),
/// for scenarios that inject a cause on purpose and need to know which transactions
/// carry it: the peer logs each one with its correlator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EveryNth<T> {
    pub every: u64,
    pub what: T,
}

impl<T> EveryNth<T> {
    /// Parses `N:VALUE` with `value` reading VALUE.
    pub fn parse<E>(
        s: &str,
        value: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<EveryNth<T>, ConfigError> {
        let bad = || ConfigError::EveryForm(s.to_string());
        let (n, v) = s.trim().split_once(':').ok_or_else(bad)?;
        let every: u64 = n.trim().parse().map_err(|_| bad())?;
        if every == 0 {
            return Err(bad());
        }
        let what = value(v.trim()).map_err(|_| bad())?;
        Ok(EveryNth { every, what })
    }

    /// Whether the `nth` PING received (counted from 1) is one of them.
    pub fn hits(&self, nth: u64) -> bool {
        nth > 0 && nth.is_multiple_of(self.every)
    }
}

/// The JXTA NetPeerGroup ID's unique part: every ID of this peer lives in that group,
/// as in JXSE (`urn:jxta:uuid-<group><peer>03`).
pub const NET_PEER_GROUP: &str = "59616261646162614E50472050325033";

/// One buddy: the peer this one polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buddy {
    pub name: String,
    pub peer_id: PeerId,
    pub addr: SocketAddr,
}

/// How long to wait before sending a PONG.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    None,
    Fixed(Duration),
    Uniform(Duration, Duration),
    /// Mean and standard deviation; samples below zero are clamped to zero.
    Normal(Duration, Duration),
}

impl Delay {
    /// Parses `fixed:200ms`, `uniform:100ms,900ms`, `normal:850ms,300ms` or `none`.
    pub fn parse(s: &str) -> Result<Delay, ConfigError> {
        let s = s.trim();
        if s == "none" || s == "0" {
            return Ok(Delay::None);
        }
        let (kind, args) = s
            .split_once(':')
            .ok_or_else(|| ConfigError::DelayForm(s.to_string()))?;
        let durs = args
            .split(',')
            .map(|a| {
                humantime::parse_duration(a.trim()).map_err(|source| ConfigError::DelayDuration {
                    text: a.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match (kind, durs.as_slice()) {
            ("fixed", [d]) => Ok(Delay::Fixed(*d)),
            ("uniform", [a, b]) if a <= b => Ok(Delay::Uniform(*a, *b)),
            ("normal", [m, sd]) => Ok(Delay::Normal(*m, *sd)),
            _ => Err(ConfigError::DelayKind(s.to_string())),
        }
    }

    /// Draws one delay.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match *self {
            Delay::None => Duration::ZERO,
            Delay::Fixed(d) => d,
            Delay::Uniform(a, b) => a + (b - a).mul_f64(rng.unit()),
            Delay::Normal(m, sd) => {
                let v = m.as_secs_f64() + sd.as_secs_f64() * rng.gaussian();
                Duration::from_secs_f64(v.max(0.0))
            }
        }
    }
}

/// A small deterministic generator (xorshift64*): delays need no cryptographic quality
/// and the peer stays free of an RNG dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// FNV-1a, 64 bits: a stable hash for deriving IDs from names.
pub fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn derived_hex(kind: &str, name: &str) -> String {
    let a = fnv1a(1, format!("{kind}:{name}").as_bytes());
    let b = fnv1a(2, format!("{kind}:{name}").as_bytes());
    format!("{a:016X}{b:016X}")
}

/// The peer ID a peer called `name` has unless configured otherwise.
pub fn derived_peer_id(name: &str) -> PeerId {
    PeerId::parse(&format!(
        "urn:jxta:uuid-{NET_PEER_GROUP}{}03",
        derived_hex("peer", name)
    ))
    .expect("derived peer ID is valid")
}

/// The input pipe ID of the peer with `peer_id` (one unicast pipe per peer, which all
/// its buddies send to; pipe IDs end in `04`).
pub fn derived_pipe_id(peer_id: &PeerId) -> String {
    format!(
        "urn:jxta:uuid-{NET_PEER_GROUP}{}04",
        derived_hex("pipe", peer_id.as_str())
    )
}

/// Parses `NAME=HOST:PORT[,PEER-ID]` (the command line's `--buddy`).
pub fn parse_buddy_arg(s: &str) -> Result<Buddy, ConfigError> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| ConfigError::BuddyForm(s.to_string()))?;
    let (addr, id) = match rest.split_once(',') {
        Some((a, id)) => (a, Some(id)),
        None => (rest, None),
    };
    buddy(name, addr, id)
}

fn buddy(name: &str, addr: &str, id: Option<&str>) -> Result<Buddy, ConfigError> {
    let name = name.trim();
    if name.is_empty() || name.contains([',', '=', ':', ' ']) {
        return Err(ConfigError::BuddyName(name.to_string()));
    }
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .map_err(|source| ConfigError::BuddyAddress {
            name: name.to_string(),
            addr: addr.to_string(),
            source,
        })?;
    let peer_id = match id {
        Some(id) => PeerId::parse(id).ok_or_else(|| ConfigError::BuddyPeerId {
            name: name.to_string(),
            id: id.to_string(),
        })?,
        None => derived_peer_id(name),
    };
    Ok(Buddy {
        name: name.to_string(),
        peer_id,
        addr,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuddyFile {
    #[serde(default)]
    buddy: Vec<BuddyEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuddyEntry {
    name: String,
    address: String,
    peer_id: Option<String>,
}

/// Reads a buddy list from TOML:
///
/// ```toml
/// [[buddy]]
/// name = "bob"
/// address = "127.0.0.1:9702"
/// peer_id = "urn:jxta:uuid-…03"   # optional: derived from the name when absent
/// ```
pub fn parse_buddy_toml(text: &str) -> Result<Vec<Buddy>, ConfigError> {
    let file: BuddyFile = toml::from_str(text).map_err(ConfigError::BuddyToml)?;
    file.buddy
        .iter()
        .map(|b| buddy(&b.name, &b.address, b.peer_id.as_deref()))
        .collect()
}

/// Everything the peer needs to run.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub name: String,
    pub peer_id: PeerId,
    pub listen: SocketAddr,
    pub buddies: Vec<Buddy>,
    /// Time between two polls of every buddy.
    pub interval: Duration,
    /// A PING unanswered this long becomes a `timeout` record.
    pub timeout: Duration,
    /// `false` emulates unmodified JIM: no `<correlator>` element on the wire.
    pub correlator: bool,
    pub reply_delay: Delay,
    pub csv: Option<PathBuf>,
    /// Management HTTP endpoint; `None` disables it.
    pub management: Option<SocketAddr>,
    /// Required (as `Authorization: Bearer <token>`) when `management` is not loopback.
    pub token: Option<String>,
    /// Stop cleanly after this long.
    pub duration: Option<Duration>,
    /// Transactions outstanding at once (all buddies together).
    pub pool_size: usize,
    /// Largest JXTA message accepted from the network.
    pub max_message: u64,
    /// Read commands (`state busy`, `msg bob hello`) from standard input.
    pub stdin_commands: bool,
    /// Presence state at start-up.
    pub initial_state: crate::jim::Status,
    /// State changes at fixed times after start (scripted scenarios).
    pub state_schedule: Vec<(Duration, crate::jim::Status)>,
    /// An extra delay before the PONG of every Nth PING received (scripted scenarios:
    /// the receiver's own slowness, the `far` cause).
    pub extra_delay: Option<EveryNth<Duration>>,
    /// A MESSAGE of this many body bytes sent to the poller just before the PONG of
    /// every Nth PING received (scripted scenarios: the PONG queues behind it).
    pub message_before_pong: Option<EveryNth<u64>>,
}

impl PeerConfig {
    pub fn new(name: &str) -> PeerConfig {
        PeerConfig {
            name: name.to_string(),
            peer_id: derived_peer_id(name),
            listen: DEFAULT_LISTEN,
            buddies: Vec::new(),
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            correlator: true,
            reply_delay: Delay::None,
            csv: None,
            management: None,
            token: None,
            duration: None,
            pool_size: DEFAULT_POOL_SIZE,
            max_message: DEFAULT_MAX_MESSAGE,
            stdin_commands: false,
            initial_state: crate::jim::Status::Online,
            state_schedule: Vec::new(),
            extra_delay: None,
            message_before_pong: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Err(ConfigError::ZeroTime);
        }
        if let Some(m) = self.management {
            if !m.ip().is_loopback() && self.token.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::ManagementWithoutToken(m));
            }
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.buddies {
            if !names.insert(&b.name) {
                return Err(ConfigError::DuplicateBuddy(b.name.clone()));
            }
            if b.peer_id == self.peer_id {
                return Err(ConfigError::OwnPeerId(b.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_parses_and_hits_its_multiples() {
        let x = EveryNth::parse("4:1500ms", humantime::parse_duration).expect("valid");
        assert_eq!(x.what, Duration::from_millis(1500));
        let hits: Vec<u64> = (0..=12).filter(|&n| x.hits(n)).collect();
        assert_eq!(hits, vec![4, 8, 12]);
        for bad in ["0:1s", "4", "x:1s", "4:soon"] {
            assert!(
                matches!(
                    EveryNth::parse(bad, humantime::parse_duration),
                    Err(ConfigError::EveryForm(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn buddies_from_cli_and_toml() {
        let b = parse_buddy_arg("bob=127.0.0.1:9702").unwrap();
        assert_eq!(b.name, "bob");
        assert_eq!(b.peer_id, derived_peer_id("bob"));
        assert!(b.peer_id.as_str().ends_with("03"));
        assert!(derived_pipe_id(&b.peer_id).ends_with("04"));
        let pid =
            "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603";
        let b = parse_buddy_arg(&format!("carol=10.0.0.3:9701,{pid}")).unwrap();
        assert_eq!(b.peer_id.as_str(), pid);
        assert!(matches!(
            parse_buddy_arg("bob"),
            Err(ConfigError::BuddyForm(_))
        ));
        assert!(matches!(
            parse_buddy_arg("bob=nowhere"),
            Err(ConfigError::BuddyAddress { .. })
        ));
        let list = parse_buddy_toml(
            "[[buddy]]\nname = \"bob\"\naddress = \"127.0.0.1:9702\"\n\n[[buddy]]\nname = \"carol\"\naddress = \"127.0.0.1:9703\"\n",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].addr.port(), 9703);
        assert!(parse_buddy_toml("[[buddy]]\nname = \"x\"\n").is_err());
    }

    #[test]
    fn delays() {
        assert_eq!(
            Delay::parse("fixed:200ms").unwrap(),
            Delay::Fixed(Duration::from_millis(200))
        );
        let mut rng = Rng::new(7);
        let u = Delay::parse("uniform:100ms,900ms").unwrap();
        let n = Delay::parse("normal:850ms,300ms").unwrap();
        let mut sum = 0.0;
        for _ in 0..2000 {
            let d = u.sample(&mut rng);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(900));
            sum += n.sample(&mut rng).as_secs_f64();
        }
        assert!((sum / 2000.0 - 0.85).abs() < 0.05, "{}", sum / 2000.0);
        assert!(matches!(
            Delay::parse("uniform:900ms,100ms"),
            Err(ConfigError::DelayKind(_))
        ));
        assert!(matches!(
            Delay::parse("gamma:1s"),
            Err(ConfigError::DelayKind(_))
        ));
        assert!(matches!(
            Delay::parse("fixed:soon"),
            Err(ConfigError::DelayDuration { .. })
        ));
    }

    #[test]
    fn management_beyond_loopback_needs_token() {
        let mut c = PeerConfig::new("alice");
        c.management = Some("0.0.0.0:9801".parse().unwrap());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ManagementWithoutToken(m)) if m.port() == 9801
        ));
        c.token = Some("s3cret".into());
        assert!(c.validate().is_ok());
    }
}
