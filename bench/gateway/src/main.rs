//! The `convene-gateway-bench` command: find how many G.722 and PCMU calls one core bridges into
//! Opus meetings, and print one JSON object per codec on stdout.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use convene_gateway::sdp::Codec;
use convene_gateway_bench::calls::Calls;
use convene_gateway_bench::capacity::{FRAME, Search, Step};
use convene_gateway_bench::streams::{DeviceStream, MeetingStream};
use convene_gateway_bench::{cpu, stages};
use serde_json::json;

/// How many SIP calls one core bridges into Opus meetings.
///
/// For each device codec: times each stage of the gateway's AudioBridge alone (the breakdown, and
/// Opus encode + decode as the baseline), then runs N bridges on one thread pinned to one core, one
/// round of all of them every 20 ms, ramping N up until a round ends late, and bisects. Progress on
/// stderr; one JSON object per codec on stdout (an array). `bench/run --gateway` runs it and writes
/// bench/results/<date>-gateway.{md,json}.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Device codecs to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [DeviceCodec::G722, DeviceCodec::Pcmu])]
    codecs: Vec<DeviceCodec>,
    /// Short steps and fewer bisections: the whole run in under 30 s.
    #[arg(long)]
    quick: bool,
    /// Seconds measured per step (default 2.5, or 0.8 with --quick).
    #[arg(long)]
    step_seconds: Option<f64>,
    /// Meeting speakers each call hears, all talking (the SFU forwards the loudest three).
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// CPU to pin the benchmark thread to (default: the last one this process may use).
    #[arg(long)]
    cpu: Option<usize>,
    /// Do not pin (the thread may then move between cores; its CPU time is still its own).
    #[arg(long, conflicts_with = "cpu")]
    no_pin: bool,
    /// Never try more calls than this.
    #[arg(long, default_value_t = 2000)]
    max_calls: usize,
    /// A typical call instead of the worst case: the room talks --room-talk of the time and is quiet
    /// (noise at -70 dBov) otherwise, and the meeting's voices take turns, each silent (DTX: a frame
    /// every 400 ms) while another talks. The stage breakdown stays the worst case's.
    #[arg(long)]
    typical: bool,
    /// With --typical: the share of the time the room talks (a meeting of about ten parties: 0.1).
    #[arg(long, default_value_t = 0.1, requires = "typical")]
    room_talk: f64,
    /// Calls tick at this many evenly spaced phases of the 20 ms instead of all at once (the
    /// gateway's calls each tick on their own task's timer, started when they joined).
    #[arg(long, default_value_t = 1)]
    phases: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceCodec {
    G722,
    Pcmu,
    Pcma,
}

impl From<DeviceCodec> for Codec {
    fn from(c: DeviceCodec) -> Self {
        match c {
            DeviceCodec::G722 => Codec::G722,
            DeviceCodec::Pcmu => Codec::Pcmu,
            DeviceCodec::Pcma => Codec::Pcma,
        }
    }
}

/// The calls per core the issue asks for.
const TARGET_CALLS_PER_CORE: usize = 200;

