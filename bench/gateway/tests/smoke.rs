//! The benchmark's machinery works: frames flow through a few bridges and the numbers it reports are
//! sane. No timing is asserted (performance is measured by `bench/run --gateway`, not tested).

use std::time::{Duration, Instant};

use convene_gateway::audio::BridgeStats;
use convene_gateway::sdp::Codec;
use convene_gateway_bench::calls::{Calls, Flow};
use convene_gateway_bench::stages;
use convene_gateway_bench::streams::{DeviceStream, MeetingStream};

/// Three calls of `device` hearing `meeting`, for `rounds` simulated 20 ms rounds.
fn three_calls(device: DeviceStream, meeting: MeetingStream, rounds: u64) -> (Calls, Flow) {
    let mut calls = Calls::new(device, meeting);
    calls.resize(3).unwrap();
    let t0 = Instant::now();
    let mut flow = Flow::default();
    for k in 0..rounds {
        flow += calls.round(t0 + Duration::from_millis(20 * k));
    }
    (calls, flow)
}

/// Nothing malformed, failed or late: packets arrive on time, so only the buffers' start-up is concealed.
fn assert_clean(stats: &BridgeStats) {
    assert_eq!(
        (
            stats.device_malformed,
            stats.meeting_malformed,
            stats.internal_errors
        ),
        (0, 0, 0)
    );
    assert_eq!((stats.device_late, stats.meeting_late), (0, 0));
}

/// Three calls for 0.5 s of simulated rounds.
fn run(codec: Codec) {
    let (mut calls, flow) = three_calls(
        DeviceStream::new(codec).unwrap(),
        MeetingStream::new(3).unwrap(),
        25,
    );
    // One packet to the device per call and round; toward the meeting one per round too, but for
    // the frames of pauses that discontinuous transmission leaves out (the device sent from the first
    // round on).
    let stats = calls.stats();
    assert_eq!(flow.to_device, 75, "{codec:?}");
    assert_eq!(
        flow.to_meeting + stats.frames_not_sent_quiet,
        75,
        "{codec:?}"
    );
    // The device's speech reaches the meeting as speech (after the jitter buffer's start-up).
    assert!(flow.to_meeting_voice > 30, "{codec:?}: {flow:?}");
    assert_eq!(stats.device_packets, 75);
    assert_eq!(stats.meeting_frames, 3 * 75);
    assert!(stats.device_decoded > 50, "{stats:?}");
    assert!(stats.meeting_decoded > 3 * 50, "{stats:?}");
    assert_clean(&stats);
    // G.722 and G.711 send one byte per 8 kHz clock tick: 160 + the RTP header.
    assert_eq!(flow.bytes_to_device, 75 * 172);
    // 32 kbit/s Opus is 80 bytes a frame on average.
    let opus = flow.bytes_to_meeting / flow.to_meeting;
    assert!((20..300).contains(&opus), "{opus} bytes per Opus frame");

    calls.resize(1).unwrap();
    assert_eq!(calls.len(), 1);
}

#[test]
fn frames_flow_through_g722_bridges() {
    run(Codec::G722);
}

#[test]
fn frames_flow_through_pcmu_bridges() {
    run(Codec::Pcmu);
}

#[test]
fn stage_numbers_are_sane() {
    let meeting = MeetingStream::new(3).unwrap();
    let device = DeviceStream::new(Codec::G722).unwrap();
    let s = stages::measure(&device, &meeting, 30).unwrap();
    let all = [
        s.opus_encode_us,
        s.opus_decode_us,
        s.device_decode_us,
        s.mix_us,
        s.device_encode_us,
        s.bridge_alone_us,
        s.what_if.opus_encode_48k_us,
        s.what_if.opus_decode_48k_us,
        s.what_if.resample_both_ways_us,
    ];
    assert!(all.iter().all(|v| v.is_finite() && *v > 0.0), "{s:?}");
    assert_eq!(
        s.baseline_opus_us,
        s.what_if.opus_encode_48k_us + s.what_if.opus_decode_48k_us
    );
    assert!(s.what_if.per_call_48k_us.is_finite() && s.what_if.per_call_complexity5_us > 0.0);
    assert!((0..=10).contains(&s.what_if.default_complexity));
}

/// The typical scenario: a room talking a tenth of the time hears voices taking turns in DTX. Over a
/// whole loop (4 s), the meeting sends a fraction of the worst case's frames, the room's quiet time
/// mostly goes unsent toward the meeting, and nothing is malformed or late.
#[test]
fn the_typical_scenario_is_quieter_both_ways() {
    let meeting = MeetingStream::turns(3).unwrap();
    // One voice at a time, the two others DTX (a frame every 400 ms): well under 3 frames per round.
    let per_round = meeting.frames_sent() as f64 / 200.0;
    assert!(
        (1.0..1.6).contains(&per_round),
        "{per_round} meeting frames per round"
    );
    let (calls, flow) = three_calls(
        DeviceStream::talking(Codec::G722, 0.1).unwrap(),
        meeting,
        200,
    );
    let stats = calls.stats();
    assert_eq!(flow.to_device, 600);
    assert_eq!(flow.to_meeting + stats.frames_not_sent_quiet, 600);
    // The room talks 10 % of the loop (plus the voice detector's hangover): most quiet frames are not
    // sent, and few of those sent are flagged as speech.
    assert!(stats.frames_not_sent_quiet > 300, "{stats:?}");
    assert!(flow.to_meeting_voice < 200, "{flow:?}");
    // 3 calls x 3 voices x 200 rounds would be the worst case: under half of that arrives.
    assert!(stats.meeting_frames < 3 * 3 * 200 / 2, "{stats:?}");
    assert_clean(&stats);
}

/// A round run in phases (calls ticking at different times of the 20 ms) codes exactly what the
/// whole round codes: every call once per round, none twice, none skipped.
#[test]
fn a_round_in_phases_codes_every_call_once() {
    let t0 = Instant::now();
    let mut flows = Vec::new();
    for parts in [1usize, 4] {
        let mut calls = Calls::new(
            DeviceStream::new(Codec::Pcmu).unwrap(),
            MeetingStream::new(2).unwrap(),
        );
        calls.resize(6).unwrap();
        let mut flow = Flow::default();
        for k in 0..25u64 {
            for part in 0..parts {
                let at = t0 + Duration::from_millis(20 * k + 5 * part as u64);
                flow += calls.round_part(at, part, parts);
            }
        }
        assert_clean(&calls.stats());
        flows.push(flow);
    }
    assert_eq!(flows[0].to_device, 6 * 25);
    assert_eq!(flows[0].to_device, flows[1].to_device);
    assert_eq!(flows[0].to_meeting, flows[1].to_meeting);
}
