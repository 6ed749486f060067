//! The audio bridge end to end, per device codec: a device's tone reaches the meeting as Opus, the
//! meeting's speakers reach the device in its codec, through reordering, loss, DTX pauses and
//! garbage; IVR prompts are spoken to the device in its codec. Everything is decoded here with codecs independent of the bridge's own wrappers, and
//! time is simulated (20 ms steps), so nothing depends on the machine's speed.

use std::time::{Duration, Instant};

#[path = "../src/audio/test_signal.rs"]
mod test_signal;
use test_signal::{power, tone};

use convene_gateway::audio::{
    AudioBridge, AudioError, BridgeStats, DeviceAudio, MeetingFrame, PROMPT_RATE, Prompt,
};
use convene_gateway::sdp::Codec;
use ezk_g722::libg722::{self, Bitrate};

const ALL: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];
const TICK: Duration = Duration::from_millis(20);
const OUR_SSRC: u32 = 0x0C0F_FEE0;

fn device_audio(codec: Codec) -> DeviceAudio {
    let (payload_type, clock) = match codec {
        Codec::Opus => (111, 48000),
        Codec::G722 => (9, 8000),
        Codec::Pcmu => (0, 8000),
        Codec::Pcma => (8, 8000),
    };
    DeviceAudio {
        codec,
        payload_type,
        clock,
        comfort_noise: None,
    }
}

fn audio_rate(codec: Codec) -> u32 {
    match codec {
        Codec::Opus => 48000,
        Codec::G722 => 16000,
        Codec::Pcmu | Codec::Pcma => 8000,
    }
}

fn assert_dominates(samples: &[i16], rate: u32, freq: f64, others: &[f64], what: &str) {
    let at = power(samples, freq, rate);
    for &other in others {
        let off = power(samples, other, rate);
        assert!(
            at > 10.0 * off,
            "{what}: {freq} Hz {at:.3e} not 10x {other} Hz {off:.3e}"
        );
    }
}

fn peak(samples: &[i16]) -> u16 {
    samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
}

