//! Where a bridge's time goes: each stage of `AudioBridge::tick`'s pipeline timed alone, with the
//! gateway's own pieces (`audio::codec`, `audio::mix`, `audio::level`, `audio::jitter`) on the same
//! pre-encoded media, in this thread's CPU time per 20 ms frame. The bridge runs Opus at the device's
//! audio rate both ways (16 kHz for G.722, 8 kHz for G.711): no resampling.
//!
//! The bridge itself cannot be opened up from outside (`crates/gateway` is not the benchmark's to
//! change), so the breakdown is the stages run separately with hot caches; what a whole bridge
//! costs beyond their sum ([`Stages::unaccounted_us`]) is the glue between them: RTP parsing and
//! writing, payload copies, the per-source map and sample queues, and cache misses at scale.
//!
//! The baseline the report compares against is one full-band (48 kHz) Opus encode and decode of a
//! 20 ms frame: what an Opus leg costs a bridge that does not narrow Opus to the device's band.

use std::hint::black_box;
use std::time::{Duration, Instant};

use convene_gateway::audio::codec::{Decoder, Encoder, audio_rate, rtp_clock};
use convene_gateway::audio::jitter::{JitterBuffer, Playout};
use convene_gateway::audio::level::{VoiceActivity, audio_level};
use convene_gateway::audio::mix::Mixer;
use convene_gateway::audio::resample::Resampler;
use convene_gateway::audio::{AudioError, MEETING_FRAME, MEETING_RATE};
use convene_gateway::sdp::Codec;
use serde::Serialize;

use crate::calls::Calls;
use crate::cpu::thread_cpu;
use crate::streams::{DeviceStream, MeetingStream};

/// CPU microseconds per 20 ms frame of each stage, for one call of a device codec.
#[derive(Debug, Clone, Serialize)]
pub struct Stages {
    /// Opus encode of the device's 20 ms at its own rate (the bridge's settings: VoIP, 32 kbit/s,
    /// in-band FEC).
    pub opus_encode_us: f64,
    /// Opus decode of one meeting speaker's 20 ms frame to the device's rate.
    pub opus_decode_us: f64,
    /// Baseline: one full-band (48 kHz) Opus encode and decode of 20 ms, same settings and audio.
    pub baseline_opus_us: f64,
    /// Device -> meeting.
    pub device_decode_us: f64,
    pub level_us: f64,
    /// Meeting -> device: `speakers` decodes (counted in `per_call_sum_us`), then these.
    pub mix_us: f64,
    pub device_encode_us: f64,
    /// One packet through a jitter buffer (push and pop), per stream (`speakers + 1` per call).
    pub jitter_us: f64,
    pub speakers: usize,
    /// What a call's stages add up to: the above with `speakers` decodes and jitter buffers.
    pub per_call_sum_us: f64,
    /// A whole bridge alone (one call, simulated time, hot caches), for comparison with the sum.
    pub bridge_alone_us: f64,
    /// `bridge_alone_us - per_call_sum_us`: the glue between stages.
    pub unaccounted_us: f64,
    /// Measured alternatives, same audio.
    pub what_if: WhatIf,
}

/// Opus run differently from the bridge, on the same audio: the numbers behind the report's
/// comparisons. Encoder settings are the bridge's (SILK-only at the device's rate, 32 kbit/s, in-band
/// FEC, 10 % loss) except where named.
#[derive(Debug, Clone, Serialize)]
pub struct WhatIf {
    /// The complexity libopus uses when none is set (0-10).
    pub default_complexity: i32,
    /// The complexity the bridge's encoder uses at the device's rate (`codec::opus_complexity`).
    pub bridge_complexity: i32,
    /// The bridge's encoder (device rate) at complexity 5 instead of the library's default.
    pub opus_encode_complexity5_us: f64,
    /// The encoder on a silent room (noise at about -70 dBov) at the device's rate: what a quiet
    /// room's frame costs when it is encoded (the bridge sends one in 20 while quiet).
    pub opus_encode_silence_us: f64,
    /// libopus's VoIP application instead of SILK-only, at the bridge's complexity (the design
    /// before: it adds a tonality analysis per 16 kHz frame).
    pub opus_encode_voip_us: f64,
    /// The design before: Opus at 48 kHz both ways, with resampling from and to the device's rate.
    pub opus_encode_48k_us: f64,
    pub opus_decode_48k_us: f64,
    pub resample_both_ways_us: f64,
    /// A call's sum in that design.
    pub per_call_48k_us: f64,
    /// A call's sum with the bridge's encoder at complexity 5.
    pub per_call_complexity5_us: f64,
}

