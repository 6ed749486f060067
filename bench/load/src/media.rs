//! Traffic models: when a synthetic publisher sends what.
//!
//! Each model is a small state machine that is asked "anything due by `now`?" and answers with frames
//! (sizes, keyframe flag, RTP timestamp). They hold no sockets and no clock of their own, so tests drive them
//! through virtual time. The numbers follow what browsers send: Opus at 20 ms with DTX during silence,
//! camera as three simulcast layers in the bitrates of the media targets, screen share at a low frame rate
//! with rare, very large frames when the content changes.

use std::time::{Duration, Instant};

use crate::payload::Kind;

/// One encoded frame (for audio: one Opus packet).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub kind: Kind,
    /// Simulcast layer index; 0 for audio and screen.
    pub layer: u8,
    pub keyframe: bool,
    /// Encoded size in bytes (the packetizer splits it).
    pub bytes: usize,
    /// RTP timestamp (48 kHz audio, 90 kHz video).
    pub rtp_time: u32,
    /// RFC 6464 level in -dBov, for audio only.
    pub audio_level: Option<i8>,
}

/// One simulcast layer of a camera.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerSpec {
    pub rid: String,
    pub fps: u32,
    pub kbps: u32,
}

/// Camera simulcast as a browser sends 720p: 180p/360p/720p.
pub fn default_camera_layers() -> Vec<LayerSpec> {
    vec![
        LayerSpec {
            rid: "q".into(),
            fps: 15,
            kbps: 150,
        },
        LayerSpec {
            rid: "h".into(),
            fps: 30,
            kbps: 450,
        },
        LayerSpec {
            rid: "f".into(),
            fps: 30,
            kbps: 1200,
        },
    ]
}

/// Opus with DTX: alternating talk spurts and silences (exponentially distributed lengths).
#[derive(Debug)]
pub struct AudioModel {
    rng: fastrand::Rng,
    next_at: Instant,
    talking: bool,
    switch_at: Instant,
    talk_ratio: f64,
    rtp_time: u32,
    last_at: Instant,
}

/// Mean length of a talk spurt; silences are sized so the attendee talks `talk_ratio` of the time.
const MEAN_TALK: f64 = 1.5;
/// Opus frame duration while talking.
const OPUS_FRAME: Duration = Duration::from_millis(20);
/// With DTX, a silent Opus encoder still sends a comfort-noise frame this often.
const DTX_INTERVAL: Duration = Duration::from_millis(400);

impl AudioModel {
    pub fn new(now: Instant, talk_ratio: f64, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let talk_ratio = talk_ratio.clamp(0.0, 1.0);
        let talking = rng.f64() < talk_ratio;
        // Stagger the first frame so publishers do not all send in the same millisecond.
        let offset = Duration::from_micros(rng.u64(0..20_000));
        let mut m = Self {
            rng,
            next_at: now + offset,
            talking,
            switch_at: now,
            talk_ratio,
            rtp_time: 0,
            last_at: now + offset,
        };
        m.switch_at = now + m.spurt();
        m
    }

