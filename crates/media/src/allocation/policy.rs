//! One subscriber's allocation: which layer of which publication it receives, under its downlink
//! estimate, in priority order: audio, screen share, the active speaker's camera, other cameras. And
//! what publishers should send: the tier's uplink target, and no layer above the highest anyone receives.
//!
//! Hysteresis: keeping a layer needs only that it fits; moving *up* (or resuming a paused stream) needs
//! [`UPGRADE_HEADROOM`] spare on top, so an estimate wobbling around a layer's rate does not flap between
//! layers. Downgrades happen at once: a congested link must shed load before queues grow.

use super::tiers::{self, SCREEN_MAX_KBPS, SCREEN_MIN_KBPS};

/// Spare capacity (share of the layer's rate) required to move up.
pub const UPGRADE_HEADROOM: f64 = 0.15;

/// A stream on its lowest layer keeps it while the budget holds this share of the layer's rate. Below
/// the lowest layer is a pause: a frozen picture, then a keyframe to resume, which on a slow link
/// congests it again. And on a link that buffers, Google Congestion Control's estimate sits well under
/// the capacity: each back-off sets it to 0.85 of the throughput, and a second one can follow before it
/// climbs (measured in `tests/netem.rs` on a 300 kbps link with a one-second queue: 190-300 kbps, and
/// the lower layer of a 1:1 camera plus audio need about 235). So only an estimate under 60 % of the
/// layer pauses it. What this sends above the estimate is bounded: one stream's lowest layer, by at most
/// 40 % (the next streams find nothing left), and str0m's pacer, which runs at 1.1 times the estimate,
/// carries it as soon as the estimate grows with the throughput it sees.
pub const LOWEST_KEEP: f64 = 0.6;

/// A layer in use stays in use while its measured rate is within this share above the tier's cap: a
/// second that carried a keyframe measures above the encoder's target, and dropping the layer for it
/// (then taking it back a second later) is exactly the flapping the headroom exists to prevent.
pub const CAP_OVERSHOOT: f64 = 0.15;

/// What a publication carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Screen,
    Camera,
}

/// One publication a subscriber could receive.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The caller's key for the publication.
    pub id: usize,
    pub kind: Kind,
    /// Rate of each layer as it arrives (kbps), lowest first; one entry without simulcast.
    pub layers: &'a [u32],
    /// Its publisher is an active speaker (their camera goes first).
    pub speaking: bool,
    /// Audio only: forwarded at all (false for non-loudest voices in a large meeting).
    pub audible: bool,
}

/// The decision for one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Forward this layer (index into the offer's `layers`).
    Layer(usize),
    /// Not forwarded (does not fit, or not audible).
    Paused,
}

/// The meeting facts the policy needs.
#[derive(Debug, Clone, Copy)]
pub struct Meeting {
    pub attendees: usize,
    pub hd: bool,
}

fn order(kind: Kind, speaking: bool) -> u8 {
    match (kind, speaking) {
        (Kind::Audio, _) => 0,
        (Kind::Screen, _) => 1,
        (Kind::Camera, true) => 2,
        (Kind::Camera, false) => 3,
    }
}

