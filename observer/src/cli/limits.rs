//! The per-run decoding configuration every command that decodes takes: one group of
//! options, its defaults read from the library's constants.

use std::path::PathBuf;

use clap::Args;

use observer::packet::ChecksumMode;
use observer::runtime::PipelineConfig;
use observer::{conntrack, jim, jxta, transaction};

use super::values::{parse_bytes, parse_count, parse_dur, parse_port, parse_positive_dur};
use super::values::{Bytes, Dur};

/// Decoding limits: `analyze`, `messages`, `report` and `live`.
#[derive(Args, Debug, Clone)]
pub struct Limits {
    /// Largest JXTA message accepted; larger ones are counted as malformed and skipped.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = Bytes(jxta::DEFAULT_MAX_MESSAGE_BYTES))]
    pub max_message: Bytes,
    /// Largest JIM document decoded; larger ones are reported by element name.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = Bytes::of(jim::DEFAULT_MAX_DOCUMENT_BYTES))]
    pub max_document: Bytes,
    /// IPv4 header and TCP checksums: `auto` checks them except where a capture on
    /// the sender shows them offloaded (per flow direction), `verify` always,
    /// `ignore` never. Packets with a bad one are dropped and counted.
    #[arg(long, value_name = "MODE", default_value_t = ChecksumMode::default())]
    pub checksums: ChecksumMode,
    /// Out-of-order bytes buffered per TCP direction before a hole is skipped as a gap.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = Bytes::of(conntrack::DEFAULT_MAX_FLOW_BUFFER))]
    pub max_flow_buffer: Bytes,
    /// Out-of-order bytes buffered over all flows.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = Bytes::of(conntrack::DEFAULT_MAX_TOTAL_BUFFER))]
    pub max_total_buffer: Bytes,
    /// TCP flows tracked at once; the least recently active are evicted beyond it.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true,
          default_value_t = conntrack::DEFAULT_MAX_FLOWS)]
    pub max_flows: usize,
    /// A TCP flow silent this long (capture time) is closed.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_dur,
          default_value_t = Dur::from_nanos(conntrack::DEFAULT_IDLE_TIMEOUT_NS))]
    pub idle_timeout: Dur,
    /// Frames are put back in time order within this window (a capture on several
    /// interfaces interleaves them a few ms out of order); frames later than it are
    /// counted and still used. 0 = in the order read (file order, or as delivered live)
    /// [default: 2s; live: 100ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_dur)]
    pub reorder_window: Option<Dur>,
}

impl Limits {
    pub fn apply(&self, cfg: &mut PipelineConfig) {
        cfg.stream.max_message = self.max_message.0;
        cfg.jim.max_document = self.max_document.as_usize();
        cfg.packet.checksums = self.checksums;
        cfg.flows.max_flow_buffer = self.max_flow_buffer.as_usize();
        cfg.flows.max_total_buffer = self.max_total_buffer.as_usize();
        cfg.flows.max_flows = self.max_flows.max(1);
        cfg.flows.idle_timeout_ns = self.idle_timeout.ns();
        // Unset, the window stays the run's own default (offline or live).
        if let Some(w) = self.reorder_window {
            cfg.reorder.window_ns = w.ns();
        }
    }
}

/// When a PING stops waiting: `analyze`, `report` and `live` (`messages` matches
/// nothing).
#[derive(Args, Debug, Clone)]
pub struct Matching {
    /// A PING not answered within this time is a timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_dur,
          default_value_t = Dur::from_nanos(transaction::DEFAULT_TIMEOUT_NS))]
    pub timeout: Dur,
    /// PINGs of one (poller, receiver) pair awaiting an answer; the oldest is evicted beyond it.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true,
          default_value_t = transaction::DEFAULT_MAX_OUTSTANDING_PER_PAIR)]
    pub max_outstanding: usize,
}

impl Matching {
    pub fn apply(&self, cfg: &mut PipelineConfig) {
        cfg.matcher.timeout_ns = self.timeout.ns();
        cfg.matcher.max_outstanding_per_pair = self.max_outstanding.max(1);
    }
}

/// Capture files and how to read them: `analyze`, `messages` and `report`.
#[derive(Args, Debug)]
pub struct Inputs {
    /// pcap or pcapng files, read in order as one capture; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Only look at TCP/UDP traffic to or from these ports (repeatable). By default
    /// every flow is examined and JXTA is recognised by its content.
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port, allow_negative_numbers = true)]
    pub ports: Vec<u16>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub limits: Limits,
}

impl Inputs {
    pub fn pipeline_config(&self) -> PipelineConfig {
        let mut cfg = PipelineConfig {
            ports: self.ports.clone(),
            ..PipelineConfig::default()
        };
        self.limits.apply(&mut cfg);
        cfg
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Dur;
    use observer::capture;

    /// The help names the defaults the library holds (the option has none of its own:
    /// unset, each run keeps its own).
    #[test]
    fn the_reorder_window_help_names_both_defaults() {
        let want = format!(
            "[default: {}; live: {}]",
            Dur::from_nanos(capture::DEFAULT_REORDER_WINDOW_NS),
            Dur::from_nanos(capture::DEFAULT_LIVE_REORDER_WINDOW_NS)
        );
        let cmd = crate::Cli::command();
        for sub in ["analyze", "live"] {
            let arg = cmd
                .find_subcommand(sub)
                .and_then(|c| c.get_arguments().find(|a| a.get_id() == "reorder_window"))
                .unwrap_or_else(|| panic!("{sub} --reorder-window"));
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains(&want), "{sub}: {help}");
        }
    }
}
