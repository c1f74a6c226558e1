//! `cargo run --release -p xtask -- bench-store`: the rate at which one observer's
//! ClickHouse sink (observer::store, the code `live` and `analyze` use) gets
//! transactions into a local server the testbed starts. Transactions are pushed as fast
//! as the sink accepts them; the clock stops when `finish` returns, i.e. when the last
//! batch is acknowledged. A benchmark, not a test: it prints figures for
//! docs/performance.md.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use observer::jim::Status;
use observer::jxta::PeerId;
use observer::store::{ClickHouseConfig, ClickHouseSink};
use observer::transaction::{MatchMethod, Transaction, TxStatus};
use testbed::clickhouse::{Config, Server};
use testbed::{cpu_seconds, thread_cpu_seconds};

pub struct Options {
    pub transactions: u64,
    pub runs: u32,
    pub batch_rows: usize,
    /// Peers and buddies each of them polls: the distinct pairs of the records.
    pub peers: u32,
    pub buddies: u32,
    pub out: PathBuf,
}

/// JIM's poll interval: the simulated time between two polls of one pair.
const POLL_NS: u64 = 10_000_000_000;
/// 2026-01-01T00:00:00Z: where the simulated records start.
const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

fn peer_id(i: u32) -> Result<PeerId> {
    let text = format!("urn:jxta:uuid-59616261646162614E504720503250{i:032X}03");
    PeerId::parse(&text).with_context(|| format!("{text} is not a peer ID"))
}

/// One record per pair, filled in as in a capture of the four-peers sample.
fn pairs(peers: u32, buddies: u32) -> Result<Vec<Transaction>> {
    let mut out = Vec::new();
    for p in 0..peers {
        for b in 1..=buddies.min(peers.saturating_sub(1)) {
            let r = (p + b) % peers;
            out.push(Transaction {
                start: 0,
                stop: None,
                poller_name: Some(format!("peer{p}").into()),
                poller_id: Some(peer_id(p)?),
                receiver_name: Some(format!("peer{r}").into()),
                receiver_id: Some(peer_id(r)?),
                receiver_status: Some(Status::Online),
                status: TxStatus::Ok,
                correlator: None,
                match_method: Some(MatchMethod::Correlator),
                ping_bytes: 1136,
                pong_bytes: Some(1174),
                correlator_overhead_bytes: 88,
                cause: Default::default(),
            });
        }
    }
    ensure!(
        !out.is_empty(),
        "no pairs: need at least 2 peers and 1 buddy"
    );
    Ok(out)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_total(c: Option<(f64, f64)>) -> f64 {
    c.map_or(f64::NAN, |(u, s)| u + s)
}

struct Figures {
    rate: f64,
}

fn one_run(
    server: &Server,
    opts: &Options,
    run: u32,
    pairs: &mut [Transaction],
) -> Result<Figures> {
    let table = format!("bench_store_{run}");
    server.query(&format!("DROP TABLE IF EXISTS {table}"))?;
    let spool = opts.out.join(format!("spool-{run}"));
    let _ = std::fs::remove_file(&spool);
    let mut cfg = ClickHouseConfig::new(&server.url(), &table, spool);
    cfg.batch_rows = opts.batch_rows;
    cfg.gateway = "bench".into();
    cfg.interface = "veth0".into();
    let events = |name: &str| -> Result<u64> {
        let v = server.query(&format!(
            "SELECT sum(value) FROM system.events WHERE event = '{name}'"
        ))?;
        Ok(v.trim().parse().unwrap_or(0))
    };
    let bytes0 = events("InsertedBytes")?;
    let me = std::process::id();
    let server_pid = server.pid().context("server not running")?;
    let (proc0, main0, server0) = (
        cpu_total(cpu_seconds(me)),
        cpu_total(thread_cpu_seconds(me, me)),
        cpu_total(cpu_seconds(server_pid)),
    );
    let t0 = Instant::now();
    let sink = ClickHouseSink::start(cfg)?;
    let n_pairs = pairs.len() as u64;
    for i in 0..opts.transactions {
        let t = &mut pairs[(i % n_pairs) as usize];
        t.start = EPOCH_NS + i * (POLL_NS / n_pairs);
        // 20 ms to 1 s, the round trips of the samples.
        t.stop = Some(t.start + 20_000_000 + (i * 7_919_993) % 980_000_000);
        t.correlator = Some(format!("{}", 4_611_686_018_427_387_905u64 + i).into());
        sink.push(t)?;
    }
    let stats = sink.finish()?;
    let secs = t0.elapsed().as_secs_f64();
    let (proc1, main1, server1) = (
        cpu_total(cpu_seconds(me)),
        cpu_total(thread_cpu_seconds(me, me)),
        cpu_total(cpu_seconds(server_pid)),
    );
    let stored: u64 = server
        .query(&format!("SELECT count() FROM {table}"))?
        .trim()
        .parse()
        .context("count() answer")?;
    ensure!(
        stored == opts.transactions && stats.records_stored == opts.transactions,
        "run {run}: {} pushed, the sink stored {}, the table holds {stored}",
        opts.transactions,
        stats.records_stored
    );
    let disk: u64 = server
        .query(&format!(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table = '{table}'"
        ))?
        .trim()
        .parse()
        .unwrap_or(0);
    let inserted = events("InsertedBytes")? - bytes0;
    server.query(&format!("DROP TABLE {table}"))?;
    let rate = opts.transactions as f64 / secs;
    println!(
        "{:>3} {:>10} {:>7.2} {:>9.0} {:>7} {:>8.1} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
        run,
        stored,
        secs,
        rate,
        stats.batches_stored,
        inserted as f64 / 1e6,
        disk as f64 / 1e6,
        (proc1 - proc0) - (main1 - main0),
        main1 - main0,
        server1 - server0,
        (server1 - server0) / secs,
    );
    Ok(Figures { rate })
}

pub fn run(opts: &Options) -> Result<()> {
    ensure!(
        !cfg!(debug_assertions),
        "bench-store measures the sink's own code in this process: run it optimised, \
         `cargo run --release -p xtask -- bench-store`"
    );
    ensure!(
        testbed::clickhouse::installed(),
        "bench-store needs Debian's clickhouse-server"
    );
    let dir = opts.out.join("clickhouse");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&opts.out)?;
    let server = Server::start(Config::loopback(&dir)?)?;
    let mut pairs = pairs(opts.peers, opts.buddies)?;
    println!(
        "ClickHouse {} at {}; {} transactions per run over {} pairs, batches of {} rows; load average {}",
        server.version()?,
        server.url(),
        opts.transactions,
        pairs.len(),
        opts.batch_rows,
        loadavg()
    );
    println!(
        "{:>3} {:>10} {:>7} {:>9} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "run",
        "stored",
        "secs",
        "tx/s",
        "batches",
        "ins_MB",
        "disk_MB",
        "sink_s",
        "feed_s",
        "srv_s",
        "srv_cpu"
    );
    let mut rates = Vec::new();
    for run in 0..opts.runs {
        rates.push(one_run(&server, opts, run, &mut pairs)?.rate);
    }
    rates.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (rates.first(), rates.last()) {
        println!(
            "tx/s: min {lo:.0}, median {:.0}, max {hi:.0}; load average now {}",
            rates[rates.len() / 2],
            loadavg()
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