/// Allocate `estimate_kbps` over `offers` for one subscriber. `previous(id)` is the last choice for a
/// publication (None if new). Appends one `(id, choice)` per offer to `out` (cleared first), in
/// priority order.
pub fn allocate(
    meeting: Meeting,
    estimate_kbps: u32,
    offers: &[Offer<'_>],
    previous: impl Fn(usize) -> Option<Choice>,
    out: &mut Vec<(usize, Choice)>,
) {
    out.clear();
    let mut ranked: Vec<&Offer<'_>> = offers.iter().collect();
    // Stable: among equals, the caller's order (e.g. join order) decides.
    ranked.sort_by_key(|o| order(o.kind, o.speaking));
    let camera_cap = tiers::camera_tier(meeting.attendees, meeting.hd).down_per_sender_kbps;
    let mut remaining = f64::from(estimate_kbps);
    for offer in ranked {
        let cap = match offer.kind {
            Kind::Audio => u32::MAX,
            Kind::Screen => SCREEN_MAX_KBPS,
            Kind::Camera => camera_cap,
        };
        let before = match previous(offer.id) {
            Some(Choice::Layer(l)) => Some(l),
            _ => None,
        };
        let choice = if offer.kind == Kind::Audio {
            // Audio is never traded for video; only the speaker selection mutes it.
            match (offer.audible, offer.layers.first()) {
                (true, Some(_)) => Choice::Layer(0),
                _ => Choice::Paused,
            }
        } else {
            best_layer(offer, cap, remaining, before)
        };
        if let Choice::Layer(l) = choice {
            remaining -= f64::from(offer.layers.get(l).copied().unwrap_or(0));
        }
        out.push((offer.id, choice));
    }
}

/// The highest layer that fits `remaining` under `cap`, with headroom for moving above `before`.
fn best_layer(offer: &Offer<'_>, cap: u32, remaining: f64, before: Option<usize>) -> Choice {
    let floor = if offer.kind == Kind::Screen {
        SCREEN_MIN_KBPS
    } else {
        0
    };
    for (l, &rate) in offer.layers.iter().enumerate().rev() {
        // A layer above the tier's cap is not used, unless it is the only one there is.
        let allowed = if before == Some(l) {
            f64::from(cap) * (1.0 + CAP_OVERSHOOT)
        } else {
            f64::from(cap)
        };
        if f64::from(rate) > allowed && l > 0 {
            continue;
        }
        let needed = if before.is_none_or(|b| l > b) {
            f64::from(rate) * (1.0 + UPGRADE_HEADROOM)
        } else if l == 0 {
            // Below the lowest layer is a pause (a freeze, then a keyframe to resume): an estimate
            // backing off (see LOWEST_KEEP) does not take it away.
            f64::from(rate) * LOWEST_KEEP
        } else {
            f64::from(rate)
        };
        if needed <= remaining && remaining >= f64::from(floor.min(rate)) {
            return Choice::Layer(l);
        }
    }
    Choice::Paused
}

/// What a subscriber's send-side estimator should aim for (kbps), given the offers and the allocation
/// just made.
///
/// `sustain` is what the link should keep carrying, padding filling gaps up to the estimate: what is
/// forwarded now, plus, when a stream the subscriber wants is paused, what resuming the first of them
/// (in priority order) on its lowest layer takes. Without that, a paused camera never comes back: audio
/// alone keeps the estimate where it fell, since an estimate grows only with traffic that tests it
/// (`tests/netem.rs`, the deep-queued link). Padding toward a *higher layer* of a stream that is
/// playing was tried and hurt: on a slow link with a deep queue it kept the queue full, and the
/// delay-based estimate then fell under even the lowest layer (`tests/e2e/test_constrained_link.py`).
///
/// `wanted` is everything the subscriber would receive on an unlimited link plus the headroom moving up
/// to it takes: while the estimate is below it, str0m probes toward it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimatorTargets {
    pub sustain: u32,
    pub wanted: u32,
}

