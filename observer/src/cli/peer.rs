//! `observer peer`: the instrumented JIM reference peer, configured from flags (and a
//! buddy file), run until its duration or a signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use observer::peer::config::{self, ConfigError, PeerConfig};

use super::values::{parse_bytes, parse_count, parse_positive_dur, Bytes, Dur};

#[derive(Args, Debug)]
pub struct PeerArgs {
    /// This peer's (user's) name.
    #[arg(long)]
    pub name: String,
    /// This peer's JXTA peer ID (default: derived from the name).
    #[arg(long, value_name = "URN")]
    pub peer_id: Option<String>,
    /// Address to listen on for JXTA TCP connections.
    #[arg(long, value_name = "ADDR", default_value_t = config::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// A buddy to poll: NAME=IP:PORT[,PEER-ID] (repeatable; the peer ID defaults to
    /// the one derived from the name).
    #[arg(long = "buddy", value_name = "NAME=ADDR")]
    pub buddies: Vec<String>,
    /// Buddy list in TOML ([[buddy]] name, address, optional peer_id).
    #[arg(long, value_name = "FILE")]
    pub buddies_file: Option<PathBuf>,
    /// Time between two PINGs to each buddy.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_dur,
          default_value_t = Dur(config::DEFAULT_INTERVAL))]
    pub interval: Dur,
    /// A PING unanswered this long is recorded as a timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_dur,
          default_value_t = Dur(config::DEFAULT_TIMEOUT))]
    pub timeout: Dur,
    /// Emulate unmodified JIM: no <correlator> element (the peer still measures itself).
    #[arg(long)]
    pub no_correlator: bool,
    /// Delay before each PONG: fixed:200ms, uniform:100ms,900ms, normal:850ms,300ms.
    #[arg(long, value_name = "DIST", default_value = "none")]
    pub reply_delay: String,
    /// Initial presence state (online, busy, away, offline).
    #[arg(long, value_name = "STATE", default_value = "online")]
    pub state: String,
    /// Change state at a time after start: `15s=busy` (repeatable; scripted scenarios).
    #[arg(long = "state-at", value_name = "TIME=STATE")]
    pub state_at: Vec<String>,
    /// Write every finished transaction to FILE in the observer's transaction CSV format.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Management HTTP endpoint (/metrics, /records, /state, /message); `off` disables it.
    #[arg(long, value_name = "ADDR", default_value_t = config::DEFAULT_MANAGEMENT.to_string())]
    pub management: String,
    /// Bearer token for the management endpoint; required when it is not on loopback.
    /// On the command line it is visible to every user (`ps`): prefer --token-file or
    /// the environment.
    #[arg(long, env = "OBSERVER_PEER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from the first line of FILE (keep it mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Stop cleanly (stop polling, wait for due PONGs, flush) after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Transactions outstanding at once (all buddies together).
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true,
          default_value_t = config::DEFAULT_POOL_SIZE)]
    pub pool_size: usize,
    /// Largest JXTA message accepted from the network (larger closes the connection).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = Bytes(config::DEFAULT_MAX_MESSAGE))]
    pub max_message: Bytes,
    /// Every Nth PING received, delay its PONG by DURATION more (scripted scenarios;
    /// each is logged at info level with its correlator): `4:1500ms`.
    #[arg(long, value_name = "N:DURATION")]
    pub extra_delay: Option<String>,
    /// Every Nth PING received, send the poller a MESSAGE of BYTES body bytes just
    /// before the PONG (scripted scenarios; logged like --extra-delay): `4:400KB`.
    #[arg(long, value_name = "N:BYTES")]
    pub message_before_pong: Option<String>,
    /// Do not read control commands (`state busy`, `msg bob hi`) from standard input.
    #[arg(long)]
    pub no_stdin: bool,
}

