//! The `convene-floor` command: run the floor forwarder, or drive one and report its cost.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use convene_floor::Floor;
use convene_floor::driver::{self, DriveConfig, Frames};
use convene_floor::srtp::Profile;

/// The cost floor of an SFU: a forwarder that receives SRTP, decrypts once, encrypts once per receiver and
/// sends, with nothing else (keys are pre-shared, no ICE/DTLS/RTCP).
///
/// Run `convene-floor serve` in one process and `convene-floor drive --floor-pid PID` in another: the
/// driver sends SRTP streams at a fixed rate, receives the fan-out, and prints one JSON object with the
/// floor's CPU microseconds per forwarded packet, loss and latency.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// SRTP profile (Convene's str0m negotiates AEAD_AES_256_GCM).
    #[arg(long, value_enum, default_value_t = ProfileArg::Aes256Gcm, global = true)]
    profile: ProfileArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    Aes128Gcm,
    Aes256Gcm,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forward until killed.
    Serve {
        /// UDP address to listen on (loopback only).
        #[arg(long, default_value = "127.0.0.1:18700")]
        listen: SocketAddr,
    },
    /// Send SRTP through a running floor and measure it.
    Drive {
        /// The floor's address.
        #[arg(long, default_value = "127.0.0.1:18700")]
        floor: SocketAddr,
        /// The floor's process id, to read its CPU time from /proc.
        #[arg(long)]
        floor_pid: Option<u32>,
        /// Incoming streams (SSRCs).
        #[arg(long, default_value_t = 1)]
        streams: u32,
        /// Receivers, each subscribed to every stream.
        #[arg(long, default_value_t = 10)]
        receivers: u32,
        /// One-to-one calls: receiver i gets only stream i (as many receivers as streams).
        #[arg(long)]
        pairs: bool,
        /// Packets per second per stream.
        #[arg(long, default_value_t = 200)]
        pps: u32,
        /// RTP payload bytes per packet.
        #[arg(long, default_value_t = 1000)]
        size: usize,
        /// Each receiver also sends the floor this many small SRTP packets a second, which the floor
        /// decrypts and drops: the least an SFU spends reading its receivers' feedback (browsers send
        /// transport-wide feedback every 50-100 ms). 0: none, the floor as the benchmark defines it.
        #[arg(long, default_value_t = 0.0)]
        feedback_hz: f64,
        /// Send each stream's packets in video frames: this many frames a second of
        /// --frame-packets packets each, back to back (what is left of --pps goes one by one).
        /// 0: every packet on its own, evenly paced.
        #[arg(long, default_value_t = 0)]
        frame_rate: u32,
        /// Packets of a frame (with --frame-rate).
        #[arg(long, default_value_t = 2)]
        frame_packets: u32,
        /// Packets of a keyframe (with --frame-rate).
        #[arg(long, default_value_t = 6)]
        keyframe_packets: u32,
        /// Seconds between keyframes (with --frame-rate).
        #[arg(long, default_value_t = 5.0)]
        keyframe_every: f64,
        /// Seconds before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Seconds of measurement.
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        /// Loopback address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        local_ip: IpAddr,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "convene_floor=info".into()),
        )
        .init();
    let args = Args::parse();
    let profile = match args.profile {
        ProfileArg::Aes128Gcm => Profile::AeadAes128Gcm,
        ProfileArg::Aes256Gcm => Profile::AeadAes256Gcm,
    };
    match args.command {
        Command::Serve { listen } => {
            if !listen.ip().is_loopback() {
                bail!("the floor only listens on loopback (127.0.0.0/8)");
            }
            let mut floor =
                Floor::bind(listen, profile).with_context(|| format!("binding {listen}"))?;
            tracing::info!(%listen, ?profile, "floor forwarding");
            floor.run(&Arc::new(AtomicBool::new(false)))?;
        }
        Command::Drive {
            floor,
            floor_pid,
            streams,
            receivers,
            pairs,
            pps,
            size,
            feedback_hz,
            frame_rate,
            frame_packets,
            keyframe_packets,
            keyframe_every,
            warmup,
            duration,
            local_ip,
        } => {
            if !floor.ip().is_loopback() || !local_ip.is_loopback() {
                bail!("the driver only runs over loopback (127.0.0.0/8)");
            }
            if !(warmup.is_finite() && warmup >= 0.0 && duration.is_finite() && duration > 0.0) {
                bail!("--warmup and --duration must be seconds (duration > 0)");
            }
            if frame_rate > 0 && !(keyframe_every.is_finite() && keyframe_every > 0.0) {
                bail!("--keyframe-every must be seconds (> 0)");
            }
            if !(feedback_hz.is_finite() && (0.0..=1000.0).contains(&feedback_hz)) {
                bail!("--feedback-hz must be 0-1000 packets a second per receiver");
            }
            let summary = driver::run(
                DriveConfig {
                    floor,
                    local_ip,
                    streams,
                    receivers,
                    pairs,
                    pps,
                    size,
                    feedback_hz,
                    warmup_s: warmup,
                    duration_s: duration,
                    floor_pid,
                    frames: (frame_rate > 0).then_some(Frames {
                        rate: frame_rate,
                        packets: frame_packets.max(1),
                        keyframe_packets: keyframe_packets.max(1),
                        keyframe_every_s: keyframe_every,
                    }),
                },
                profile,
            )?;
            eprintln!(
                "floor: {:.0} forwarded packets/s, {:?} us CPU per packet, loss {:.3} %",
                summary.forwarded_pps, summary.floor_cpu_us_per_pkt, summary.loss_pct
            );
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
    }
    Ok(())
}
