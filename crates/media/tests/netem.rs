//! Bandwidth adaptation through an emulated network (issue 6): a subscriber's downlink drops from
//! 2 Mbps to 300 kbps and comes back, while a publisher sends three-layer simulcast. What the subscriber
//! receives must follow the capacity within 5 s of each change, without sustained loss over 2 %, and its
//! video must never freeze for more than 500 ms, layer switches included.
//!
//! Everything runs in simulated time (str0m peers on both sides, the shard's real send-side estimation
//! from transport-wide feedback, the link of `sim::netem`), so the run is the same every time.

mod sim;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use convene_core::MediaSource;
use sim::Sim;
use sim::netem::{LinkCounters, LinkSpec};

/// The publisher's simulcast layers: rid and rate (kbps), lowest first. The top layer fits the 1:1 tier
/// (650 kbps), so capacity alone decides.
const LAYERS: [(&str, u32); 3] = [("q", 100), ("h", 300), ("f", 600)];
/// A frame every 35 ms (the sim steps 5 ms): about 29 fps.
const FRAME_MS: u128 = 35;
/// Keyframes are this many times the size of a delta frame.
const KEYFRAME_FACTOR: usize = 4;
/// Opus at about 32 kbps: 80 bytes every 20 ms.
const AUDIO_BYTES: usize = 80;

const HIGH_KBPS: u32 = 2000;
const LOW_KBPS: u32 = 300;
/// How long each capacity lasts.
const PHASE: Duration = Duration::from_secs(12);
/// The bound on following a change.
const FOLLOW: Duration = Duration::from_secs(5);

/// The publisher: every layer's frames, a keyframe wherever one was asked for, and loud audio.
struct Publisher {
    client: usize,
    frame: u32,
    /// Layers owing a keyframe (all of them at the start).
    keyframe_owed: HashSet<Option<String>>,
}

impl Publisher {
    fn step(&mut self, s: &mut Sim) {
        let t = s.ms();
        if t.is_multiple_of(20) {
            s.send_audio_sized(self.client, -30, AUDIO_BYTES);
        }
        if !t.is_multiple_of(FRAME_MS) {
            return;
        }
        let requests = std::mem::take(
            &mut s.clients[self.client]
                .publish
                .as_mut()
                .expect("publishing")
                .keyframe_rids,
        );
        for rid in requests {
            match rid {
                // A request without a rid means every layer.
                None => self
                    .keyframe_owed
                    .extend(LAYERS.iter().map(|(r, _)| Some(r.to_string()))),
                rid => {
                    self.keyframe_owed.insert(rid);
                }
            }
        }
        self.frame += 1;
        for (rid, kbps) in LAYERS {
            let keyframe = self.keyframe_owed.remove(&Some(rid.to_string()));
            let delta_bytes = (kbps as u128 * 1000 / 8 * FRAME_MS / 1000) as usize;
            let bytes = if keyframe {
                delta_bytes * KEYFRAME_FACTOR
            } else {
                delta_bytes
            };
            s.send_frame(self.client, Some(rid), self.frame, keyframe, bytes);
        }
    }
}

/// One received video frame: which layer, its number, whether it is a keyframe, when it was complete.
#[derive(Debug, Clone, Copy)]
struct Frame {
    layer: u8,
    number: u32,
    keyframe: bool,
    complete_at: Instant,
}

/// Frames whose every packet arrived (retransmissions included), from the packets' self-description
/// (see `Sim::send_frame`).
fn complete_frames(packets: &[sim::Received]) -> Vec<Frame> {
    // (layer, frame) -> (packets seen, count, keyframe, last arrival)
    type Assembly = (HashSet<u8>, u8, bool, Instant);
    let mut frames: BTreeMap<(u8, u32), Assembly> = BTreeMap::new();
    for p in packets.iter().filter(|p| p.payload.len() >= 11) {
        let number = u32::from_be_bytes([p.payload[4], p.payload[5], p.payload[6], p.payload[7]]);
        let entry = frames
            .entry((p.payload[3], number))
            .or_insert_with(|| (HashSet::new(), p.payload[9], p.payload[10] == 1, p.at));
        entry.0.insert(p.payload[8]);
        entry.3 = entry.3.max(p.at);
    }
    frames
        .into_iter()
        .filter(|(_, (seen, count, _, _))| seen.len() == usize::from(*count))
        .map(|((layer, number), (_, _, keyframe, at))| Frame {
            layer,
            number,
            keyframe,
            complete_at: at,
        })
        .collect()
}