pub fn estimator_targets(
    meeting: Meeting,
    offers: &[Offer<'_>],
    decisions: &[(usize, Choice)],
) -> EstimatorTargets {
    let mut wanted = Vec::with_capacity(offers.len());
    allocate(meeting, u32::MAX, offers, |_| None, &mut wanted);
    let rate_of = |id: usize, choice: Choice| -> u32 {
        match choice {
            Choice::Layer(l) => offers
                .iter()
                .find(|o| o.id == id)
                .and_then(|o| o.layers.get(l))
                .copied()
                .unwrap_or(0),
            Choice::Paused => 0,
        }
    };
    let sum = |choices: &[(usize, Choice)]| -> u32 {
        choices.iter().map(|&(id, c)| rate_of(id, c)).sum()
    };
    let allocated = sum(decisions);
    let wanted_total = sum(&wanted);
    // Decisions come in priority order: the first paused stream that an unlimited link would carry.
    let resume = decisions
        .iter()
        .filter(|&&(_, c)| c == Choice::Paused)
        .find(|&&(id, _)| wanted.iter().any(|&(w, c)| w == id && c != Choice::Paused))
        .and_then(|&(id, _)| offers.iter().find(|o| o.id == id))
        .and_then(|o| o.layers.first())
        .map_or(0, |&lowest| {
            (f64::from(lowest) * (1.0 + UPGRADE_HEADROOM)).ceil() as u32
        });
    let sustain = allocated + resume;
    EstimatorTargets {
        sustain,
        wanted: if wanted_total > allocated {
            ((f64::from(wanted_total) * (1.0 + UPGRADE_HEADROOM)).ceil() as u32).max(sustain)
        } else {
            allocated
        },
    }
}

/// What a publisher of `kind` should send in this meeting (kbps): the tier's uplink target.
pub fn publisher_target(meeting: Meeting, kind: Kind) -> u32 {
    match kind {
        Kind::Audio => tiers::AUDIO_KBPS,
        Kind::Screen => SCREEN_MAX_KBPS,
        Kind::Camera => tiers::camera_tier(meeting.attendees, meeting.hd).up_kbps,
    }
}

/// What a single-layer screen publisher should send (kbps), given what each of its subscribers has left
/// after audio (which always goes first). A screen without simulcast has no lower layer to give a slow
/// viewer, so the one stream adapts to the slowest of them, with the headroom the allocation wants to
/// (re)start it, between the guide's 320 kbps and 1.2 Mbps. Nobody watching: full quality, ready for
/// whoever comes.
pub fn screen_target(room_after_audio: impl IntoIterator<Item = u32>) -> u32 {
    room_after_audio
        .into_iter()
        .map(|room| (f64::from(room) / (1.0 + UPGRADE_HEADROOM)) as u32)
        .min()
        .unwrap_or(SCREEN_MAX_KBPS)
        .clamp(SCREEN_MIN_KBPS, SCREEN_MAX_KBPS)
}

/// The highest layer anyone receives of a publication, given every subscriber's choice for it: the
/// publisher can turn off the layers above (None: nobody receives it; pause the whole stream).
pub fn highest_layer_in_use(choices: impl IntoIterator<Item = Choice>) -> Option<usize> {
    choices
        .into_iter()
        .filter_map(|c| match c {
            Choice::Layer(l) => Some(l),
            Choice::Paused => None,
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMERA: &[u32] = &[150, 450, 1200];
    const SCREEN: &[u32] = &[320, 1200];
    const AUDIO: &[u32] = &[32];

    fn camera(id: usize, speaking: bool) -> Offer<'static> {
        Offer {
            id,
            kind: Kind::Camera,
            layers: CAMERA,
            speaking,
            audible: false,
        }
    }

    fn audio(id: usize) -> Offer<'static> {
        Offer {
            id,
            kind: Kind::Audio,
            layers: AUDIO,
            speaking: false,
            audible: true,
        }
    }

    fn run(
        m: Meeting,
        estimate: u32,
        offers: &[Offer<'_>],
        previous: &[(usize, Choice)],
    ) -> Vec<(usize, Choice)> {
        let mut out = Vec::new();
        allocate(
            m,
            estimate,
            offers,
            |id| previous.iter().find(|(i, _)| *i == id).map(|(_, c)| *c),
            &mut out,
        );
        out.sort_by_key(|(id, _)| *id);
        out
    }

    fn meeting(n: usize) -> Meeting {
        Meeting {
            attendees: n,
            hd: false,
        }
    }

    #[test]
    fn cameras_get_their_tier_when_the_link_allows() {
        // 1:1: up to 650 per sender -> the 450 layer (1200 is above the tier).
        let r = run(meeting(2), 5000, &[camera(1, false)], &[]);
        assert_eq!(r, vec![(1, Choice::Layer(1))]);
        // HD 1:1: 1400 -> the full layer.
        let hd = Meeting {
            attendees: 2,
            hd: true,
        };
        assert_eq!(
            run(hd, 5000, &[camera(1, false)], &[]),
            vec![(1, Choice::Layer(2))]
        );
        // 3-4 people: 400 per sender -> 150 layer (450 is above).
        let r = run(meeting(4), 5000, &[camera(1, false), camera(2, false)], &[]);
        assert_eq!(r, vec![(1, Choice::Layer(0)), (2, Choice::Layer(0))]);
        // 16 people: 134 per sender is below every layer, so the lowest is used.
        let offers: Vec<_> = (0..15).map(|i| camera(i, false)).collect();
        let r = run(meeting(16), 10_000, &offers, &[]);
        assert!(r.iter().all(|(_, c)| *c == Choice::Layer(0)));
    }

    #[test]
    fn under_scarcity_audio_then_screen_then_the_speaker_then_the_rest() {
        let offers = [
            camera(1, false),
            camera(2, true),
            Offer {
                id: 3,
                kind: Kind::Screen,
                layers: SCREEN,
                speaking: false,
                audible: false,
            },
            audio(4),
        ];
        // 32 audio + 320 screen + 150 speaker camera = 502 (+15 % headroom on each move up).
        let r = run(meeting(3), 620, &offers, &[]);
        assert_eq!(
            r,
            vec![
                (1, Choice::Paused),
                (2, Choice::Layer(0)),
                (3, Choice::Layer(0)),
                (4, Choice::Layer(0)),
            ]
        );
        // Too little for the screen's lowest layer: the screen pauses and what is left still carries the
        // speaker's camera rather than going unused.
        let r = run(meeting(3), 300, &offers, &[]);
        assert_eq!(
            r,
            vec![
                (1, Choice::Paused),
                (2, Choice::Layer(0)),
                (3, Choice::Paused),
                (4, Choice::Layer(0)),
            ]
        );
        // Nothing but audio fits.
        let r = run(meeting(3), 100, &offers, &[]);
        assert_eq!(r[3], (4, Choice::Layer(0)));
        assert!(r[..3].iter().all(|(_, c)| *c == Choice::Paused));
        // Plenty: the screen at full quality, cameras at the 3-person tier.
        let r = run(meeting(3), 10_000, &offers, &[]);
        assert_eq!(r[2], (3, Choice::Layer(1)));
        assert_eq!(r[0], (1, Choice::Layer(0)));
    }

    #[test]
    fn hysteresis_keeps_a_layer_that_fits_and_needs_headroom_to_move_up() {
        let offers = [camera(1, false)];
        let m = meeting(2); // 650 cap: layers 150 and 450 usable
        // At 480 kbps: 450 fits, but moving up to it from 150 needs 517.
        let from_low = run(m, 480, &offers, &[(1, Choice::Layer(0))]);
        assert_eq!(from_low, vec![(1, Choice::Layer(0))]);
        // Already on 450: it stays at 480.
        let staying = run(m, 480, &offers, &[(1, Choice::Layer(1))]);
        assert_eq!(staying, vec![(1, Choice::Layer(1))]);
        // An estimate wobbling 470..530 never flaps once settled.
        let mut prev = vec![(1, Choice::Layer(1))];
        for estimate in [470, 530, 460, 520, 455, 525] {
            prev = run(m, estimate, &offers, &prev);
            assert_eq!(prev, vec![(1, Choice::Layer(1))], "at {estimate}");
        }
        // Below the layer's rate it goes down at once, and comes back only with headroom.
        prev = run(m, 440, &offers, &prev);
        assert_eq!(prev, vec![(1, Choice::Layer(0))]);
        prev = run(m, 500, &offers, &prev);
        assert_eq!(prev, vec![(1, Choice::Layer(0))]);
        prev = run(m, 520, &offers, &prev);
        assert_eq!(prev, vec![(1, Choice::Layer(1))]);
    }

    #[test]
    fn a_layer_in_use_survives_a_keyframe_second_above_the_cap() {
        // 1:1 cap 650; the top layer measures 600 normally and 680 in a second with a keyframe.
        let normal: &[u32] = &[100, 300, 600];
        let keyframe_second: &[u32] = &[100, 300, 680];
        let offer = |layers| Offer {
            id: 1,
            kind: Kind::Camera,
            layers,
            speaking: false,
            audible: false,
        };
        let m = meeting(2);
        let prev = run(m, 2000, &[offer(normal)], &[]);
        assert_eq!(prev, vec![(1, Choice::Layer(2))]);
        // In use: kept through the keyframe second.
        assert_eq!(
            run(m, 2000, &[offer(keyframe_second)], &prev),
            vec![(1, Choice::Layer(2))]
        );
        // Not in use: a layer above the cap is not moved to.
        assert_eq!(
            run(m, 2000, &[offer(keyframe_second)], &[(1, Choice::Layer(1))]),
            vec![(1, Choice::Layer(1))]
        );
        // Far above the cap (a publisher ignoring its target): dropped even when in use.
        let ignoring: &[u32] = &[100, 300, 900];
        assert_eq!(
            run(m, 2000, &[offer(ignoring)], &prev),
            vec![(1, Choice::Layer(1))]
        );
    }

    #[test]
    fn the_estimator_probes_for_everything_wanted_with_headroom() {
        let m = meeting(3); // cap 400 per sender: the camera's 300 layer, not its 600
        let layers: &[u32] = &[100, 300, 600];
        let offers = [
            audio(1),
            Offer {
                id: 2,
                kind: Kind::Camera,
                layers,
                speaking: true,
                audible: false,
            },
            Offer {
                id: 3,
                kind: Kind::Screen,
                layers: SCREEN,
                speaking: false,
                audible: false,
            },
        ];
        // Plenty: everything wanted is allocated, nothing to probe for.
        let plenty = run(m, 10_000, &offers, &[]);
        let t = estimator_targets(m, &offers, &plenty);
        assert_eq!(t.sustain, 32 + 300 + 1200);
        assert_eq!(t.wanted, t.sustain);
        // Scarce: audio and the screen's low layer fit; probe toward audio + camera 300 + screen 1200
        // with the 15 % moving up needs.
        let scarce = run(m, 400, &offers, &[]);
        assert_eq!(
            scarce,
            vec![
                (1, Choice::Layer(0)),
                (2, Choice::Paused),
                (3, Choice::Layer(0))
            ]
        );
        // The link keeps carrying what resuming the paused camera on its lowest layer takes (100 + 15 %),
        // so the estimate can grow to it.
        let t = estimator_targets(m, &offers, &scarce);
        assert_eq!(t.sustain, 32 + 320 + 115);
        assert_eq!(t.wanted, 1762);
    }

    #[test]
    fn a_single_layer_screen_adapts_to_its_slowest_viewer_within_the_guides_range() {
        assert_eq!(screen_target([]), 1200);
        assert_eq!(screen_target([5000, 3000]), 1200);
        // 690 left after audio: 600 kbps plus the 15 % the allocation needs to start it.
        assert_eq!(screen_target([5000, 690]), 600);
        // Never below the guide's 320 kbps: a viewer with less pauses the screen instead.
        assert_eq!(screen_target([100, 5000]), 320);
        // And the stream at that rate fits the viewer it was sized for.
        let room = 690;
        let target = screen_target([room]);
        let offer = Offer {
            id: 1,
            kind: Kind::Screen,
            layers: &[target],
            speaking: false,
            audible: false,
        };
        let mut out = Vec::new();
        allocate(meeting(3), room, &[offer], |_| None, &mut out);
        assert_eq!(out, vec![(1, Choice::Layer(0))]);
    }

    #[test]
    fn back_offs_do_not_pause_a_stream_on_its_lowest_layer() {
        let offers = [camera(1, false)];
        let m = meeting(2);
        let keep = |estimate: u32, previous: Choice| run(m, estimate, &offers, &[(1, previous)]);
        // On the 150 layer, an estimate of 130 (a back-off from about 153) keeps it, and so does 95
        // (two back-offs before the estimate climbs again)...
        assert_eq!(keep(130, Choice::Layer(0)), vec![(1, Choice::Layer(0))]);
        assert_eq!(keep(95, Choice::Layer(0)), vec![(1, Choice::Layer(0))]);
        // ...one under 60 % pauses it...
        assert_eq!(keep(89, Choice::Paused), vec![(1, Choice::Paused)]);
        assert_eq!(keep(89, Choice::Layer(0)), vec![(1, Choice::Paused)]);
        assert_eq!(keep(120, Choice::Paused), vec![(1, Choice::Paused)]);
        // ...and resuming still needs the full rate with headroom.
        assert_eq!(keep(160, Choice::Paused), vec![(1, Choice::Paused)]);
        assert_eq!(keep(173, Choice::Paused), vec![(1, Choice::Layer(0))]);
    }

    #[test]
    fn inaudible_voices_are_paused_but_audio_is_never_traded_for_video() {
        let mut quiet = audio(2);
        quiet.audible = false;
        let r = run(meeting(20), 10, &[audio(1), quiet, camera(3, true)], &[]);
        assert_eq!(
            r,
            vec![
                (1, Choice::Layer(0)),
                (2, Choice::Paused),
                (3, Choice::Paused)
            ]
        );
    }

    #[test]
    fn publishers_are_told_their_tier_and_unused_layers_go_off() {
        assert_eq!(publisher_target(meeting(2), Kind::Camera), 650);
        assert_eq!(publisher_target(meeting(3), Kind::Camera), 450);
        assert_eq!(publisher_target(meeting(16), Kind::Camera), 184);
        assert_eq!(
            publisher_target(
                Meeting {
                    attendees: 2,
                    hd: true
                },
                Kind::Camera
            ),
            1400
        );
        assert_eq!(publisher_target(meeting(5), Kind::Screen), 1200);
        assert_eq!(
            highest_layer_in_use([Choice::Layer(0), Choice::Paused, Choice::Layer(1)]),
            Some(1)
        );
        assert_eq!(highest_layer_in_use([Choice::Paused]), None);
    }
}
