//! `observer report`: figures and one index.html, from captures or from transaction
//! CSVs (ours, or another format through a column map).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use observer::report::{self, ColumnMap};
use observer::runtime;

use super::limits::{Inputs, Matching};
use super::values::duration_ns;
use super::{check_inputs, command_line, exit_for, nothing_read};

#[derive(Args, Debug)]
#[command(
    after_help = "--timeout and --max-outstanding apply to captures: a transaction \
CSV's timeouts are what its rows say."
)]
pub struct ReportArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub matching: Matching,
    /// Directory the figures and index.html are written to (created if needed).
    #[arg(short, long, value_name = "DIR", required_unless_present = "tables")]
    pub output: Option<PathBuf>,
    /// Logarithmic RTT axis in the time series.
    #[arg(long)]
    pub log: bool,
    /// Also one distribution panel per (poller, receiver) pair (distribution-pairs.svg).
    #[arg(long)]
    pub per_pair: bool,
    /// PNG versions of the figures too.
    #[arg(long)]
    pub png: bool,
    /// A TOML column map for transaction CSVs in another format (column names, units,
    /// status words; see docs/formats.md).
    #[arg(long, value_name = "TOML")]
    pub map: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreViewArgs,
}

/// `report --clickhouse`: the transactions of every gateway, from the store, each
/// counted once (docs/deployment.md "One view across gateways").
#[derive(Args, Debug)]
pub struct StoreViewArgs {
    /// Read the transactions from ClickHouse's HTTP interface instead of files.
    #[arg(long, value_name = "URL", conflicts_with = "files")]
    pub clickhouse: Option<String>,
    /// `table` or `database.table`.
    #[arg(long, value_name = "TABLE", default_value = observer::store::DEFAULT_TABLE)]
    pub clickhouse_table: String,
    /// Only PINGs from this time on (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<humantime::Timestamp>,
    /// Only PINGs before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<humantime::Timestamp>,
    /// Only this gateway's views (repeatable; all by default).
    #[arg(long = "gateway", value_name = "NAME")]
    pub gateways: Vec<String>,
    /// Print the tables on standard output (as `analyze` does; from the store, the
    /// gateways' too); figures only with -o.
    #[arg(long)]
    pub tables: bool,
    /// Views of one poller, receiver and correlator this close in start time are one
    /// transaction.
    #[arg(long, value_name = "DURATION",
          default_value_t = observer::store::view::DEFAULT_MERGE_WINDOW.into())]
    pub merge_window: humantime::Duration,
}

impl StoreViewArgs {
    fn read(&self, url: &str) -> Result<observer::store::view::StoreView> {
        let ns = |t: &Option<humantime::Timestamp>| {
            t.map(|t| {
                std::time::SystemTime::from(t)
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, duration_ns)
            })
        };
        let mut f = observer::store::view::ViewFilter::new(&self.clickhouse_table);
        f.since_ns = ns(&self.since);
        f.until_ns = ns(&self.until);
        f.gateways.clone_from(&self.gateways);
        f.window_ns = duration_ns(*self.merge_window);
        let cfg =
            observer::store::ClickHouseConfig::new(url, &self.clickhouse_table, PathBuf::new());
        let client = observer::store::Client::new(&cfg)?;
        Ok(observer::store::view::read(&client, &f)?)
    }
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    use observer::report::figures::{self, InputMeta, Options, ReportData};
    // A column map says the inputs are CSVs whatever their header.
    let csv: Vec<bool> = args
        .inputs
        .files
        .iter()
        .map(|f| args.map.is_some() || is_transactions_csv(f))
        .collect();
    let map = match &args.map {
        Some(p) => ColumnMap::load(p)?,
        None => ColumnMap::default(),
    };
    let command = command_line();
    let timeout_ns = args.matching.timeout.ns();
    let mut code = ExitCode::SUCCESS;
    let mut merged = None;
    let s = &args.store;
    if s.clickhouse.is_none() && (s.since.is_some() || s.until.is_some() || !s.gateways.is_empty())
    {
        bail!("--since, --until and --gateway select from the store: give --clickhouse URL");
    }
    let mut data = if let Some(url) = &args.store.clickhouse {
        let view = args.store.read(url)?;
        let source = format!("{url} {}", args.store.clickhouse_table);
        let data = view.report_data(&source, timeout_ns, &command);
        merged = Some(view.to_json());
        data
    } else if csv.iter().all(|c| *c) {
        let mut txs = Vec::new();
        let mut inputs = Vec::new();
        for path in &args.inputs.files {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let t: Vec<_> = report::read_records_csv(&bytes[..], &map)
                .with_context(|| format!("{}", path.display()))?
                .into_iter()
                .map(|r| r.tx)
                .collect();
            inputs.push(InputMeta {
                name: path.display().to_string(),
                format: format!("transactions CSV, {} records", t.len()),
                frames: None,
                bytes: bytes.len() as u64,
                error: None,
            });
            txs.extend(t);
        }
        ReportData::from_csv(txs, inputs, timeout_ns, &command)
    } else if csv.iter().any(|c| *c) {
        bail!("give either captures or transaction CSV files, not both");
    } else {
        check_inputs(&args.inputs.files)?;
        let mut cfg = args.inputs.pipeline_config();
        args.matching.apply(&mut cfg);
        let analysis = runtime::analyze(&args.inputs.files, cfg, !args.inputs.no_progress);
        // No figures of nothing: an unusable input is an error, as for `analyze`.
        nothing_read(&analysis)?;
        code = exit_for(&analysis);
        ReportData::from_analysis(analysis, timeout_ns, &command)
    };
    let opts = Options {
        log: args.log,
        per_pair: args.per_pair,
        png: args.png,
    };
    let mut out = io::stdout().lock();
    if args.store.tables {
        write!(out, "{}", data.meta.text_report)?;
    }
    let Some(output) = &args.output else {
        out.flush()?;
        return Ok(code);
    };
    let mut written = figures::write_all(&data, output, &opts)?;
    // The summary as `analyze --json` has it, whatever the source (and the merged
    // view's own facts from the store), for tools and for comparing sources.
    let path = output.join("summary.json");
    let file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut file = io::BufWriter::new(file);
    report::write_summary_json(&mut file, &mut data.summary)
        .map_err(anyhow::Error::from)
        .and_then(|()| file.flush().map_err(anyhow::Error::from))
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.files.push(path);
    if let Some(m) = merged {
        let path = output.join("merged.json");
        std::fs::write(&path, serde_json::to_string_pretty(&m)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.files.push(path);
    }
    for f in &written.files {
        writeln!(out, "{}", f.display())?;
    }
    out.flush()?;
    Ok(code)
}

/// Whether `path` is a transactions CSV (`analyze --csv`) rather than a capture: by
/// extension, else by its first bytes (the CSV header).
fn is_transactions_csv(path: &Path) -> bool {
    if path.as_os_str() == "-" {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return true;
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"start_unix_ns,")
}
