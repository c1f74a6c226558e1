//! `cargo xtask bench-live`: replays a large capture onto a veth with `tcpreplay
//! --topspeed` while `observer live` captures the other end, for each source and for
//! several shares of background (non-JXTA) traffic; reports frames replayed, events the
//! source delivered, drops, the observer's CPU time and the transactions it found.
//! A benchmark, not a test: it prints figures for docs/performance.md.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use observer::capture::{CaptureWriter, WriteFormat};
use observer::packet::build::{self, LinkVariant};
use observer::packet::TcpFlags;
use testbed::{cpu_seconds, Replay, Veth};

pub struct Options {
    pub seconds: u64,
    pub backgrounds: Vec<u32>,
    pub sources: Vec<String>,
    pub observer: PathBuf,
    pub out: PathBuf,
}

/// The four-peers scenario over `seconds`, with `percent` % of the frames being
/// background TCP (port 8080, 1200-byte segments) interleaved evenly.
fn capture(seconds: u64, percent: u32, path: &Path) -> Result<(usize, usize)> {
    let mut script = observer::synth::four_peers();
    script.duration_ns = seconds * 1_000_000_000;
    let rendered = script.render();
    let mut packets: Vec<(u64, Vec<u8>)> = rendered
        .wire
        .packets
        .iter()
        .filter(|p| p.written)
        .map(|p| (p.ts, p.ip.clone()))
        .collect();
    packets.sort_by_key(|p| p.0);
    let jxta = packets.len();
    let background = if percent == 0 {
        0
    } else {
        jxta * percent as usize / (100 - percent.min(99)) as usize
    };
    let (a, b) = ("10.0.1.1:5000".parse()?, "10.0.1.2:8080".parse()?);
    let payload = vec![0x5au8; 1200];
    let flags = TcpFlags {
        ack: true,
        psh: true,
        ..TcpFlags::default()
    };
    let mut w = CaptureWriter::new(
        std::io::BufWriter::new(std::fs::File::create(path)?),
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
        observer::capture::LinkType::ETHERNET,
    )?;
    let mut seq = 1u32;
    let mut bg_done = 0usize;
    for (i, (ts, ip)) in packets.iter().enumerate() {
        let (_, frame) = build::frame(LinkVariant::Ethernet, ip);
        w.write_frame(0, *ts, &frame, frame.len() as u32)?;
        // Background frames due by the end of this JXTA frame's share.
        let due = background * (i + 1) / jxta.max(1);
        while bg_done < due {
            let ip = build::tcp_packet(a, b, seq, 1, flags, 65535, &payload);
            seq = seq.wrapping_add(payload.len() as u32);
            let (_, frame) = build::frame(LinkVariant::Ethernet, &ip);
            w.write_frame(0, *ts, &frame, frame.len() as u32)?;
            bg_done += 1;
        }
    }
    w.finish()?;
    Ok((jxta, background))
}

pub fn run(opts: &Options) -> Result<()> {
    std::fs::create_dir_all(&opts.out)?;
    let veth = Veth::new("b").context("creating a veth pair in a namespace (needs root)")?;
    println!(
        "{:<6} {:>4} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>10} {:>6}",
        "source", "bg%", "frames", "jxta", "events", "kdrops", "udrops", "user_s", "sys_s", "tx_ok"
    );
    for &bg in &opts.backgrounds {
        let cap = opts.out.join(format!("bench-bg{bg}.pcap"));
        let (jxta, background) = capture(opts.seconds, bg, &cap)?;
        for source in &opts.sources {
            let mut child = Command::new(&opts.observer)
                .args(["live", "-i", &veth.host, "--source", source, "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting observer live")?;
            std::thread::sleep(Duration::from_millis(1500));
            if let Err(e) = veth.replay(&cap, Replay::TopSpeed) {
                let _ = child.kill();
                let _ = child.wait();
                bail!(e);
            }
            std::thread::sleep(Duration::from_millis(1500));
            let (user, sys) = cpu_seconds(child.id()).unwrap_or((f64::NAN, f64::NAN));
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let mut out = String::new();
            if let Some(mut so) = child.stdout.take() {
                let _ = so.read_to_string(&mut out);
            }
            let _ = child.wait();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            println!(
                "{:<6} {:>4} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8.2} {:>10.2} {:>6}",
                source,
                bg,
                jxta + background,
                jxta,
                v["source"]["events"],
                v["source"]["kernel_drops"],
                v["source"]["userspace_drops"],
                user,
                sys,
                v["transactions"]["ok"]
            );
        }
    }
    Ok(())
}