    fn spurt(&mut self) -> Duration {
        let mean = if self.talking {
            MEAN_TALK
        } else if self.talk_ratio >= 1.0 {
            0.0
        } else if self.talk_ratio <= 0.0 {
            f64::INFINITY
        } else {
            MEAN_TALK * (1.0 - self.talk_ratio) / self.talk_ratio
        };
        if self.talking && self.talk_ratio >= 1.0 {
            return Duration::from_secs(3600);
        }
        if !mean.is_finite() {
            return Duration::from_secs(3600);
        }
        // Exponential: -mean * ln(U), U in (0, 1].
        let u = 1.0 - self.rng.f64();
        Duration::from_secs_f64((-mean * u.ln()).min(3600.0))
    }

    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// The next due packet, if any is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Frame> {
        if now < self.next_at {
            return None;
        }
        let at = self.next_at;
        while at >= self.switch_at {
            self.talking = !self.talking;
            let d = self.spurt();
            self.switch_at += d;
        }
        // The RTP clock runs on through silences (48 kHz).
        let elapsed = at.saturating_duration_since(self.last_at);
        self.rtp_time = self
            .rtp_time
            .wrapping_add((elapsed.as_micros() * 48 / 1000) as u32);
        self.last_at = at;
        let (bytes, level, step) = if self.talking {
            (
                self.rng.usize(60..=160),
                -(self.rng.i8(20..=35)),
                OPUS_FRAME,
            )
        } else {
            (3, -127, DTX_INTERVAL)
        };
        self.next_at = at + step;
        // Never build a backlog after a stall: skip what was missed, as a real encoder would.
        if self.next_at + step < now {
            self.next_at = now + step;
        }
        Some(Frame {
            kind: Kind::Audio,
            layer: 0,
            keyframe: false,
            bytes,
            rtp_time: self.rtp_time,
            audio_level: Some(level),
        })
    }
}

/// One video stream at a constant frame rate: a camera simulcast layer or a screen share.
#[derive(Debug)]
pub struct VideoModel {
    kind: Kind,
    layer: u8,
    rng: fastrand::Rng,
    start: Instant,
    frame_interval: Duration,
    mean_frame: usize,
    keyframe_interval: Duration,
    next_at: Instant,
    next_keyframe: Instant,
    force_keyframe: bool,
}

impl VideoModel {
    /// A camera layer: frames around `kbps / fps`, keyframes about 5x a delta frame.
    pub fn camera(
        now: Instant,
        layer: u8,
        spec: &LayerSpec,
        keyframe_interval: Duration,
        seed: u64,
    ) -> Self {
        Self::new(
            now,
            Kind::Camera,
            layer,
            spec.fps.max(1),
            spec.kbps,
            keyframe_interval,
            seed,
        )
    }

    /// A screen share: 5 fps, mostly tiny frames, now and then a content change of 60-150 KB.
    pub fn screen(now: Instant, keyframe_interval: Duration, seed: u64) -> Self {
        Self::new(now, Kind::Screen, 0, 5, 300, keyframe_interval, seed)
    }

    fn new(
        now: Instant,
        kind: Kind,
        layer: u8,
        fps: u32,
        kbps: u32,
        keyframe_interval: Duration,
        seed: u64,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let frame_interval = Duration::from_secs(1) / fps;
        let offset = Duration::from_micros(rng.u64(0..frame_interval.as_micros() as u64));
        Self {
            kind,
            layer,
            rng,
            start: now,
            frame_interval,
            mean_frame: (kbps as usize * 1000 / 8 / fps as usize).max(1),
            keyframe_interval,
            next_at: now + offset,
            next_keyframe: now + offset,
            force_keyframe: true,
        }
    }

    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// A receiver asked for a keyframe (PLI/FIR passed on by the SFU): the next frame is one.
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    pub fn layer(&self) -> u8 {
        self.layer
    }

