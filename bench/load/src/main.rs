//! The `convene-load` command: run one load scenario against a Convene server, print a JSON summary.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use convene_load::media::{LayerSpec, default_camera_layers};
use convene_load::{Scenario, Target, run};

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
///   convene-load --server 127.0.0.1:8080 --token-key DATA/join-token.key -n 1 -m 100 --duration 20
///
/// With --janus it loads Janus 1.1's VideoRoom instead (the benchmark's baseline), with the same media.
/// Janus does not gather loopback candidates, so that run happens inside a network namespace holding a
/// veth address (bench/run sets it up); only there may --local-ip be a non-loopback address.
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
    /// Publishers keep sending every simulcast layer even when Convene's `publish_targets` switch some
    /// off (by default they pause them, as the web app's browsers do).
    #[arg(long)]
    ignore_publish_targets: bool,
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
    #[arg(long, value_name = "FILE", required_unless_present = "janus")]
    token_key: Option<std::path::PathBuf>,
    /// Load Janus's VideoRoom at this WebSocket URL (ws://HOST:PORT) instead of Convene.
    #[arg(long, value_name = "URL")]
    janus: Option<String>,
    /// With --janus: the camera layer subscribers ask for (0 = the lowest of --camera) [default: Janus's,
    /// the highest].
    #[arg(long, value_name = "N", requires = "janus")]
    janus_layer: Option<u8>,
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

fn read_token_key(path: &std::path::Path) -> anyhow::Result<convene_core::JoinTokenIssuer> {
    let key_text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the join-token key {}", path.display()))?;
    let seed: [u8; 32] = hex::decode(key_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
    Ok(convene_core::JoinTokenIssuer::from_seed(&seed))
}

/// True when this process runs in a network namespace made with `ip netns add` (one of `/run/netns/*`):
/// traffic to any address there stays inside the namespace the benchmark created. (Comparing with init's
/// namespace would be more general, but `/proc/1/ns/net` is not readable in every container.)
fn in_own_network_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let Ok(named) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    named.flatten().any(|entry| {
        std::fs::metadata(entry.path()).is_ok_and(|m| m.dev() == own.dev() && m.ino() == own.ino())
    })
}

fn janus_url_is_loopback(url: &str) -> bool {
    url.strip_prefix("ws://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .and_then(|host| host.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
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
    if !a.server.ip().is_loopback() {
        bail!("convene-load only talks to a server on loopback (127.0.0.0/8)");
    }
    if !a.local_ip.is_loopback() && !in_own_network_namespace() {
        bail!(
            "--local-ip {} is not loopback: that is only allowed inside a network namespace of its own \
             (ip netns exec), where the traffic cannot leave the machine",
            a.local_ip
        );
    }
    if let Some(url) = &a.janus
        && !janus_url_is_loopback(url)
    {
        bail!("--janus {url}: must be ws://127.x.x.x:PORT (loopback)");
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let target = match (a.janus, a.token_key) {
        (Some(url), _) => Target::Janus {
            url,
            layer: a.janus_layer,
        },
        (None, Some(key)) => Target::Convene {
            server: a.server,
            tokens: std::sync::Arc::new(read_token_key(&key)?),
        },
        (None, None) => bail!("--token-key is needed to join Convene meetings"),
    };
    let scenario = Scenario {
        target,
        name: a.name,
        meetings: a.meetings,
        publishers: a.publishers,
        subscribers: a.subscribers,
        audio: !a.no_audio,
        camera: parse_layers(&a.camera)?,
        screens: a.screens,
        talk_ratio: a.talk_ratio,
        follow_publish_targets: !a.ignore_publish_targets,
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

    #[test]
    fn janus_must_be_on_loopback() {
        assert!(janus_url_is_loopback("ws://127.0.0.1:8188"));
        assert!(janus_url_is_loopback("ws://127.0.0.2:8188/janus"));
        assert!(!janus_url_is_loopback("ws://10.0.0.1:8188"));
        assert!(!janus_url_is_loopback("ws://example.com:8188"));
        assert!(!janus_url_is_loopback("http://127.0.0.1:8188"));
    }
}