/// Call counts tried in order before bisecting.
const RAMP: [usize; 14] = [
    10, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2000,
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.speakers == 0 || args.speakers > 8 {
        bail!("--speakers must be 1..=8");
    }
    let started = Instant::now();
    let pinned = if args.no_pin {
        None
    } else {
        let cpu = match args.cpu {
            Some(c) => c,
            None => *cpu::allowed()
                .last()
                .context("no CPU in this thread's affinity mask")?,
        };
        cpu::pin(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
        Some(cpu)
    };
    let measure =
        Duration::from_secs_f64(
            args.step_seconds
                .unwrap_or(if args.quick { 0.8 } else { 2.5 }),
        );
    let search = Search {
        ramp: RAMP
            .iter()
            .copied()
            .filter(|&n| n <= args.max_calls)
            .collect(),
        warmup: Duration::from_millis(if args.quick { 200 } else { 400 }),
        measure,
        bisect: if args.quick { 2 } else { 4 },
        give_up_after_late: 10,
        phases: args.phases,
    };
    let stage_frames = if args.quick { 300 } else { 1500 };
    eprintln!(
        "gateway-bench: {} speakers per call, pinned to CPU {}, {:.1} s per step",
        args.speakers,
        pinned.map_or("none".into(), |c| c.to_string()),
        measure.as_secs_f64()
    );

    let meeting = MeetingStream::new(args.speakers)?;
    let scenario = if args.typical { "typical" } else { "worst" };
    let load_meeting = if args.typical {
        MeetingStream::turns(args.speakers)?
    } else {
        meeting.clone()
    };
    let mut results = Vec::new();
    for codec in args.codecs.iter().copied().map(Codec::from) {
        let name = codec.name();
        let device = DeviceStream::new(codec)?;
        let stages = stages::measure(&device, &meeting, stage_frames)?;
        let load_device = if args.typical {
            DeviceStream::talking(codec, args.room_talk)?
        } else {
            device
        };
        eprintln!(
            "gateway-bench: {name}: Opus encode {:.1} us + decode {:.1} us per frame; one bridge alone {:.1} us \
             (its stages sum to {:.1} us)",
            stages.opus_encode_us,
            stages.opus_decode_us,
            stages.bridge_alone_us,
            stages.per_call_sum_us
        );
        let mut calls = Calls::new(load_device, load_meeting.clone());
        let capacity = search.run(&mut calls, |s| progress(name, s))?;
        drop(calls);
        let at = capacity.at_max.as_ref();
        let cpu_us = at.map(|s| s.cpu_us_per_call_per_frame);
        eprintln!(
            "gateway-bench: {name}: {} calls per core, {:.1} us CPU per call per frame",
            capacity.max_calls,
            cpu_us.unwrap_or(f64::NAN)
        );
        results.push(json!({
            "codec": name,
            "scenario": scenario,
            // With --typical: how much of the time the room talks, and the meeting frames a call
            // receives per 20 ms (3.0 when every voice talks).
            "room_talk": if args.typical { args.room_talk } else { 1.0 },
            "meeting_frames_per_round": load_meeting.frames_sent() as f64
                / convene_gateway_bench::streams::LOOP_FRAMES as f64,
            "max_calls_per_core": capacity.max_calls,
            "cpu_us_per_call_per_frame": cpu_us,
            "p99_round_ms": at.map(|s| s.round_ms_p99),
            "baseline_opus_us_per_frame": stages.baseline_opus_us,
            "bridge_multiple_of_opus": cpu_us.map(|c| c / stages.baseline_opus_us),
            // What one core could carry if nothing but CPU time counted (no scheduling slack).
            "cpu_bound_calls_per_core": cpu_us.map(|c| FRAME.as_secs_f64() * 1e6 / c),
            "target_calls_per_core": TARGET_CALLS_PER_CORE,
            "target_met": capacity.max_calls >= TARGET_CALLS_PER_CORE,
            "speakers": args.speakers,
            "phases": args.phases,
            "pinned_cpu": pinned,
            "step_seconds": measure.as_secs_f64(),
            "at_max": at,
            "stages_us_per_frame": stages,
            "steps": capacity.steps,
        }));
    }
    eprintln!(
        "gateway-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}

fn progress(codec: &str, s: &Step) {
    eprintln!(
        "gateway-bench: {codec}: {:>4} calls{}: {} late of {} rounds (CPU over budget {}), round p50/p99/max \
         {:.2}/{:.2}/{:.2} ms, {:.1} us/call, core {:.0} % busy, preempted {}x",
        s.calls,
        if s.attempt > 1 { " (again)" } else { "" },
        s.late_rounds,
        s.rounds,
        s.rounds_over_budget_cpu,
        s.round_ms_p50,
        s.round_ms_p99,
        s.round_ms_max,
        s.cpu_us_per_call_per_frame,
        s.core_busy * 100.0,
        s.preemptions
    );
}