    pub fn poll(&mut self, now: Instant) -> Option<Frame> {
        if now < self.next_at {
            return None;
        }
        let at = self.next_at;
        let keyframe = self.force_keyframe || at >= self.next_keyframe;
        if keyframe {
            self.force_keyframe = false;
            self.next_keyframe = at + self.keyframe_interval;
        }
        let bytes = match (self.kind, keyframe) {
            (Kind::Screen, true) => self.rng.usize(80_000..=150_000),
            (Kind::Screen, false) if self.rng.u8(0..100) < 5 => self.rng.usize(60_000..=150_000),
            (Kind::Screen, false) => self.rng.usize(500..=4_000),
            (_, true) => self.mean_frame * 5,
            // Delta frames vary +-30 % around the mean; keyframes are paid for by the encoder's budget over
            // the interval, which real encoders do too, so the mean stays near the target.
            (_, false) => {
                let m = self.mean_frame as f64;
                (m * (0.7 + 0.6 * self.rng.f64())) as usize
            }
        };
        let rtp_time = ((at - self.start).as_micros() * 90 / 1000) as u32;
        self.next_at = at + self.frame_interval;
        if self.next_at + self.frame_interval < now {
            self.next_at = now + self.frame_interval;
        }
        Some(Frame {
            kind: self.kind,
            layer: self.layer,
            keyframe,
            bytes: bytes.max(1),
            rtp_time,
            audio_level: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a model for `secs` of virtual time in 1 ms steps and returns its frames.
    fn run(
        mut poll: impl FnMut(Instant) -> Option<Frame>,
        start: Instant,
        secs: u64,
    ) -> Vec<Frame> {
        let mut out = Vec::new();
        for ms in 0..secs * 1000 {
            let now = start + Duration::from_millis(ms);
            while let Some(f) = poll(now) {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn audio_always_talking_is_50_packets_a_second() {
        let t0 = Instant::now();
        let mut m = AudioModel::new(t0, 1.0, 1);
        let frames = run(|now| m.poll(now), t0, 10);
        assert!((495..=501).contains(&frames.len()), "{}", frames.len());
        assert!(
            frames
                .iter()
                .all(|f| f.audio_level.is_some_and(|l| l > -50))
        );
        // RTP time advances 960 per 20 ms frame.
        assert_eq!(frames[1].rtp_time.wrapping_sub(frames[0].rtp_time), 960);
    }

    #[test]
    fn audio_silent_sends_dtx_only() {
        let t0 = Instant::now();
        let mut m = AudioModel::new(t0, 0.0, 2);
        let frames = run(|now| m.poll(now), t0, 10);
        assert!((24..=26).contains(&frames.len()), "{}", frames.len());
        assert!(frames.iter().all(|f| f.audio_level == Some(-127)));
    }

    #[test]
    fn audio_talk_ratio_sets_the_share_of_loud_packets() {
        let t0 = Instant::now();
        let mut m = AudioModel::new(t0, 0.3, 3);
        let frames = run(|now| m.poll(now), t0, 600);
        let loud = frames.iter().filter(|f| f.audio_level > Some(-50)).count() as f64;
        let talk_secs = loud * 0.02;
        // 30 % of 600 s, with generous slack for the randomness of spurt lengths.
        assert!((120.0..=240.0).contains(&talk_secs), "{talk_secs}");
    }

    #[test]
    fn camera_layer_meets_its_bitrate_and_keyframe_interval() {
        let t0 = Instant::now();
        let spec = &default_camera_layers()[2];
        let mut m = VideoModel::camera(t0, 2, spec, Duration::from_secs(5), 4);
        let frames = run(|now| m.poll(now), t0, 20);
        assert!((598..=601).contains(&frames.len()), "{}", frames.len());
        let kbps = frames.iter().map(|f| f.bytes).sum::<usize>() as f64 * 8.0 / 20.0 / 1000.0;
        assert!((1100.0..=1700.0).contains(&kbps), "{kbps}");
        let keyframes = frames.iter().filter(|f| f.keyframe).count();
        assert_eq!(keyframes, 4, "one at start, then every 5 s");
        assert!(frames[0].keyframe);
        m.request_keyframe();
        let next = m
            .poll(t0 + Duration::from_secs(21))
            .expect("a frame is due");
        assert!(next.keyframe);
    }

    #[test]
    fn screen_is_bursty() {
        let t0 = Instant::now();
        let mut m = VideoModel::screen(t0, Duration::from_secs(10), 5);
        let frames = run(|now| m.poll(now), t0, 60);
        assert!((298..=301).contains(&frames.len()));
        let big = frames.iter().filter(|f| f.bytes >= 60_000).count();
        let small = frames.iter().filter(|f| f.bytes <= 4_000).count();
        assert!(big >= 5 && small > 200, "big {big} small {small}");
    }
}