/// A plain RTP packet.
fn rtp(pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A room system: encodes its microphone in its codec and packs RTP.
struct Device {
    codec: Codec,
    pt: u8,
    seq: u16,
    timestamp: u32,
    opus: Option<opus::Encoder>,
    g722: Option<libg722::encoder::Encoder>,
}

impl Device {
    fn new(codec: Codec) -> Self {
        Self {
            codec,
            pt: device_audio(codec).payload_type,
            seq: 1000,
            timestamp: 5000,
            opus: (codec == Codec::Opus).then(|| {
                opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap()
            }),
            g722: (codec == Codec::G722)
                .then(|| libg722::encoder::Encoder::new(Bitrate::Mode1_64000, false, false)),
        }
    }

    fn frame_len(&self) -> usize {
        audio_rate(self.codec) as usize / 50
    }

    /// The next 20 ms packet carrying `pcm` (at the codec's audio rate).
    fn packet(&mut self, pcm: &[i16]) -> Vec<u8> {
        let payload = match self.codec {
            Codec::Opus => self.opus.as_mut().unwrap().encode_vec(pcm, 1500).unwrap(),
            Codec::G722 => self.g722.as_mut().unwrap().encode(pcm),
            Codec::Pcmu => pcm.iter().map(|&s| ezk_g711::mulaw::encode(s)).collect(),
            Codec::Pcma => pcm.iter().map(|&s| ezk_g711::alaw::encode(s)).collect(),
        };
        let p = rtp(self.pt, self.seq, self.timestamp, 0xDE71CE, &payload);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp =
            self.timestamp
                .wrapping_add(if self.codec == Codec::Opus { 960 } else { 160 });
        p
    }

    /// The `k`th 20 ms packet of a tone.
    fn tone_packet(&mut self, freq: f64, k: usize) -> Vec<u8> {
        let n = self.frame_len();
        let pcm = tone(freq, audio_rate(self.codec), k * n, n, 8000.0);
        self.packet(&pcm)
    }
}

/// The device's side of what the bridge sends it: checks the RTP and decodes it with the codec.
struct DeviceEar {
    codec: Codec,
    pt: u8,
    last: Option<(u16, u32)>,
    opus: Option<opus::Decoder>,
    g722: Option<libg722::decoder::Decoder>,
    heard: Vec<i16>,
}

impl DeviceEar {
    fn new(codec: Codec) -> Self {
        Self {
            codec,
            pt: device_audio(codec).payload_type,
            last: None,
            opus: (codec == Codec::Opus)
                .then(|| opus::Decoder::new(48000, opus::Channels::Mono).unwrap()),
            g722: (codec == Codec::G722)
                .then(|| libg722::decoder::Decoder::new(Bitrate::Mode1_64000, false, false)),
            heard: Vec::new(),
        }
    }

    fn hear(&mut self, packet: &[u8]) {
        assert!(packet.len() > 12, "a whole RTP packet every tick");
        assert_eq!(packet[0], 0x80, "RTP v2, no padding, extension or CSRC");
        assert_eq!(packet[1] & 0x7f, self.pt);
        assert_eq!(
            packet[1] & 0x80 != 0,
            self.last.is_none(),
            "marker on the first only"
        );
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        assert_eq!(ssrc, OUR_SSRC);
        if let Some((s, t)) = self.last {
            assert_eq!(seq, s.wrapping_add(1));
            let step = if self.codec == Codec::Opus { 960 } else { 160 };
            assert_eq!(ts, t.wrapping_add(step));
        }
        self.last = Some((seq, ts));
        let payload = &packet[12..];
        let n = audio_rate(self.codec) as usize / 50;
        let pcm: Vec<i16> = match self.codec {
            Codec::Opus => {
                let mut out = vec![0; 960];
                let got = self
                    .opus
                    .as_mut()
                    .unwrap()
                    .decode(payload, &mut out, false)
                    .unwrap();
                out.truncate(got);
                out
            }
            Codec::G722 => self.g722.as_mut().unwrap().decode(payload),
            Codec::Pcmu => payload
                .iter()
                .map(|&b| ezk_g711::mulaw::decode(b))
                .collect(),
            Codec::Pcma => payload.iter().map(|&b| ezk_g711::alaw::decode(b)).collect(),
        };
        assert_eq!(pcm.len(), n, "{:?}: 20 ms per packet", self.codec);
        self.heard.extend_from_slice(&pcm);
    }
}

/// The meeting's side: what the bridge sends it, decoded with an independent Opus decoder.
struct MeetingEar {
    decoder: opus::Decoder,
    frames: Vec<MeetingFrame>,
    heard: Vec<i16>,
}

impl MeetingEar {
    fn new() -> Self {
        Self {
            decoder: opus::Decoder::new(48000, opus::Channels::Mono).unwrap(),
            frames: Vec::new(),
            heard: Vec::new(),
        }
    }

    fn hear(&mut self, frame: MeetingFrame) {
        if let Some(last) = self.frames.last() {
            assert_eq!(frame.seq, last.seq.wrapping_add(1));
            // Consecutive frames, or a DTX pause of whole frames the receiver plays as silence.
            let gap = frame.timestamp.wrapping_sub(last.timestamp);
            assert!(
                gap >= 960 && gap.is_multiple_of(960),
                "timestamp step {gap}"
            );
            let skipped = (gap / 960 - 1) as usize;
            self.heard.extend(std::iter::repeat_n(0, skipped * 960));
        }
        let mut out = vec![0; 960];
        let got = self
            .decoder
            .decode(&frame.payload, &mut out, false)
            .unwrap();
        assert_eq!(got, 960, "20 ms of 48 kHz mono");
        self.heard.extend_from_slice(&out);
        self.frames.push(frame);
    }
}

/// A browser publishing Opus (48 kHz, 20 ms frames).
struct Speaker {
    encoder: opus::Encoder,
    seq: u16,
    timestamp: u32,
}

impl Speaker {
    fn new(seq: u16) -> Self {
        Self {
            encoder: opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
                .unwrap(),
            seq,
            timestamp: u32::from(seq) * 7,
        }
    }

    /// The `k`th frame of a tone: (seq, timestamp, payload).
    fn frame(&mut self, freq: f64, k: usize) -> (u16, u32, Vec<u8>) {
        let pcm = tone(freq, 48000, k * 960, 960, 8000.0);
        let payload = self.encoder.encode_vec(&pcm, 1500).unwrap();
        let f = (self.seq, self.timestamp, payload);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(960);
        f
    }

    /// Frames skipped by DTX: numbering goes on, as a browser's does.
    fn skip(&mut self, frames: u32) {
        self.timestamp = self.timestamp.wrapping_add(960 * frames);
    }
}

fn bridge(codec: Codec) -> AudioBridge {
    AudioBridge::new(device_audio(codec), OUR_SSRC).unwrap()
}

/// Runs `ticks` ticks from `t0`, calling `each(k, now, bridge)` before each tick.
fn run(
    bridge: &mut AudioBridge,
    t0: Instant,
    ticks: std::ops::Range<usize>,
    device_ear: &mut DeviceEar,
    meeting_ear: &mut MeetingEar,
    mut each: impl FnMut(usize, Instant, &mut AudioBridge),
) {
    let mut to_device = Vec::new();
    for k in ticks {
        let now = t0 + TICK * k as u32;
        each(k, now, bridge);
        if let Some(frame) = bridge.tick(now, &mut to_device) {
            meeting_ear.hear(frame);
        }
        device_ear.hear(&to_device);
    }
}

#[test]
fn a_device_tone_reaches_the_meeting_for_every_codec() {
    for codec in ALL {
        let mut b = bridge(codec);
        let mut device = Device::new(codec);
        let (mut dev_ear, mut meet_ear) = (DeviceEar::new(codec), MeetingEar::new());
        let t0 = Instant::now();
        run(
            &mut b,
            t0,
            0..50,
            &mut dev_ear,
            &mut meet_ear,
            |k, now, b| {
                b.device_rtp(now, &device.tone_packet(440.0, k));
            },
        );
        // The jitter buffer's cushion (60 ms) fills in silence: sent as the first frame of a pause
        // (then DTX), and from the tone on a frame every tick.
        assert_eq!(meet_ear.frames[0].level, 127);
        assert!(meet_ear.frames[1..].iter().all(|f| f.voice), "{codec:?}");
        assert!(
            meet_ear.frames.len() >= 47,
            "{codec:?}: {}",
            meet_ear.frames.len()
        );
        assert_eq!(meet_ear.frames.len() as u64, b.stats().frames_to_meeting);
        let steady = &meet_ear.heard[meet_ear.heard.len() / 2..];
        assert_dominates(
            steady,
            48000,
            440.0,
            &[200.0, 1000.0],
            &format!("{codec:?}"),
        );
        let p = peak(steady);
        assert!(
            (6000..=10000).contains(&p),
            "{codec:?}: level kept, peak {p}"
        );
        let last = meet_ear.frames.last().unwrap();
        // 8000/32768 peak: about -15 dBov RMS.
        assert!(
            (12..=18).contains(&last.level) && last.voice,
            "{codec:?}: {last:?}"
        );
        let s = b.stats();
        assert_eq!(
            (
                s.device_packets,
                s.device_decoded,
                s.device_concealed,
                s.frames_to_meeting + s.frames_not_sent_quiet
            ),
            (50, 48, 0, 50),
            "{codec:?}"
        );
        // Nobody in the meeting talks: the device still gets a packet every tick, of silence.
        assert_eq!(s.frames_to_device, 50);
        assert!(peak(&dev_ear.heard) < 64, "{codec:?}");
    }
}

#[test]
fn meeting_speakers_reach_the_device_in_its_codec() {
    for codec in ALL {
        let mut b = bridge(codec);
        let (mut a, mut c) = (Speaker::new(100), Speaker::new(60000));
        let (mut dev_ear, mut meet_ear) = (DeviceEar::new(codec), MeetingEar::new());
        run(
            &mut b,
            Instant::now(),
            0..50,
            &mut dev_ear,
            &mut meet_ear,
            |k, now, b| {
                for (source, speaker) in [(1, &mut a), (2, &mut c)] {
                    let (seq, ts, payload) = speaker.frame(1000.0, k);
                    b.meeting_audio(now, source, seq, ts, &payload);
                }
            },
        );
        let rate = audio_rate(codec);
        let steady = &dev_ear.heard[dev_ear.heard.len() / 2..];
        assert_dominates(
            steady,
            rate,
            1000.0,
            &[440.0, 2000.0],
            &format!("{codec:?}"),
        );
        // Two in-phase speakers at 8000 add up.
        let p = peak(steady);
        assert!((12000..=19000).contains(&p), "{codec:?}: peak {p}");
        assert_eq!(b.meeting_sources(), 2);
        let s = b.stats();
        assert_eq!(
            (s.meeting_frames, s.meeting_decoded),
            (100, 96),
            "{codec:?}"
        );
        assert_eq!((s.meeting_concealed, s.meeting_late), (0, 0));
        // The device sent nothing: nothing for the meeting yet.
        assert!(meet_ear.frames.is_empty());
    }
}

#[test]
fn two_speakers_are_mixed() {
    for codec in [Codec::Pcmu, Codec::G722] {
        let mut b = bridge(codec);
        let (mut a, mut c) = (Speaker::new(1), Speaker::new(2));
        let (mut dev_ear, mut meet_ear) = (DeviceEar::new(codec), MeetingEar::new());
        run(
            &mut b,
            Instant::now(),
            0..50,
            &mut dev_ear,
            &mut meet_ear,
            |k, now, b| {
                let (seq, ts, payload) = a.frame(440.0, k);
                b.meeting_audio(now, 10, seq, ts, &payload);
                let (seq, ts, payload) = c.frame(1000.0, k);
                b.meeting_audio(now, 20, seq, ts, &payload);
            },
        );
        let rate = audio_rate(codec);
        let steady = &dev_ear.heard[dev_ear.heard.len() / 2..];
        for (freq, other) in [(440.0, 1000.0), (1000.0, 440.0)] {
            // Each tone is there, well above the empty frequencies between and around them.
            assert_dominates(
                steady,
                rate,
                freq,
                &[250.0, 700.0, 1500.0],
                &format!("{codec:?}"),
            );
            let ratio = power(steady, freq, rate) / power(steady, other, rate);
            assert!((0.3..3.0).contains(&ratio), "{codec:?}: balanced, {ratio}");
        }
        // A speaker that leaves is no longer mixed.
        b.meeting_source_ended(10);
        assert_eq!(b.meeting_sources(), 1);
    }
}

#[test]
fn reordered_and_lost_device_packets_are_put_back_and_concealed() {
    for codec in ALL {
        let mut b = bridge(codec);
        let mut device = Device::new(codec);
        let packets: Vec<Vec<u8>> = (0..100).map(|k| device.tone_packet(440.0, k)).collect();
        // Every 10th pair swapped (one tick late), every 17th lost.
        let mut order: Vec<usize> = (0..100).filter(|k| k % 17 != 16).collect();
        for i in (5..order.len() - 1).step_by(10) {
            order.swap(i, i + 1);
        }
        let lost = 100 - order.len() as u64;
        let (mut dev_ear, mut meet_ear) = (DeviceEar::new(codec), MeetingEar::new());
        let mut sent = order.into_iter();
        run(
            &mut b,
            Instant::now(),
            0..104,
            &mut dev_ear,
            &mut meet_ear,
            |_, now, b| {
                if let Some(i) = sent.next() {
                    b.device_rtp(now, &packets[i]);
                }
            },
        );
        let s = b.stats().clone();
        assert_eq!(
            s.device_late, 0,
            "{codec:?}: reordering within the cushion is not late"
        );
        assert_eq!(s.device_decoded, 100 - lost, "{codec:?}: {s:?}");
        // Each loss concealed once, plus the stream's end (concealed briefly, then a pause).
        assert_eq!(s.device_concealed, lost + 2, "{codec:?}: {s:?}");
        let steady = &meet_ear.heard[20 * 960..80 * 960];
        assert_dominates(
            steady,
            48000,
            440.0,
            &[200.0, 1000.0],
            &format!("{codec:?}"),
        );
    }
}

#[test]
fn a_packet_later_than_the_cushion_is_dropped_and_concealed() {
    let mut b = bridge(Codec::Pcma);
    let mut device = Device::new(Codec::Pcma);
    let packets: Vec<Vec<u8>> = (0..40).map(|k| device.tone_packet(440.0, k)).collect();
    let (mut dev_ear, mut meet_ear) = (DeviceEar::new(Codec::Pcma), MeetingEar::new());
    run(
        &mut b,
        Instant::now(),
        0..40,
        &mut dev_ear,
        &mut meet_ear,
        |k, now, b| {
            // Packet 10 comes 200 ms late, after 11..20.
            match k {
                10 => {}
                20 => {
                    b.device_rtp(now, &packets[20]);
                    b.device_rtp(now, &packets[10]);
                }
                k => b.device_rtp(now, &packets[k]),
            }
        },
    );
    let s = b.stats();
    assert_eq!((s.device_late, s.device_concealed), (1, 1), "{s:?}");
}

#[test]
fn a_dtx_pause_is_silence_not_a_drone() {
    for codec in [Codec::Pcmu, Codec::Opus] {
        let mut b = bridge(codec);
        let mut speaker = Speaker::new(7);
        let (mut dev_ear, mut meet_ear) = (DeviceEar::new(codec), MeetingEar::new());
        // 1 s of talk, 3 s of DTX (nothing sent), 1 s of talk.
        run(
            &mut b,
            Instant::now(),
            0..250,
            &mut dev_ear,
            &mut meet_ear,
            |k, now, b| {
                if (50..200).contains(&k) {
                    if k == 50 {
                        speaker.skip(150);
                    }
                    return;
                }
                let (seq, ts, payload) = speaker.frame(1000.0, k);
                b.meeting_audio(now, 5, seq, ts, &payload);
            },
        );
        let s = b.stats();
        assert_eq!(
            s.frames_to_device, 250,
            "{codec:?}: a steady stream through the pause"
        );
        assert!(s.meeting_concealed <= 4, "{codec:?}: {s:?}");
        let frame = audio_rate(codec) as usize / 50;
        let pause = &dev_ear.heard[70 * frame..190 * frame];
        assert!(peak(pause) < 64, "{codec:?}: pause peak {}", peak(pause));
        let after = &dev_ear.heard[215 * frame..];
        assert_dominates(
            after,
            audio_rate(codec),
            1000.0,
            &[440.0, 2000.0],
            "after the pause",
        );
        assert_eq!(b.meeting_sources(), 1);
    }
}

#[test]
fn levels_tell_silence_from_a_loud_tone() {
    let mut b = bridge(Codec::Pcmu);
    let mut device = Device::new(Codec::Pcmu);
    let (mut dev_ear, mut meet_ear) = (DeviceEar::new(Codec::Pcmu), MeetingEar::new());
    run(
        &mut b,
        Instant::now(),
        0..80,
        &mut dev_ear,
        &mut meet_ear,
        |k, now, b| {
            let pcm = if k < 40 {
                vec![0; 160]
            } else {
                tone(440.0, 8000, k * 160, 160, 30000.0)
            };
            b.device_rtp(now, &device.packet(&pcm));
        },
    );
    // Frames by their tick (20 ms of timestamp each; quiet ones are sent only now and then).
    let at = |ticks: std::ops::Range<u32>| -> Vec<&MeetingFrame> {
        let frames = meet_ear.frames.iter();
        frames
            .filter(|f| ticks.contains(&(f.timestamp / 960)))
            .collect()
    };
    let silent = at(5..30);
    assert!(!silent.is_empty());
    assert!(
        silent.iter().all(|f| f.level == 127 && !f.voice),
        "{silent:?}"
    );
    let loud = at(50..80);
    assert!(loud.len() >= 25);
    assert!(loud.iter().all(|f| f.level <= 5 && f.voice), "{loud:?}");
}

#[test]
fn other_payload_types_and_broken_packets_are_counted_and_ignored() {
    let mut b = bridge(Codec::Pcmu);
    let now = Instant::now();
    let good = rtp(0, 1, 160, 9, &[0xFF; 160]);
    b.device_rtp(now, &rtp(101, 1, 160, 9, &[1, 0x80, 0, 160])); // telephone-event
    b.device_rtp(now, &rtp(13, 2, 320, 9, &[0x40])); // comfort noise
    b.device_rtp(now, &rtp(96, 3, 480, 9, &[1, 2, 3])); // unknown
    b.device_rtp(now, &good[..11]); // truncated header
    b.device_rtp(now, &good[..12]); // no payload
    b.device_rtp(now, &[]);
    let mut v1 = good.clone();
    v1[0] = 0x40; // RTP version 1
    b.device_rtp(now, &v1);
    let mut padded = good.clone();
    padded[0] |= 0x20; // padding claims more than the payload
    *padded.last_mut().unwrap() = 200;
    b.device_rtp(now, &padded);
    let mut csrc = good.clone();
    csrc[0] |= 0x0f; // 15 CSRCs that are not there
    b.device_rtp(now, &csrc[..40]);
    let s = b.stats();
    assert_eq!(
        (
            s.device_packets,
            s.device_other_pt,
            s.device_malformed,
            s.device_decoded
        ),
        (9, 3, 6, 0),
        "{s:?}"
    );
    // Nothing valid came: nothing for the meeting, silence for the device.
    assert!(b.tick(now, &mut Vec::new()).is_none());
}

#[test]
fn a_new_device_ssrc_restarts_its_stream() {
    let mut b = bridge(Codec::Pcmu);
    let mut device = Device::new(Codec::Pcmu);
    let (mut dev_ear, mut meet_ear) = (DeviceEar::new(Codec::Pcmu), MeetingEar::new());
    run(
        &mut b,
        Instant::now(),
        0..60,
        &mut dev_ear,
        &mut meet_ear,
        |k, now, b| {
            let mut p = device.tone_packet(440.0, k);
            if k >= 30 {
                // The device restarted its sender: another SSRC and sequence numbers far away.
                p[8..12].copy_from_slice(&0xBEEFu32.to_be_bytes());
                let seq = u16::from_be_bytes([p[2], p[3]]).wrapping_add(20000);
                p[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            b.device_rtp(now, &p);
        },
    );
    let s = b.stats();
    assert_eq!((s.device_ssrc_changes, s.device_late), (1, 0), "{s:?}");
    assert!(s.device_decoded >= 55, "{s:?}");
}

#[test]
fn construction_refuses_what_cannot_be_bridged() {
    let mut bad = device_audio(Codec::G722);
    bad.clock = 16000;
    assert!(matches!(
        AudioBridge::new(bad, 1),
        Err(AudioError::Clock {
            expected: 8000,
            got: 16000,
            ..
        })
    ));
    let mut bad = device_audio(Codec::Pcmu);
    bad.payload_type = 200;
    assert!(matches!(
        AudioBridge::new(bad, 1),
        Err(AudioError::PayloadType(200))
    ));
    // From what SDP agreed.
    let offer = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 9 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let (_, negotiated) = convene_gateway::sdp::choose(
        &convene_gateway::sdp::parse(offer.as_bytes()).unwrap(),
        None,
    )
    .unwrap();
    let device = DeviceAudio::from(&negotiated);
    assert_eq!(device, device_audio(Codec::G722));
    assert!(AudioBridge::new(device, 1).is_ok());
}

#[test]
fn garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(6464);
    for codec in ALL {
        let mut b = bridge(codec);
        let mut device = Device::new(codec);
        let mut speaker = Speaker::new(3);
        let t0 = Instant::now();
        let mut to_device = Vec::new();
        let mut fed = 0;
        for k in 0..1500usize {
            let now = t0 + Duration::from_millis(k as u64 * 7);
            // Random bytes, often shaped like RTP of our payload type.
            let mut junk: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
            if junk.len() >= 2 && rng.bool() {
                junk[0] = 0x80 | (junk[0] & 0x3f);
                junk[1] = device_audio(codec).payload_type;
            }
            b.device_rtp(now, &junk);
            // A real packet, mutated: flipped bytes, cut short, or a wild sequence number.
            let mut p = device.tone_packet(440.0, k);
            match rng.u8(0..4) {
                0 => {
                    let i = rng.usize(0..p.len());
                    p[i] ^= 1 << rng.u8(0..8);
                }
                1 => p.truncate(rng.usize(0..p.len())),
                2 => p[2..4].copy_from_slice(&rng.u16(..).to_be_bytes()),
                _ => {}
            }
            b.device_rtp(now, &p);
            fed += 2;
            // Meeting frames: random payloads from random sources, and mutated real ones.
            let junk: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
            b.meeting_audio(now, rng.u64(0..40), rng.u16(..), rng.u32(..), &junk);
            let (seq, ts, mut payload) = speaker.frame(1000.0, k);
            if rng.bool() && !payload.is_empty() {
                let i = rng.usize(0..payload.len());
                payload[i] = rng.u8(..);
            }
            b.meeting_audio(now, 99, seq, ts, &payload);
            if k % 3 == 0 {
                let _ = b.tick(now, &mut to_device);
                assert!(
                    to_device.len() > 12,
                    "{codec:?}: still a packet for the device"
                );
            }
        }
        let s: &BridgeStats = b.stats();
        assert_eq!(s.device_packets, fed);
        assert!(
            s.device_malformed > 100 && s.device_other_pt > 10,
            "{codec:?}: {s:?}"
        );
        assert!(s.meeting_sources_refused > 0, "{codec:?}: {s:?}");
        assert!(b.meeting_sources() <= 16);
        assert_eq!(s.internal_errors, 0, "{codec:?}: {s:?}");
    }
}

/// RMS of each 20 ms frame of `samples` at `rate`.
fn frame_rms(samples: &[i16], rate: u32) -> Vec<f64> {
    samples
        .chunks(rate as usize / 50)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect()
}

/// A 20 ms frame of speech, as opposed to the pauses between words (the prompts peak at -6 dBFS).
const SPOKEN: f64 = 300.0;
/// A 20 ms frame of silence after a lossy codec.
const SILENT: f64 = 30.0;

/// Ticks a prompt takes: its samples in 20 ms chunks, the last one padded.
fn prompt_ticks(prompt: Prompt) -> usize {
    prompt.samples().len().div_ceil(PROMPT_RATE as usize / 50)
}

/// Ticks the bridge until its prompt ends; how many ticks that took.
fn tick_through_prompt(
    b: &mut AudioBridge,
    t0: Instant,
    from: usize,
    ear: &mut DeviceEar,
    meeting_ear: &mut MeetingEar,
) -> usize {
    let mut k = from;
    while b.prompt_playing() {
        assert!(k < from + 1000, "a prompt never ends");
        run(b, t0, k..k + 1, ear, meeting_ear, |_, _, _| {});
        k += 1;
    }
    k - from
}

#[test]
fn a_prompt_is_spoken_to_the_device_in_its_codec_then_silence() {
    // The longest prompt in every codec, and every prompt in one.
    let cases = ALL
        .into_iter()
        .map(|c| (c, Prompt::EnterMeetingId))
        .chain(Prompt::ALL.into_iter().map(|p| (Codec::G722, p)));
    for (codec, prompt) in cases {
        let what = format!("{codec:?} {prompt}");
        let mut b = bridge(codec);
        let (mut ear, mut meeting_ear) = (DeviceEar::new(codec), MeetingEar::new());
        let t0 = Instant::now();
        const BEFORE: usize = 5;
        run(
            &mut b,
            t0,
            0..BEFORE,
            &mut ear,
            &mut meeting_ear,
            |_, _, _| {},
        );
        assert!(!b.prompt_playing());
        b.play_prompt(prompt);
        assert!(b.prompt_playing());
        let ticks = tick_through_prompt(&mut b, t0, BEFORE, &mut ear, &mut meeting_ear);
        assert_eq!(ticks, prompt_ticks(prompt), "{what}: one tick per 20 ms");
        const AFTER: usize = 25;
        let end = BEFORE + ticks;
        run(
            &mut b,
            t0,
            end..end + AFTER,
            &mut ear,
            &mut meeting_ear,
            |_, _, _| {},
        );
        assert_eq!(b.stats().prompt_frames, ticks as u64, "{what}");
        assert_eq!(b.stats().internal_errors, 0, "{what}");

        let rate = audio_rate(codec);
        let heard = frame_rms(&ear.heard, rate);
        let said = frame_rms(prompt.samples(), PROMPT_RATE);
        assert_eq!(heard.len(), end + AFTER);
        assert!(
            heard[..BEFORE].iter().all(|&r| r < SILENT),
            "{what}: silence before the prompt: {:?}",
            &heard[..BEFORE]
        );
        // Speech where the prompt speaks: as many spoken frames, ending where its speech ends (the
        // resampler and codec delay the audio by well under a frame or two).
        let spoken = |rms: &[f64]| rms.iter().filter(|&&r| r > SPOKEN).count();
        let last_spoken = |rms: &[f64]| rms.iter().rposition(|&r| r > SPOKEN);
        let (heard_spoken, said_spoken) = (spoken(&heard), spoken(&said));
        assert!(
            heard_spoken.abs_diff(said_spoken) <= said_spoken / 10 + 2,
            "{what}: {heard_spoken} spoken frames heard, {said_spoken} said"
        );
        let (heard_last, said_last) = (last_spoken(&heard), last_spoken(&said));
        let (Some(heard_last), Some(said_last)) = (heard_last, said_last) else {
            panic!("{what}: no speech heard ({heard_last:?}) or said ({said_last:?})");
        };
        assert!(
            (BEFORE + said_last..=BEFORE + said_last + 2).contains(&heard_last),
            "{what}: speech heard until frame {heard_last}, said until {}",
            BEFORE + said_last
        );
        // At its level: resampling and the codec keep the loudness.
        let level =
            |rms: &[f64]| (rms.iter().map(|r| r * r).sum::<f64>() / rms.len() as f64).sqrt();
        let (heard_level, said_level) = (level(&heard[BEFORE..end]), level(&said));
        assert!(
            (0.7..1.4).contains(&(heard_level / said_level)),
            "{what}: level {heard_level:.0} heard, {said_level:.0} said"
        );
        // Then silence again (nobody in the meeting speaks).
        assert!(
            heard[end + 2..].iter().all(|&r| r < SILENT),
            "{what}: silence after the prompt: {:?}",
            &heard[end..]
        );
    }
}

#[test]
fn a_prompt_covers_the_meeting_which_comes_back_after_it() {
    for codec in ALL {
        let mut b = bridge(codec);
        let mut speaker = Speaker::new(7);
        let (mut ear, mut meeting_ear) = (DeviceEar::new(codec), MeetingEar::new());
        let t0 = Instant::now();
        let talking = |k: usize, now: Instant, b: &mut AudioBridge| {
            let (seq, ts, payload) = speaker.frame(1000.0, k);
            b.meeting_audio(now, 1, seq, ts, &payload);
        };
        let mut talking = talking;
        run(&mut b, t0, 0..25, &mut ear, &mut meeting_ear, &mut talking);
        b.play_prompt(Prompt::Joining);
        let ticks = prompt_ticks(Prompt::Joining);
        run(
            &mut b,
            t0,
            25..25 + ticks,
            &mut ear,
            &mut meeting_ear,
            &mut talking,
        );
        assert!(!b.prompt_playing());
        run(
            &mut b,
            t0,
            25 + ticks..50 + ticks,
            &mut ear,
            &mut meeting_ear,
            &mut talking,
        );
        let rate = audio_rate(codec);
        let n = rate as usize / 50;
        let what = format!("{codec:?}");
        // The meeting's 1 kHz before and after the prompt, and not under it.
        let before = &ear.heard[10 * n..25 * n];
        let during = &ear.heard[27 * n..(23 + ticks) * n];
        let after = &ear.heard[(30 + ticks) * n..];
        assert_dominates(before, rate, 1000.0, &[440.0, 2000.0], &what);
        assert_dominates(after, rate, 1000.0, &[440.0, 2000.0], &what);
        let per_sample = |s: &[i16]| power(s, 1000.0, rate) / (s.len() as f64).powi(2);
        assert!(
            per_sample(during) < per_sample(before) / 100.0,
            "{what}: the meeting is heard under the prompt"
        );
        // The meeting was decoded all along: nothing late or piled up when it comes back.
        let s = b.stats();
        assert_eq!((s.meeting_late, s.meeting_concealed), (0, 0), "{what}");
    }
}

#[test]
fn a_new_prompt_replaces_the_one_playing() {
    let mut b = bridge(Codec::Pcmu);
    let (mut ear, mut meeting_ear) = (DeviceEar::new(Codec::Pcmu), MeetingEar::new());
    let t0 = Instant::now();
    b.play_prompt(Prompt::EnterMeetingId);
    run(&mut b, t0, 0..10, &mut ear, &mut meeting_ear, |_, _, _| {});
    assert!(b.prompt_playing());
    b.play_prompt(Prompt::Joining);
    let ticks = tick_through_prompt(&mut b, t0, 10, &mut ear, &mut meeting_ear);
    assert_eq!(ticks, prompt_ticks(Prompt::Joining));
    assert_eq!(b.stats().prompt_frames, 10 + ticks as u64);
}

/// RFC 3389 comfort noise, both ways, for a G.711 device that agreed CN (payload type 13).
#[test]
fn comfort_noise_fills_the_devices_pauses_and_stands_for_the_meetings_silence() {
    let device = DeviceAudio {
        comfort_noise: Some(13),
        ..device_audio(Codec::Pcmu)
    };
    let mut b = AudioBridge::new(device, OUR_SSRC).unwrap();
    let t0 = Instant::now();
    let mut to_device = Vec::new();
    let mut sent = Vec::new();
    let mut meeting_levels = Vec::new();
    let mut speaker = Speaker::new(500);
    for k in 0..200usize {
        let now = t0 + TICK * k as u32;
        let ts = (k as u32) * 160;
        if k < 10 {
            // The device talks (a loud tone), then stops and sends one CN packet: its room at -50 dBov.
            let pcm = tone(440.0, 8000, k * 160, 160, 8000.0);
            let payload: Vec<u8> = pcm.iter().map(|&x| ezk_g711::mulaw::encode(x)).collect();
            b.device_rtp(now, &rtp(0, k as u16, ts, 0x1234, &payload));
        } else if k == 10 {
            b.device_rtp(now, &rtp(13, k as u16, ts, 0x1234, &[50]));
        }
        // The meeting is silent until frame 120, then someone talks.
        if k >= 120 {
            let (seq, ts, payload) = speaker.frame(1000.0, k - 120);
            b.meeting_audio(now, 1, seq, ts, &payload);
        }
        if let Some(frame) = b.tick(now, &mut to_device) {
            meeting_levels.push((k, frame.level));
        }
        if !to_device.is_empty() {
            sent.push((k, to_device.clone()));
        }
    }
    // Device -> meeting: in its pause the meeting hears noise near -50 dBov, not dead silence (127).
    let pause: Vec<u8> = meeting_levels
        .iter()
        .filter(|(k, _)| (40..100).contains(k))
        .map(|&(_, l)| l)
        .collect();
    assert!(pause.len() >= 3, "{meeting_levels:?}");
    assert!(pause.iter().all(|&l| (45..=56).contains(&l)), "{pause:?}");
    assert_eq!(b.stats().device_comfort_noise, 1);
    assert_eq!(b.stats().device_other_pt, 0);

    // Meeting -> device: while silent, a CN packet every 10 frames (not 50 packets a second)...
    let cn: Vec<usize> = sent
        .iter()
        .filter(|(_, p)| p[1] & 0x7f == 13)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(cn.first(), Some(&0));
    assert!(cn.windows(2).all(|w| w[1] - w[0] == 10), "{cn:?}");
    assert!(
        sent.iter()
            .filter(|(k, _)| *k < 120)
            .all(|(_, p)| p[1] & 0x7f == 13)
    );
    assert!(
        sent.iter()
            .filter(|(_, p)| p[1] & 0x7f == 13)
            .all(|(_, p)| p[12..] == [80])
    );
    // ...with the timestamps of the time that passed; then the talkspurt, marker bit on its first packet.
    let ts_of = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    assert_eq!(ts_of(&sent[1].1).wrapping_sub(ts_of(&sent[0].1)), 10 * 160);
    let first_audio = sent
        .iter()
        .position(|(_, p)| p[1] & 0x7f == 0)
        .expect("audio after the silence");
    assert_eq!(
        sent[first_audio].1[1] & 0x80,
        0x80,
        "marker on the talkspurt's first packet"
    );
    assert_eq!(sent[first_audio + 1].1[1] & 0x80, 0);
    assert!(sent[first_audio..].iter().all(|(_, p)| p[1] & 0x7f == 0));
    // Sequence numbers stay consecutive across CN and audio.
    let seq_of = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
    assert!(
        sent.windows(2)
            .all(|w| seq_of(&w[1].1) == seq_of(&w[0].1).wrapping_add(1))
    );
    assert_eq!(b.stats().comfort_noise_to_device, cn.len() as u64);
}

/// A quiet room is not encoded 50 times a second: one frame in 20 goes to the meeting (Opus DTX's
/// pace), consecutive in sequence numbers with the time in between in its timestamps; speech is sent
/// whole again at once.
#[test]
fn a_quiet_room_is_sent_discontinuously() {
    let mut b = bridge(Codec::Pcmu);
    let t0 = Instant::now();
    let mut to_device = Vec::new();
    let mut frames = Vec::new();
    for k in 0..120usize {
        let now = t0 + TICK * k as u32;
        // Silence for 2 s, then a loud tone.
        let amplitude = if k < 100 { 0.0 } else { 8000.0 };
        let pcm = tone(440.0, 8000, k * 160, 160, amplitude);
        let payload: Vec<u8> = pcm.iter().map(|&x| ezk_g711::mulaw::encode(x)).collect();
        b.device_rtp(now, &rtp(0, k as u16, (k as u32) * 160, 0x99, &payload));
        if let Some(frame) = b.tick(now, &mut to_device) {
            frames.push((k, frame));
        }
    }
    let quiet: Vec<&(usize, MeetingFrame)> = frames.iter().filter(|(k, _)| *k < 100).collect();
    assert!(
        (4..=6).contains(&quiet.len()),
        "{} quiet frames sent",
        quiet.len()
    );
    assert!(quiet.iter().all(|(_, f)| !f.voice));
    let gaps: Vec<u32> = quiet
        .windows(2)
        .map(|w| w[1].1.timestamp - w[0].1.timestamp)
        .collect();
    assert!(gaps.iter().all(|&g| g == 20 * 960), "{gaps:?}");
    assert!(
        frames
            .windows(2)
            .all(|w| w[1].1.seq == w[0].1.seq.wrapping_add(1))
    );
    // Speech: every frame (after the jitter buffer's cushion lets the tone through).
    let talking: Vec<usize> = frames
        .iter()
        .filter(|(_, f)| f.voice)
        .map(|(k, _)| *k)
        .collect();
    assert!(talking.len() >= 12, "{talking:?}");
    assert!(talking.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(b.stats().frames_not_sent_quiet > 80);
}
