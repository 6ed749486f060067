//! `convene gateway calls`: the SIP gateway's live calls, read from the list the running server
//! keeps in its data directory (no network API: the operator is on the host).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// File the gateway rewrites when its calls change (see `convene_gateway::net`).
pub const STATUS_FILE: &str = "gateway-calls.json";

#[derive(Debug, clap::Subcommand)]
pub enum GatewayCommand {
    /// List the SIP gateway's live calls of the server using this data directory.
    Calls {
        /// Convene's data directory.
        #[arg(
            long,
            env = "CONVENE_DATA_DIR",
            value_name = "DIR",
            default_value = "data"
        )]
        data_dir: PathBuf,
        /// Print the list as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Deserialize)]
struct Status {
    pid: u32,
    updated_unix: u64,
    calls: Vec<Call>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Call {
    call: u64,
    call_id: String,
    peer: String,
    state: String,
    caller: String,
    meeting: Option<String>,
    codec: Option<String>,
    rtp_packets: u64,
    rtp_lost: u64,
    jitter_ms: f64,
    started_unix: u64,
}

pub fn run(command: GatewayCommand) -> anyhow::Result<()> {
    match command {
        GatewayCommand::Calls { data_dir, json } => calls(&data_dir, json),
    }
}

fn calls(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let path = data_dir.join(STATUS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no SIP gateway is running with data directory {} ({} is absent)",
                data_dir.display(),
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let status: Status =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if !Path::new(&format!("/proc/{}", status.pid)).exists() {
        anyhow::bail!(
            "{} was left by a server (pid {}) that is no longer running",
            path.display(),
            status.pid
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status.calls)?);
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    println!(
        "{:<6} {:<9} {:<6} {:<11} {:<24} {:<28} {:>8} {:>8} {:>6} {:>7}",
        "CALL", "STATE", "CODEC", "MEETING", "CALLER", "FROM", "FOR", "RTP IN", "LOSS", "JITTER"
    );
    for c in &status.calls {
        let secs = now.saturating_sub(c.started_unix);
        let expected = c.rtp_packets + c.rtp_lost;
        let loss = if expected == 0 {
            0.0
        } else {
            100.0 * c.rtp_lost as f64 / expected as f64
        };
        println!(
            "{:<6} {:<9} {:<6} {:<11} {:<24} {:<28} {:>8} {:>8} {:>5.1}% {:>5.1}ms",
            c.call,
            c.state,
            c.codec.as_deref().unwrap_or("-"),
            c.meeting.as_deref().unwrap_or("-"),
            clip(&c.caller, 24),
            clip(&c.peer, 28),
            format!("{}:{:02}", secs / 60, secs % 60),
            c.rtp_packets,
            loss,
            c.jitter_ms,
        );
    }
    println!(
        "{} call(s), as of {} s ago",
        status.calls.len(),
        now.saturating_sub(status.updated_unix)
    );
    Ok(())
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
