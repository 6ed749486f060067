//! `convene-opus-roundtrip`: one speech recording through the SIP gateway's Opus encoder and back, to
//! judge what an encoder setting costs in quality (`bench/gateway/opus_quality.py` scores the result
//! with PESQ). Raw 16-bit little-endian mono in and out, at the device's rate.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use convene_gateway::audio::codec::{Decoder, Encoder};

/// Encodes raw S16LE mono audio with the gateway's Opus settings (SILK-only, 32 kbit/s, in-band FEC) at
/// --complexity, 20 ms frames, and decodes it again at the same rate. The output has as many samples
/// as the input (a last partial frame is padded with silence, then cut off again).
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Sample rate of the input and output: 8000 (a G.711 room) or 16000 (a G.722 room).
    #[arg(long, default_value_t = 16000)]
    rate: u32,
    /// The Opus encoder's complexity, 0-10.
    #[arg(long)]
    complexity: i32,
    /// Raw S16LE mono input.
    #[arg(long)]
    input: PathBuf,
    /// Raw S16LE mono output.
    #[arg(long)]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if ![8000, 12000, 16000, 24000, 48000].contains(&a.rate) {
        bail!("--rate must be one Opus takes: 8000, 12000, 16000, 24000 or 48000");
    }
    if !(0..=10).contains(&a.complexity) {
        bail!("--complexity must be 0-10");
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&a.input)
        .with_context(|| format!("opening {}", a.input.display()))?
        .read_to_end(&mut bytes)?;
    let input: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let frame = a.rate as usize / 50;
    let mut encoder = Encoder::opus_with_complexity(a.rate, a.complexity)?;
    let mut decoder = Decoder::opus_to(a.rate)?;
    let mut output = Vec::with_capacity(input.len() + frame);
    let mut payload = Vec::new();
    let mut pcm = vec![0i16; frame];
    for chunk in input.chunks(frame) {
        pcm.fill(0);
        pcm[..chunk.len()].copy_from_slice(chunk);
        payload.clear();
        encoder.encode(&pcm, &mut payload)?;
        decoder.decode(&payload, &mut output)?;
    }
    output.truncate(input.len());
    let mut out = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    for s in output {
        out.write_all(&s.to_le_bytes())?;
    }
    Ok(())
}