/// libopus's VoIP encoder with the bridge's other settings at `rate`, with `complexity` if given: the
/// design before the SILK-only encoder, and the encoder at 48 kHz.
fn opus_encoder(rate: u32, complexity: Option<i32>) -> Result<opus::Encoder, AudioError> {
    let mut e = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)?;
    e.set_bitrate(opus::Bitrate::Bits(
        convene_gateway::audio::codec::OPUS_BITRATE,
    ))?;
    e.set_inband_fec(true)?;
    e.set_packet_loss_perc(convene_gateway::audio::codec::OPUS_EXPECTED_LOSS_PERCENT)?;
    if let Some(c) = complexity {
        e.set_complexity(c)?;
    }
    Ok(e)
}

/// Time `f` over `n` frames (after one untimed pass over them), in CPU microseconds per frame.
fn per_frame(n: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..n.min(20) {
        f(i);
    }
    let t = thread_cpu();
    for i in 0..n {
        f(i);
    }
    (thread_cpu() - t).as_secs_f64() * 1e6 / n as f64
}

/// Measure every stage over `frames` frames (looping the streams).
pub fn measure(
    device: &DeviceStream,
    meeting: &MeetingStream,
    frames: usize,
) -> Result<Stages, AudioError> {
    let codec = device.codec;
    let rate = audio_rate(codec);
    let len = device.frames.len();
    let speakers = meeting.speakers.len();
    // The first voice's frames as sent (all of them, for a voice that talks the whole loop).
    let voice: Vec<&Vec<u8>> = meeting.speakers[0].iter().flatten().collect();
    let voice_len = voice.len().max(1);

    // The inputs of every stage, made once by running the pipeline untimed.
    let mut dec = Decoder::new(codec)?;
    let device_pcm: Vec<Vec<i16>> = device
        .frames
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            dec.decode(p, &mut out).map(|_| out)
        })
        .collect::<Result<_, _>>()?;
    let mut opus_dec = Decoder::opus_to(rate)?;
    let speaker_pcm: Vec<Vec<i16>> = voice
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            opus_dec.decode(p, &mut out).map(|_| out)
        })
        .collect::<Result<_, _>>()?;
    let frame = rate as usize / 50;

    let mut opus_enc = Encoder::opus_from(rate)?;
    let mut payload = Vec::with_capacity(1500);
    let opus_encode_us = per_frame(frames, |i| {
        payload.clear();
        let _ = black_box(opus_enc.encode(&device_pcm[i % len], &mut payload));
    });
    let mut opus_dec = Decoder::opus_to(rate)?;
    let mut pcm = Vec::with_capacity(MEETING_FRAME * 6);
    let opus_decode_us = per_frame(frames, |i| {
        pcm.clear();
        let _ = black_box(opus_dec.decode(voice[i % voice_len], &mut pcm));
    });
    let mut dec = Decoder::new(codec)?;
    let device_decode_us = per_frame(frames, |i| {
        pcm.clear();
        let _ = black_box(dec.decode(&device.frames[i % len], &mut pcm));
    });
    let mut vad = VoiceActivity::default();
    let level_us = per_frame(frames, |i| {
        black_box(vad.update(audio_level(&device_pcm[i % len])));
    });
    let mut mixer = Mixer::new(frame);
    let mut mixed = vec![0; frame];
    let mix_us = per_frame(frames, |i| {
        mixer.clear();
        for k in 0..speakers {
            mixer.add(&speaker_pcm[(i + 53 * k) % len]);
        }
        mixer.finish(&mut mixed);
        black_box(&mixed);
    });
    let mut enc = Encoder::new(codec)?;
    let device_encode_us = per_frame(frames, |i| {
        payload.clear();
        let _ = black_box(enc.encode(&device_pcm[i % len], &mut payload));
    });
    // Packets one frame apart, pushed and popped at their time: the buffer's steady state.
    let mut jitter = JitterBuffer::new(rtp_clock(codec));
    let t0 = Instant::now();
    let step = rtp_clock(codec) / 50;
    // Its own count, not the frame index: the untimed first pass must not rewind the clock.
    let mut k = 0u32;
    let jitter_us = per_frame(frames, |i| {
        let now = t0 + Duration::from_millis(20 * u64::from(k));
        jitter.push(
            now,
            k as u16,
            k.wrapping_mul(step),
            device.frames[i % len].clone(),
        );
        k += 1;
        if let Playout::Packet(p) = jitter.pop(now) {
            black_box(p);
        }
    });

    let rest_us = device_decode_us
        + level_us
        + speakers as f64 * opus_decode_us
        + mix_us
        + device_encode_us
        + (speakers + 1) as f64 * jitter_us;
    let per_call_sum_us = rest_us + opus_encode_us;

    // The design before, and other settings, on the same audio.
    let mut up = Resampler::new(rate, MEETING_RATE)?;
    let pcm_48k: Vec<Vec<i16>> = device_pcm
        .iter()
        .map(|p| {
            let mut out = vec![0; MEETING_FRAME];
            up.process(p, &mut out).map(|()| out)
        })
        .collect::<Result<_, _>>()?;
    let mut buf = [0u8; 1500];
    let mut encode_with = |pcm: &[Vec<i16>], rate: u32, complexity| {
        let mut e = opus_encoder(rate, complexity)?;
        Ok::<_, AudioError>(per_frame(frames, |i| {
            let _ = black_box(e.encode(&pcm[i % len], &mut buf));
        }))
    };
    let opus_encode_voip_us = encode_with(
        &device_pcm,
        rate,
        Some(convene_gateway::audio::codec::opus_complexity(rate)),
    )?;
    let opus_encode_48k_us = encode_with(&pcm_48k, MEETING_RATE, None)?;
    // The bridge's own encoder, at another complexity or on other audio.
    let bridge_encode = |pcm: &[Vec<i16>], complexity| {
        let mut e = Encoder::opus_with_complexity(rate, complexity)?;
        let mut payload = Vec::with_capacity(1500);
        Ok::<_, AudioError>(per_frame(frames, |i| {
            payload.clear();
            let _ = black_box(e.encode(&pcm[i % len], &mut payload));
        }))
    };
    let opus_encode_complexity5_us = bridge_encode(&device_pcm, 5)?;
    let mut rng = fastrand::Rng::with_seed(9);
    let hush: Vec<Vec<i16>> = (0..len)
        .map(|_| (0..frame).map(|_| rng.i16(-10..=10)).collect())
        .collect();
    let opus_encode_silence_us =
        bridge_encode(&hush, convene_gateway::audio::codec::opus_complexity(rate))?;
    let mut full = Decoder::new(Codec::Opus)?;
    let opus_decode_48k_us = per_frame(frames, |i| {
        pcm.clear();
        let _ = black_box(full.decode(voice[i % voice_len], &mut pcm));
    });
    let mut up = Resampler::new(rate, MEETING_RATE)?;
    let mut down = Resampler::new(MEETING_RATE, rate)?;
    let mut out48 = vec![0; MEETING_FRAME];
    let mut out_device = vec![0; frame];
    let resample_both_ways_us = per_frame(frames, |i| {
        let _ = black_box(up.process(&device_pcm[i % len], &mut out48));
        let _ = black_box(down.process(&pcm_48k[i % len], &mut out_device));
    });
    let what_if = WhatIf {
        default_complexity: opus_encoder(rate, None)?.get_complexity()?,
        bridge_complexity: convene_gateway::audio::codec::opus_complexity(rate),
        opus_encode_complexity5_us,
        opus_encode_silence_us,
        opus_encode_voip_us,
        opus_encode_48k_us,
        opus_decode_48k_us,
        resample_both_ways_us,
        // Mix and level at 48 kHz cost a little more than measured here: an underestimate.
        per_call_48k_us: rest_us - speakers as f64 * opus_decode_us
            + speakers as f64 * opus_decode_48k_us
            + opus_encode_48k_us
            + resample_both_ways_us,
        per_call_complexity5_us: rest_us + opus_encode_complexity5_us,
    };

    let bridge_alone_us = bridge_alone(device, meeting, frames)?;
    Ok(Stages {
        opus_encode_us,
        opus_decode_us,
        baseline_opus_us: what_if.opus_encode_48k_us + what_if.opus_decode_48k_us,
        device_decode_us,
        level_us,
        mix_us,
        device_encode_us,
        jitter_us,
        speakers,
        per_call_sum_us,
        bridge_alone_us,
        unaccounted_us: bridge_alone_us - per_call_sum_us,
        what_if,
    })
}

/// One call's whole bridge, rounds back to back in simulated time.
fn bridge_alone(
    device: &DeviceStream,
    meeting: &MeetingStream,
    frames: usize,
) -> Result<f64, AudioError> {
    let mut calls = Calls::new(device.clone(), meeting.clone());
    calls.resize(1)?;
    let t0 = Instant::now();
    // Past the jitter buffer's start-up (60 ms) before timing.
    for k in 0..10 {
        calls.round(t0 + Duration::from_millis(20 * k));
    }
    let mut k = 10;
    Ok(per_frame(frames, |_| {
        black_box(calls.round(t0 + Duration::from_millis(20 * k)));
        k += 1;
    }))
}