/// The peer's configuration from the flags; the library's checks, with the flag to
/// change named.
pub fn peer_config(args: PeerArgs) -> Result<PeerConfig> {
    let mut cfg = PeerConfig::new(&args.name);
    if let Some(id) = &args.peer_id {
        cfg.peer_id = observer::jxta::PeerId::parse(id)
            .with_context(|| format!("--peer-id {id:?} is not a peer ID"))?;
    }
    cfg.listen = args.listen;
    if let Some(f) = &args.buddies_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        cfg.buddies =
            config::parse_buddy_toml(&text).with_context(|| format!("in {}", f.display()))?;
    }
    for b in &args.buddies {
        cfg.buddies
            .push(config::parse_buddy_arg(b).context("--buddy")?);
    }
    cfg.interval = args.interval.0;
    cfg.timeout = args.timeout.0;
    cfg.correlator = !args.no_correlator;
    cfg.reply_delay = config::Delay::parse(&args.reply_delay).context("--reply-delay")?;
    cfg.csv = args.csv;
    cfg.management = match args.management.as_str() {
        "off" | "none" => None,
        m => Some(
            m.parse()
                .with_context(|| format!("--management {m:?} is not IP:PORT or off"))?,
        ),
    };
    cfg.token = match &args.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => {
            if args.token.is_some() && token_on_command_line() {
                tracing::warn!(
                    "--token on the command line can be read by every user (ps, /proc); use --token-file or OBSERVER_PEER_TOKEN"
                );
            }
            args.token
        }
    };
    cfg.duration = args.duration;
    cfg.pool_size = args.pool_size.max(1);
    cfg.max_message = args.max_message.0;
    cfg.stdin_commands = !args.no_stdin;
    cfg.initial_state = observer::jim::Status::parse(&args.state)
        .with_context(|| format!("--state {:?}: online, busy, away or offline", args.state))?;
    for item in &args.state_at {
        let (at, st) = item
            .split_once('=')
            .with_context(|| format!("--state-at {item:?}: expected TIME=STATE, e.g. 15s=busy"))?;
        let at = humantime::parse_duration(at)
            .with_context(|| format!("--state-at {item:?}: bad time"))?;
        let st = observer::jim::Status::parse(st)
            .with_context(|| format!("--state-at {item:?}: online, busy, away or offline"))?;
        cfg.state_schedule.push((at, st));
    }
    if let Some(x) = &args.extra_delay {
        cfg.extra_delay =
            Some(config::EveryNth::parse(x, humantime::parse_duration).context("--extra-delay")?);
    }
    if let Some(x) = &args.message_before_pong {
        cfg.message_before_pong = Some(
            config::EveryNth::parse(x, |v| parse_bytes(v).map(|b| b.0))
                .context("--message-before-pong")?,
        );
    }
    cfg.validate().map_err(|e| match e {
        ConfigError::ManagementWithoutToken(_) => {
            anyhow!("{e}: give --token, --token-file or OBSERVER_PEER_TOKEN")
        }
        e => e.into(),
    })?;
    Ok(cfg)
}

pub fn run(args: PeerArgs) -> Result<ExitCode> {
    let cfg = peer_config(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = rt.block_on(observer::peer::run(cfg))?;
    let (stats, arm) = shared.arm.snapshot();
    let ok: u64 = stats
        .iter()
        .map(|s| s.by_status.get("ok").copied().unwrap_or(0))
        .sum();
    let timeout: u64 = stats
        .iter()
        .map(|s| s.by_status.get("timeout").copied().unwrap_or(0))
        .sum();
    eprintln!(
        "observer peer {}: {ok} ok, {timeout} timeout, {} CSV records; counters {:?}; bad input {:?}",
        shared.cfg.name,
        arm.csv_records,
        shared.counters(),
        shared.bad_inputs()
    );
    // Tasks still blocked on standard input must not keep the process alive.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// Whether `--token` was given in argv (rather than through the environment).
fn token_on_command_line() -> bool {
    std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == "--token" || a.starts_with("--token=")
    })
}

/// The first line of a token file; warns when others can read the file.
fn read_token_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the token file {} can be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
    Ok(token)
}
