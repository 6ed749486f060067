//! Bandwidth adaptation through an emulated network (issue 6): a subscriber's downlink drops from
//! 2 Mbps to 300 kbps and comes back, while a publisher sends three-layer simulcast. What the subscriber
//! receives must follow the capacity within 5 s of each change, without sustained loss over 2 %, and its
//! video should never freeze for more than 500 ms across a layer switch (met on the fast path, the
//! default; see `no_layer_switch_freezes_video_for_more_than_500_ms`).
//!
//! Everything runs in simulated time (str0m peers on both sides, the shard's real send-side estimation
//! from transport-wide feedback (the fast path's, or str0m's with `CONVENE_SIM_FAST_PATH=0`), the link of `sim::netem`), so each run is the same every time; the
//! scenario is swept over one-way delays because the control loop's timing, and so its luck, shifts
//! with them.

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
    /// Its simulcast layers: rid and rate (kbps), lowest first.
    layers: &'static [(&'static str, u32)],
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
                    .extend(self.layers.iter().map(|(r, _)| Some(r.to_string()))),
                rid => {
                    self.keyframe_owed.insert(rid);
                }
            }
        }
        self.frame += 1;
        for &(rid, kbps) in self.layers {
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
fn decode_times(frames: &[Frame]) -> Vec<(Instant, u8)> {
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
            times.push((at, f.layer));
        }
    }
    times.sort();
    times
}

/// The subscriber's decoder asking for a keyframe when it is stuck, as a browser does: no newly
/// decodable frame for [`STALL`] while packets keep arriving (a loss retransmission did not repair), at
/// most once per [`STALL`]. Without this the sim's receiver would wait forever for a keyframe nobody
/// asked for, which measures the test, not the SFU.
#[derive(Default)]
struct Stalls {
    last_request: Option<Instant>,
}

const STALL: Duration = Duration::from_millis(300);

