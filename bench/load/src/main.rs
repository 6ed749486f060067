//! The `convene-load` command: run one load scenario against a Convene server, print a JSON summary.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use convene_load::media::{LayerSpec, default_camera_layers};
use convene_load::{Scenario, run};

/// Synthetic WebRTC attendees (str0m: real ICE, DTLS, SRTP) that join Convene meetings over loopback,
/// publish Opus audio with DTX, simulcast VP8 camera video and screen shares, and measure one-way latency,
/// loss, jitter and keyframe waits through the SFU.
///
/// The run: attendees join (publishers first) at --join-rate, the generator waits until every connection
/// is up (at most --connect-timeout), warms up, then measures for --duration and leaves. Progress lines go
/// to stderr; the summary is one JSON object on stdout. With --server-pid it also reports the server's CPU
/// microseconds per forwarded packet and resident memory per attendee.
///
/// Example: 1 publisher to 100 subscribers for 20 s:
///   convene-load --server 127.0.0.1:8080 --publishers 1 --subscribers 100 --duration 20
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Convene's HTTP address (signaling at /v1/signal, metrics at /metrics).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    server: SocketAddr,
    /// Name of the run; meetings are called NAME-0, NAME-1, ...
    #[arg(long, default_value = "load")]
    name: String,
    /// Number of meetings (K).
    #[arg(long, short = 'k', default_value_t = 1)]
    meetings: usize,
    /// Publishers per meeting (N); each also receives the others.
    #[arg(long, short = 'n', default_value_t = 1)]
    publishers: usize,
    /// Subscribe-only attendees per meeting (M).
    #[arg(long, short = 'm', default_value_t = 1)]
    subscribers: usize,
    /// Publishers send no audio.
    #[arg(long)]
    no_audio: bool,
    /// Camera layers as RID:FPS:KBPS,... lowest first; "none" for no camera; one layer for no simulcast.
    #[arg(
        long,
        default_value = "q:15:150,h:30:450,f:30:1200",
        value_name = "LAYERS"
    )]
    camera: String,
    /// Publishers per meeting that also share their screen.
    #[arg(long, default_value_t = 0)]
    screens: usize,
    /// Share of time each publisher talks (0-1); silence is sent as Opus DTX.
    #[arg(long, default_value_t = 0.3)]
    talk_ratio: f64,
    /// Seconds between periodic keyframes (plus those the SFU asks for).
    #[arg(long, default_value_t = 5.0)]
    keyframe_interval: f64,
    /// Seconds of measurement.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Seconds between everyone being connected and the start of measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds to wait for every connection before measuring anyway.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Attendees joining per second.
    #[arg(long, default_value_t = 100.0)]
    join_rate: f64,
    /// Media threads, each driving many connections [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Loopback address the clients bind.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// The server's join-token key (`<data-dir>/join-token.key`, 64 hex digits): the generator signs its
    /// attendees' join tokens with it, so any meeting id works without accounts and meetings.
    #[arg(long, value_name = "FILE")]
    token_key: std::path::PathBuf,
    /// The server's process id: report its CPU per forwarded packet and memory per attendee.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Seed of the traffic models' randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_layers(s: &str) -> anyhow::Result<Vec<LayerSpec>> {
    if s == "none" {
        return Ok(Vec::new());
    }
    if s == "default" {
        return Ok(default_camera_layers());
    }
    s.split(',')
        .map(|l| {
            let parts: Vec<&str> = l.split(':').collect();
            let [rid, fps, kbps] = parts[..] else {
                bail!("camera layer {l:?} is not RID:FPS:KBPS");
            };
            Ok(LayerSpec {
                rid: rid.to_owned(),
                fps: fps.parse().with_context(|| format!("fps in {l:?}"))?,
                kbps: kbps.parse().with_context(|| format!("kbps in {l:?}"))?,
            })
        })
        .collect()
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{name} must be a number of seconds >= 0"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "convene_load=info".into()),
        )
        .init();
    let a = Args::parse();
    if !a.local_ip.is_loopback() || !a.server.ip().is_loopback() {
        bail!("convene-load only runs over loopback (127.0.0.0/8)");
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let key_text = std::fs::read_to_string(&a.token_key)
        .with_context(|| format!("reading the join-token key {}", a.token_key.display()))?;
    let seed: [u8; 32] = hex::decode(key_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} must hold 64 hex digits", a.token_key.display()))?;
    let scenario = Scenario {
        tokens: convene_core::JoinTokenIssuer::from_seed(&seed),
        name: a.name,
        server: a.server,
        meetings: a.meetings,
        publishers: a.publishers,
        subscribers: a.subscribers,
        audio: !a.no_audio,
        camera: parse_layers(&a.camera)?,
        screens: a.screens,
        talk_ratio: a.talk_ratio,
        keyframe_interval: seconds("keyframe-interval", a.keyframe_interval)?,
        duration: seconds("duration", a.duration)?,
        warmup: seconds("warmup", a.warmup)?,
        connect_timeout: seconds("connect-timeout", a.connect_timeout)?,
        join_rate: a.join_rate,
        threads,
        local_ip: a.local_ip,
        server_pid: a.server_pid,
        seed: a.seed,
    };
    // Signaling is light (a few messages per attendee): one thread is plenty and leaves the cores to media.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let summary = rt.block_on(run(scenario))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_parse() {
        let l = parse_layers("q:15:150,f:30:1200").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].rid, "f");
        assert_eq!(l[1].kbps, 1200);
        assert!(parse_layers("none").unwrap().is_empty());
        assert_eq!(parse_layers("default").unwrap().len(), 3);
        assert!(parse_layers("q:15").is_err());
        assert!(parse_layers("q:x:1").is_err());
    }
}