/// When each frame could be shown by a decoder: a keyframe as soon as it is complete, a delta frame when
/// it and the frame before it on its layer are (a frame after a gap waits for the next keyframe).
fn decode_times(frames: &[Frame]) -> Vec<Instant> {
    let mut decoded: BTreeMap<(u8, u32), Instant> = BTreeMap::new();
    let mut times = Vec::new();
    // BTreeMap order: per layer, by frame number, so the predecessor is always settled first.
    for f in frames {
        let at = if f.keyframe {
            Some(f.complete_at)
        } else {
            decoded
                .get(&(f.layer, f.number.wrapping_sub(1)))
                .map(|&before| before.max(f.complete_at))
        };
        if let Some(at) = at {
            decoded.insert((f.layer, f.number), at);
            times.push(at);
        }
    }
    times.sort();
    times
}

/// Payload kbps the subscriber received in [from, to).
fn received_kbps(packets: &[sim::Received], from: Instant, to: Instant) -> f64 {
    let bytes: usize = packets
        .iter()
        .filter(|p| p.at >= from && p.at < to)
        .map(|p| p.payload.len())
        .sum();
    bytes as f64 * 8.0 / (to - from).as_secs_f64() / 1000.0
}

/// The subscriber's downlink budget as the shard's metrics report it (one subscriber: the minimum).
fn downlink_budget_kbps(s: &Sim) -> i64 {
    s.registry
        .gather()
        .iter()
        .find(|f| f.name() == "convene_media_meeting_min_downlink_kbps")
        .and_then(|f| {
            f.get_metric()
                .first()
                .map(|m| m.get_gauge().get_value() as i64)
        })
        .unwrap_or(-1)
}

/// What one run through the emulated link produced, second by second.
struct Run {
    start: Instant,
    /// Capacity (kbps) in each second.
    capacity: Vec<u32>,
    /// Link counters at the start of each second, and one more at the end.
    counters: Vec<LinkCounters>,
    /// The shard's downlink budget for the subscriber at the end of each second.
    budgets: Vec<i64>,
    /// Everything the subscriber received, and its camera packets.
    packets: Vec<sim::Received>,
    video: Vec<sim::Received>,
}

impl Run {
    /// A publisher (three-layer simulcast, audio) and a subscriber behind a link of `spec`, whose rate
    /// follows `schedule` (kbps for so many seconds, in turn).
    fn through(spec: LinkSpec, schedule: &[(u32, u64)]) -> Run {
        let mut s = Sim::new();
        let publisher = s.join("netem", "Ada");
        let subscriber = s.join("netem", "Bob");
        let rids: Vec<&str> = LAYERS.iter().map(|(r, _)| *r).collect();
        s.publish_with(publisher, &rids);
        s.connect_all();
        let sub_addr = s.clients[subscriber]
            .subscribe
            .as_ref()
            .expect("subscribed")
            .addr;
        s.shape(sub_addr, spec);
        let mut source = Publisher {
            client: publisher,
            frame: 0,
            keyframe_owed: LAYERS.iter().map(|(r, _)| Some(r.to_string())).collect(),
        };
        let start = s.now;
        let (mut capacity, mut counters, mut budgets) = (Vec::new(), Vec::new(), Vec::new());
        for &(kbps, secs) in schedule {
            s.links.get_mut(&sub_addr).expect("shaped").set_rate(kbps);
            for _ in 0..secs {
                capacity.push(kbps);
                counters.push(s.links[&sub_addr].counters);
                s.run(Duration::from_secs(1), |s| source.step(s));
                budgets.push(downlink_budget_kbps(&s));
            }
        }
        counters.push(s.links[&sub_addr].counters);
        let pub_id = s.clients[publisher].id;
        let client = &s.clients[subscriber];
        let run = Run {
            start,
            capacity,
            counters,
            budgets,
            packets: client
                .subscribe
                .as_ref()
                .expect("subscribed")
                .received
                .clone(),
            video: client.received_from(pub_id, MediaSource::Camera),
        };
        run.print_timeline();
        run
    }

    fn at(&self, secs: u64) -> Instant {
        self.start + Duration::from_secs(secs)
    }

    /// Payload kbps received in [from, to) seconds.
    fn kbps(&self, from: u64, to: u64) -> f64 {
        received_kbps(&self.packets, self.at(from), self.at(to))
    }

    /// Share of packets the link lost in [from, to) seconds.
    fn loss(&self, from: u64, to: u64) -> f64 {
        self.counters[to as usize].loss_since(&self.counters[from as usize])
    }