impl Stalls {
    fn check(&mut self, s: &mut Sim, subscriber: usize, publisher: usize) {
        let from = s.clients[publisher].id;
        let video = s.clients[subscriber].received_from(from, MediaSource::Camera);
        let Some(last_packet) = video.last().map(|p| p.at) else {
            return;
        };
        let last_frame = decode_times(&complete_frames(&video)).last().map(|d| d.0);
        let stuck = last_frame.is_none_or(|t| s.now - t > STALL) && s.now - last_packet < STALL;
        if stuck && self.last_request.is_none_or(|t| s.now - t > STALL) {
            self.last_request = Some(s.now);
            s.request_keyframe_from(subscriber, from, MediaSource::Camera);
        }
    }
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
        Run::through_with(spec, &LAYERS, schedule)
    }

    /// The same with other simulcast layers.
    fn through_with(
        spec: LinkSpec,
        layers: &'static [(&'static str, u32)],
        schedule: &[(u32, u64)],
    ) -> Run {
        let mut s = Sim::new();
        s.step = Duration::from_millis(1);
        let publisher = s.join("netem", "Ada");
        let subscriber = s.join("netem", "Bob");
        let rids: Vec<&str> = layers.iter().map(|(r, _)| *r).collect();
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
            layers,
            frame: 0,
            keyframe_owed: layers.iter().map(|(r, _)| Some(r.to_string())).collect(),
        };
        let start = s.now;
        let (mut capacity, mut counters, mut budgets) = (Vec::new(), Vec::new(), Vec::new());
        let mut decoder = Stalls::default();
        for &(kbps, secs) in schedule {
            s.links.get_mut(&sub_addr).expect("shaped").set_rate(kbps);
            for _ in 0..secs {
                capacity.push(kbps);
                counters.push(s.links[&sub_addr].counters);
                for _ in 0..10 {
                    s.run(Duration::from_millis(100), |s| source.step(s));
                    decoder.check(&mut s, subscriber, publisher);
                }
                budgets.push(s.lowest_downlink_budget_kbps().unwrap_or(-1));
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

    /// Frames a decoder could show from `from` seconds on: (when, layer), in time order.
    fn shown(&self, from: u64) -> Vec<(Instant, u8)> {
        let shown: Vec<(Instant, u8)> = decode_times(&complete_frames(&self.video))
            .into_iter()
            .filter(|&(t, _)| t >= self.at(from))
            .collect();
        assert!(shown.len() > 100, "only {} frames decodable", shown.len());
        shown
    }

    /// The longest time without a newly decodable frame from `from` seconds on, and when it began; a
    /// picture still frozen at the end of the run counts up to the end.
    fn worst_freeze(&self, from: u64) -> (Duration, f64) {
        let mut shown = self.shown(from);
        let end = self.at(self.capacity.len() as u64);
        shown.push((end, u8::MAX));
        shown
            .windows(2)
            .map(|w| (w[1].0 - w[0].0, (w[0].0 - self.start).as_secs_f64()))
            .fold((Duration::ZERO, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// The longest gap between the last frame shown of one layer and the first of the next: what a
    /// viewer sees of a layer switch. Also how many switches there were.
    fn worst_switch(&self, from: u64) -> (Duration, usize) {
        let shown = self.shown(from);
        let switches: Vec<Duration> = shown
            .windows(2)
            .filter(|w| w[0].1 != w[1].1)
            .map(|w| w[1].0 - w[0].0)
            .collect();
        (
            switches.iter().copied().max().unwrap_or_default(),
            switches.len(),
        )
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
            let wire = (self.counters[sec as usize + 1].delivered_bytes
                - self.counters[sec as usize].delivered_bytes)
                * 8
                / 1000;
            eprintln!(
                "t={sec:>2}s capacity {:>4} kbps budget {:>5} on the wire {wire:>5} kbps, media {:>6.0} kbps loss {:>5.1} % layers {:?}",
                self.capacity[sec as usize],
                self.budgets[sec as usize],
                self.kbps(sec, sec + 1),
                self.loss(sec, sec + 1) * 100.0,
                layers,
            );
        }
    }
}

/// What a drop-and-recovery run measured (kbps, shares, durations).
#[derive(Debug)]
struct Outcome {
    delay_ms: u64,
    /// Received rate once settled at 2 Mbps, 5 s after the drop (at 300 kbps), and 5 s after recovery.
    high: f64,
    low: f64,
    back: f64,
    /// Link loss from 5 s after each change to the next.
    low_loss: f64,
    back_loss: f64,
    /// Layer switches, the longest gap one caused, and the longest freeze overall.
    switches: usize,
    worst_switch: Duration,
    worst_freeze: Duration,
}

/// Capacity 2 Mbps -> 300 kbps -> 2 Mbps, 12 s each, at a given one-way delay.
fn drop_and_recover(delay_ms: u64) -> Outcome {
    let spec = LinkSpec {
        rate_kbps: HIGH_KBPS,
        delay: Duration::from_millis(delay_ms),
        max_queue_delay: Duration::from_millis(250),
        loss_per_mille: 0,
    };
    let (p, f) = (PHASE.as_secs(), FOLLOW.as_secs());
    let run = Run::through(spec, &[(HIGH_KBPS, p), (LOW_KBPS, p), (HIGH_KBPS, p)]);
    let (worst_switch, switches) = run.worst_switch(2);
    let outcome = Outcome {
        delay_ms,
        high: run.kbps(f, p),
        low: run.kbps(p + f, 2 * p),
        back: run.kbps(2 * p + f, 3 * p),
        low_loss: run.loss(p + f, 2 * p),
        back_loss: run.loss(2 * p + f, 3 * p),
        switches,
        worst_switch,
        worst_freeze: run.worst_freeze(2).0,
    };
    eprintln!("{outcome:?}");
    outcome
}

/// One-way delays the scenario runs at: the control loop's timing shifts with them, and a result that
/// held at one delay only would be luck.
const DELAYS_MS: [u64; 6] = [10, 20, 30, 40, 50, 60];

#[test]
fn the_subscriber_follows_a_capacity_drop_and_recovery_within_5_s_without_sustained_loss() {
    let top = f64::from(LAYERS[2].1);
    let outcomes: Vec<Outcome> = DELAYS_MS.into_iter().map(drop_and_recover).collect();
    for o in &outcomes {
        let d = o.delay_ms;
        // 2 Mbps: the top layer.
        assert!(
            o.high > 0.8 * top,
            "{d} ms: at 2 Mbps only {:.0} kbps",
            o.high
        );
        // 300 kbps: within 5 s what fits, still with video (the lowest layer and audio), no sustained loss.
        assert!(
            o.low <= f64::from(LOW_KBPS),
            "{d} ms: {:.0} kbps still sent into a {LOW_KBPS} kbps link 5 s after the drop",
            o.low
        );
        assert!(
            o.low >= f64::from(LAYERS[0].1) * 0.8,
            "{d} ms: only {:.0} kbps after the drop: video stopped instead of stepping down",
            o.low
        );
        assert!(
            o.low_loss < 0.02,
            "{d} ms: sustained loss {:.1} % at 300 kbps",
            o.low_loss * 100.0
        );
        // Back at 2 Mbps: within 5 s the top layer again.
        assert!(
            o.back > 0.8 * top,
            "{d} ms: 5 s after recovery only {:.0} kbps",
            o.back
        );
        assert!(
            o.back_loss < 0.02,
            "{d} ms: sustained loss {:.1} % after recovery",
            o.back_loss * 100.0
        );
        assert!(
            o.switches >= 2,
            "{d} ms: only {} layer switches",
            o.switches
        );
        // On both paths, far looser than the 500 ms (which the next test holds the fast path to):
        // the picture comes back within 3 s of the collapse.
        assert!(
            o.worst_freeze <= Duration::from_secs(3),
            "{d} ms: video froze for {:?}",
            o.worst_freeze
        );
    }
}

/// The freeze criterion: no layer switch stalls the picture for more than 500 ms. Met on the
/// fast path (the default): worst switch gap by one-way delay (2026-12-06) 10 ms 435 ms, 20 ms 439,
/// 30 ms 452, 40 ms 494, 50 and 60 ms 498. The collapse dominates: the fast path's estimator sees the
/// queue grow about 350 ms after it, the old layer has filled the 250 ms buffer by then, and the new
/// layer's keyframe waits behind it (or is lost in it and asked for again). Smoothing the delay trend
/// per unit of time rather than per group (`fastpath::cc::delay`) took 30-60 ms from 573-597 ms here.
///
/// Not met on str0m's path (`CONVENE_SIM_FAST_PATH=0`, where this test only reports): 10 ms 752 ms,
/// 20 ms 148, 30 ms 204, 40 ms 1.48 s, 50 ms 1.78 s, 60 ms 848 ms; str0m's estimate takes about a second
/// to fall below the new capacity, while the old layer and its retransmissions keep the buffer full.
#[test]
fn no_layer_switch_freezes_video_for_more_than_500_ms() {
    if !Sim::new().shard.config().fast_path {
        eprintln!("str0m's path: the 500 ms bound is not met there (see the doc comment)");
        return;
    }
    for d in DELAYS_MS {
        let o = drop_and_recover(d);
        assert!(
            o.worst_switch <= Duration::from_millis(500),
            "{d} ms: a layer switch froze video for {:?}",
            o.worst_switch
        );
    }
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

/// A subscriber behind 300 kbps with a one-second queue (an access link that buffers rather than drops)
/// and a little random loss keeps a moving picture on the lower layer: the round trip passes a second
/// there, so a lost packet is asked for again only after that, and must still be in the retransmission
/// history (`tests/e2e/test_constrained_link.py` is the same link with real Chromium).
#[test]
fn a_deep_queued_slow_link_keeps_the_picture_going() {
    // Two layers as Chromium sends a 360-line camera at the 1:1 tier (web/js/meeting.js): the lower one
    // and audio take most of the slow link.
    const TIGHT: [(&str, u32); 2] = [("h", 160), ("f", 490)];
    for delay_ms in DELAYS_MS {
        let spec = LinkSpec {
            rate_kbps: HIGH_KBPS,
            delay: Duration::from_millis(delay_ms),
            max_queue_delay: Duration::from_millis(1000),
            loss_per_mille: 5,
        };
        let run = Run::through_with(spec, &TIGHT, &[(HIGH_KBPS, 6), (LOW_KBPS, 20)]);
        let (worst, when) = run.worst_freeze(12);
        eprintln!("{delay_ms} ms: worst freeze from 12 s on: {worst:?} at t={when:.1}s");
        assert!(
            worst <= Duration::from_secs(1),
            "{delay_ms} ms: video froze for {worst:?} at t={when:.1}s"
        );
    }
}

/// A viewer held on the lowest layer by a large meeting's tier climbs to the top layer within 5 s once
/// the meeting shrinks to two, on a link with room to spare (issue 6; in e2e runs the same climb sometimes
/// took over 20 s: `tests/e2e/test_bandwidth.py`). The climb needs the estimate to grow past what the
/// lowest layer's traffic earned it, i.e. a probe.
#[test]
fn a_viewer_climbs_to_the_top_layer_once_the_meeting_shrinks() {
    for delay_ms in [10, 30, 60] {
        let mut s = Sim::new();
        s.step = Duration::from_millis(1);
        let ada = s.join("shrink", "Ada");
        let bob = s.join("shrink", "Bob");
        // Three more attendees make it a "5-16 people" meeting: 184 kbps per camera, the lowest layer.
        let others: Vec<usize> = ["Cy", "Di", "Ed"]
            .into_iter()
            .map(|name| s.join("shrink", name))
            .collect();
        let rids: Vec<&str> = LAYERS.iter().map(|(r, _)| *r).collect();
        s.publish_with(ada, &rids);
        s.connect_all();
        let bob_addr = s.clients[bob].subscribe.as_ref().expect("subscribed").addr;
        s.shape(
            bob_addr,
            LinkSpec {
                rate_kbps: 4000,
                delay: Duration::from_millis(delay_ms),
                max_queue_delay: Duration::from_millis(250),
                loss_per_mille: 0,
            },
        );
        let mut source = Publisher {
            client: ada,
            layers: &LAYERS,
            frame: 0,
            keyframe_owed: LAYERS.iter().map(|(r, _)| Some(r.to_string())).collect(),
        };
        s.run(Duration::from_secs(12), |s| source.step(s));
        let ada_id = s.clients[ada].id;
        let settled = s.now - Duration::from_secs(4);
        let big_meeting_layers: HashSet<u8> =
            complete_frames(&s.clients[bob].received_from(ada_id, MediaSource::Camera))
                .into_iter()
                .filter(|f| f.complete_at >= settled)
                .map(|f| f.layer)
                .collect();
        // A frame's layer is its rid's first byte (see `Sim::send_frame`).
        let layer_of = |i: usize| LAYERS[i].0.as_bytes()[0];
        assert_eq!(
            big_meeting_layers,
            HashSet::from([layer_of(0)]),
            "{delay_ms} ms: in a meeting of five the viewer should get the lowest layer only"
        );

        for c in others {
            s.leave(c);
        }
        let shrunk = s.now;
        s.run(Duration::from_secs(12), |s| source.step(s));
        let top = layer_of(LAYERS.len() - 1);
        let climbed = complete_frames(&s.clients[bob].received_from(ada_id, MediaSource::Camera))
            .into_iter()
            .filter(|f| f.complete_at >= shrunk && f.layer == top)
            .map(|f| f.complete_at - shrunk)
            .min();
        eprintln!("{delay_ms} ms: top layer {climbed:?} after the meeting shrank");
        let climbed = climbed.unwrap_or_else(|| {
            panic!("{delay_ms} ms: no frame of the top layer 12 s after the meeting shrank")
        });
        assert!(
            climbed <= FOLLOW,
            "{delay_ms} ms: the top layer came back only {climbed:?} after the meeting shrank"
        );
    }
}
