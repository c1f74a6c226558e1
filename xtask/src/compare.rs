//! `cargo xtask compare`: the rule of every performance change ("a performance change
//! changes no output") as a command. Two observer binaries run on the same captures with
//! the same thread counts; their transaction CSVs, JSON summaries, tables, `messages`
//! listings and exit codes must be byte-identical.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// The benchmark captures compared when `--data` holds them: short enough to run four
/// thread counts twice in a few minutes, and between them the JXTA-heavy, the many-pair
/// and the many-poller shapes.
const DATA_FILES: &[&str] = &[
    "jxta-0.1g",
    "peers1k-0.1g",
    "jxta-1g",
    "pollers150k",
    "peers10k-1g",
];

#[derive(clap::Args)]
pub struct Args {
    /// The binary whose outputs are the reference (e.g. the release build of the commit
    /// before the change).
    #[arg(long)]
    reference: PathBuf,
    /// The binary under test.
    #[arg(long, default_value = "target/release/observer")]
    candidate: PathBuf,
    /// The sample captures (every .pcap and .pcapng in it).
    #[arg(long, default_value = "captures")]
    captures: PathBuf,
    /// A `cargo xtask bench-data` directory: those of jxta-0.1g, peers1k-0.1g, jxta-1g,
    /// pollers150k and peers10k-1g that it holds are compared too.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only these of the --data captures (names without .pcap).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Thread counts of `analyze`.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    threads: Vec<usize>,
    /// Where the outputs go; those that differ are kept there.
    #[arg(long, default_value = "target/compare")]
    out: PathBuf,
}

/// One invocation's outputs: what it printed, the CSV it wrote (if asked) and its exit code.
struct Outputs {
    stdout: Vec<u8>,
    csv: Option<Vec<u8>>,
    code: Option<i32>,
}

fn run(bin: &Path, args: &[String], csv: Option<&Path>) -> Result<Outputs> {
    let mut command = Command::new(bin);
    command.args(args);
    if let Some(csv) = csv {
        command.arg("--csv").arg(csv);
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    // A run that wrote no CSV (an error exit) compares as an empty one: its exit
    // code is compared beside it.
    let csv = csv.map(|path| std::fs::read(path).unwrap_or_default());
    Ok(Outputs {
        stdout: output.stdout,
        csv,
        code: output.status.code(),
    })
}

/// The 1-based line where two outputs first differ, for the report.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    1 + a[..same].iter().filter(|&&c| c == b'\n').count()
}

pub fn run_compare(args: Args) -> Result<()> {
    let root = crate::workspace_root();
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    let (reference, candidate) = (absolute(&args.reference), absolute(&args.candidate));
    for bin in [&reference, &candidate] {
        anyhow::ensure!(bin.is_file(), "{} is not a file", bin.display());
    }
    let out = absolute(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(absolute(&args.captures))
        .with_context(|| format!("reading {}", args.captures.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    files.sort();
    let sample_count = files.len();
    if let Some(data) = &args.data {
        for name in DATA_FILES {
            if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
                continue;
            }
            let path = absolute(data).join(format!("{name}.pcap"));
            if path.is_file() {
                files.push(path);
            }
        }
    }

    let (mut compared, mut failed) = (0usize, 0usize);
    let mut check = |label: &str, what: &str, a: &[u8], b: &[u8]| {
        compared += 1;
        if a != b {
            failed += 1;
            println!(
                "DIFFER {label} {what}: first at line {} ({} vs {} bytes)",
                first_difference(a, b),
                a.len(),
                b.len()
            );
            let keep = |tag: &str, bytes: &[u8]| {
                let _ = std::fs::write(out.join(format!("{label}.{what}.{tag}")), bytes);
            };
            keep("reference", a);
            keep("candidate", b);
        }
    };
    for (index, file) in files.iter().enumerate() {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("capture")
            .to_string();
        let path = file.display().to_string();
        let base = |cmd: &str| vec![cmd.to_string(), path.clone(), "--no-progress".to_string()];
        for &threads in &args.threads {
            let label = format!("{stem}.t{threads}");
            let mut argv = base("analyze");
            argv.extend(["--threads".into(), threads.to_string(), "--json".into()]);
            let csv_a = out.join(format!("{label}.a.csv"));
            let csv_b = out.join(format!("{label}.b.csv"));
            let a = run(&reference, &argv, Some(&csv_a))?;
            let b = run(&candidate, &argv, Some(&csv_b))?;
            let _ = std::fs::remove_file(&csv_a);
            let _ = std::fs::remove_file(&csv_b);
            check(&label, "json", &a.stdout, &b.stdout);
            check(
                &label,
                "csv",
                a.csv.as_deref().unwrap_or_default(),
                b.csv.as_deref().unwrap_or_default(),
            );
            check(
                &label,
                "exit",
                format!("{:?}", a.code).as_bytes(),
                format!("{:?}", b.code).as_bytes(),
            );
        }
        // The human tables and the message listings: one thread is enough (the threaded
        // path only changes what `analyze` computes, which the JSON above covers), and
        // only on the sample captures (a listing of a benchmark file is gigabytes).
        let label = format!("{stem}.t1");
        let a = run(&reference, &base("analyze"), None)?;
        let b = run(&candidate, &base("analyze"), None)?;
        check(&label, "table", &a.stdout, &b.stdout);
        if index < sample_count {
            for (what, extra) in [("messages", None), ("messages-json", Some("--json"))] {
                let mut argv = base("messages");
                argv.extend(extra.map(String::from));
                let a = run(&reference, &argv, None)?;
                let b = run(&candidate, &argv, None)?;
                check(&label, what, &a.stdout, &b.stdout);
            }
        }
    }
    println!("compared {compared} outputs, fail={failed}");
    anyhow::ensure!(failed == 0, "{failed} of {compared} outputs differ");
    Ok(())
}