    /// The longest time without a newly decodable frame from `from` seconds on, and when it began.
    fn worst_freeze(&self, from: u64) -> (Duration, f64) {
        let shown: Vec<Instant> = decode_times(&complete_frames(&self.video))
            .into_iter()
            .filter(|&t| t >= self.at(from))
            .collect();
        assert!(shown.len() > 100, "only {} frames decodable", shown.len());
        shown
            .windows(2)
            .map(|w| (w[1] - w[0], (w[0] - self.start).as_secs_f64()))
            .fold((Duration::ZERO, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// The timeline, for whoever reads a failure (`cargo test -- --nocapture`).
    fn print_timeline(&self) {
        for sec in 0..self.capacity.len() as u64 {
            let mut layers: Vec<char> = self
                .video
                .iter()
                .filter(|v| {
                    v.at >= self.at(sec) && v.at < self.at(sec + 1) && v.payload.len() >= 11
                })
                .map(|v| char::from(v.payload[3]))
                .collect::<HashSet<char>>()
                .into_iter()
                .collect();
            layers.sort();
            eprintln!(
                "t={sec:>2}s capacity {:>4} kbps budget {:>5} received {:>6.0} kbps loss {:>5.1} % layers {:?}",
                self.capacity[sec as usize],
                self.budgets[sec as usize],
                self.kbps(sec, sec + 1),
                self.loss(sec, sec + 1) * 100.0,
                layers,
            );
        }
    }
}

#[test]
fn the_subscriber_follows_a_capacity_drop_and_recovery_without_freezing() {
    let spec = LinkSpec {
        rate_kbps: HIGH_KBPS,
        delay: Duration::from_millis(20),
        max_queue_delay: Duration::from_millis(250),
        loss_per_mille: 0,
    };
    let p = PHASE.as_secs();
    let f = FOLLOW.as_secs();
    let run = Run::through(spec, &[(HIGH_KBPS, p), (LOW_KBPS, p), (HIGH_KBPS, p)]);
    let top = f64::from(LAYERS[2].1);

    // 2 Mbps: the top layer.
    let first = run.kbps(f, p);
    assert!(first > 0.8 * top, "at 2 Mbps only {first:.0} kbps arrived");
    // 300 kbps: within 5 s the subscriber receives what fits, still with video, without sustained loss.
    let low = run.kbps(p + f, 2 * p);
    assert!(
        low <= f64::from(LOW_KBPS),
        "{low:.0} kbps still sent into a {LOW_KBPS} kbps link 5 s after the drop"
    );
    assert!(
        low >= f64::from(LAYERS[0].1) * 0.8,
        "only {low:.0} kbps after the drop: video stopped instead of stepping down"
    );
    let low_loss = run.loss(p + f, 2 * p);
    assert!(
        low_loss < 0.02,
        "sustained loss {:.1} % at 300 kbps",
        low_loss * 100.0
    );
    // Back at 2 Mbps: within 5 s the top layer again.
    let back = run.kbps(2 * p + f, 3 * p);
    assert!(
        back > 0.8 * top,
        "5 s after recovery only {back:.0} kbps arrived"
    );
    let back_loss = run.loss(2 * p + f, 3 * p);
    assert!(
        back_loss < 0.02,
        "sustained loss {:.1} % after recovery",
        back_loss * 100.0
    );

    // No freeze over 500 ms anywhere once video started, across both switches.
    let (worst, when) = run.worst_freeze(2);
    eprintln!("worst freeze {worst:?} at t={when:.1}s");
    assert!(
        worst <= Duration::from_millis(500),
        "video froze for {worst:?} at t={when:.1}s"
    );
}

#[test]
fn random_loss_on_a_wide_link_is_repaired_without_stepping_down() {
    // 1 % random loss and 50 ms each way: retransmissions repair it, the estimate must not collapse
    // (loss-based control tolerates a few percent), and the video keeps playing.
    let spec = LinkSpec {
        rate_kbps: HIGH_KBPS,
        delay: Duration::from_millis(50),
        max_queue_delay: Duration::from_millis(250),
        loss_per_mille: 10,
    };
    let run = Run::through(spec, &[(HIGH_KBPS, 15)]);
    let received = run.kbps(5, 15);
    assert!(
        received > 0.8 * f64::from(LAYERS[2].1),
        "a lossy but wide link got only {received:.0} kbps"
    );
    let (worst, when) = run.worst_freeze(2);
    eprintln!("worst freeze {worst:?} at t={when:.1}s");
    assert!(
        worst <= Duration::from_millis(500),
        "video froze for {worst:?} at t={when:.1}s"
    );
}
