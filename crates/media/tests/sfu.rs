//! The SFU core driven through simulated time with in-process str0m peers: no sockets, no sleeps.

mod sim;

use std::time::Duration;

use convene_core::{AttendeeId, AttendeeRole, MediaSource, MeetingEventKind};
use convene_media::signal::messages::{ErrorCode, ServerMessage};
use sim::Sim;

/// Video every 33 ms (a keyframe first) and audio every 20 ms from each publishing client.
fn media(s: &mut Sim, publishers: &[usize], level: i8) {
    let t = s.ms();
    for &c in publishers {
        if t.is_multiple_of(35) {
            s.send_video(c, false);
        }
        if t.is_multiple_of(20) {
            s.send_audio(c, level);
        }
    }
}

fn two_publishers() -> (Sim, usize, usize) {
    let mut s = Sim::new();
    let a = s.join("m1", "Ada");
    let b = s.join("m1", "Bob");
    s.publish(a);
    s.publish(b);
    s.connect_all();
    (s, a, b)
}

#[test]
fn join_publish_subscribe_leave() {
    let (mut s, a, b) = two_publishers();
    // Every connection's SRTP keys were captured for the fast path (publish + subscribe, two attendees).
    assert_eq!(s.shard.fastpath_keys_captured(), (4, 4));
    let (id_a, id_b) = (s.clients[a].id, s.clients[b].id);

    // Each got `joined`; the first saw the second arrive.
    assert!(s.clients[a].has_message(
        |m| matches!(m, ServerMessage::Joined { attendees, .. } if attendees.is_empty())
    ));
    assert!(s.clients[b].has_message(|m| matches!(m, ServerMessage::Joined { attendees, .. } if attendees.len() == 1 && attendees[0].name == "Ada")));
    assert!(s.clients[a].has_message(
        |m| matches!(m, ServerMessage::AttendeeJoined { attendee } if attendee.attendee_id == id_b)
    ));

    // Our answer asks publishers for Opus DTX.
    assert!(s.clients[a].has_message(
        |m| matches!(m, ServerMessage::PublishAnswer { sdp } if sdp.contains("usedtx=1"))
    ));

    // Both subscribe connections carry the other's audio and camera.
    for (c, other) in [(a, id_b), (b, id_a)] {
        let tracks = &s.clients[c].sub_tracks;
        assert_eq!(tracks.len(), 2, "{tracks:?}");
        assert!(tracks.iter().all(|t| t.attendee_id == other));
    }

    s.send_video(a, true);
    s.send_video(b, true);
    s.run(Duration::from_secs(2), |s| media(s, &[a, b], -90));

    for (c, from, from_index) in [(a, id_b, b), (b, id_a, a)] {
        s.assert_decoded_from(c, from, from_index, 40, 80);
    }
    assert!(s.metrics.video_out.get() > 80);
    assert!(s.metrics.audio_out.get() > 160);

    // Ada leaves: Bob is told, and his next offer drops her tracks.
    s.leave(a);
    s.run(Duration::from_millis(100), |_| {});
    assert!(s.clients[b].has_message(|m| matches!(m, ServerMessage::AttendeeLeft { attendee_id, reason } if *attendee_id == id_a && reason == "left")));
    assert!(
        s.clients[b].sub_tracks.is_empty(),
        "{:?}",
        s.clients[b].sub_tracks
    );
    s.leave(b);

    let kinds: Vec<&MeetingEventKind> = s.event_log.iter().map(|e| &e.kind).collect();
    assert!(matches!(kinds[0], MeetingEventKind::MeetingStarted));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, MeetingEventKind::AttendeeJoined { .. }))
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, MeetingEventKind::AttendeeLeft { .. }))
            .count(),
        2
    );
    assert!(matches!(kinds.last(), Some(MeetingEventKind::MeetingEnded)));
    assert_eq!(s.shard.meeting_count(), 0);
    assert_eq!(
        s.shard.poll_ended_meeting().map(|m| m.to_string()),
        Some("m1".into())
    );
}

#[test]
fn late_joiner_starts_on_a_keyframe_it_asked_for() {
    let mut s = Sim::new();
    let a = s.join("m2", "Ada");
    s.publish(a);
    s.connect_all();
    s.send_video(a, true);
    s.run(Duration::from_secs(1), |s| media(s, &[a], -90));
    let requests_before = s.clients[a].publish.as_ref().unwrap().keyframe_requests;

    // Carol arrives while only delta frames flow.
    let c = s.join("m2", "Carol");
    s.connect_all();
    let id_a = s.clients[a].id;
    // Nothing reaches Carol before a keyframe, and Ada is asked for one.
    s.run(Duration::from_millis(300), |s| media(s, &[a], -90));
    assert!(
        s.clients[c]
            .received_from(id_a, MediaSource::Camera)
            .is_empty(),
        "forwarded before a keyframe"
    );
    assert!(
        s.clients[a].publish.as_ref().unwrap().keyframe_requests > requests_before,
        "no PLI reached the publisher"
    );

    // Ada answers with a keyframe: Carol's video starts with it.
    s.send_video(a, true);
    s.run(Duration::from_millis(300), |s| media(s, &[a], -90));
    let video = s.clients[c].received_from(id_a, MediaSource::Camera);
    assert!(!video.is_empty(), "late joiner got no video");
    assert_eq!(video[0].payload[1] & 1, 0, "first packet is not a keyframe");
    assert!(video[0].seq < 65536);
    // She hears Ada too.
    assert!(
        !s.clients[c]
            .received_from(id_a, MediaSource::Audio)
            .is_empty()
    );
}

#[test]
fn nack_is_answered_from_the_rtx_cache() {
    let (mut s, a, b) = two_publishers();
    let id_a = s.clients[a].id;
    // About 230 kbps of video: above the 50 kbps the estimator keeps the link busy with (padding made of
    // retransmitted recent packets would repair the loss without any NACK).
    let mut frame = 0;
    let mut busy = |s: &mut sim::Sim| {
        let t = s.ms();
        if t.is_multiple_of(35) {
            frame += 1;
            s.send_frame(a, None, frame, frame == 1, 1000);
        }
        if t.is_multiple_of(20) {
            s.send_audio(a, -90);
        }
    };
    s.run(Duration::from_secs(1), &mut busy);
    let before = s.clients[b].received_from(id_a, MediaSource::Camera).len();
    assert!(before > 10);

    // Drop one video datagram on its way to Bob's subscribe connection.
    let bob_sub = s.clients[b].subscribe.as_ref().unwrap().addr;
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = dropped.clone();
    s.drop_filter = Some(Box::new(move |_from, to, bytes| {
        // VP8 media on the server's payload type 96 (not RTX, not padding the estimator sends).
        let video_rtp = bytes.len() > 150 && bytes[0] >> 6 == 2 && bytes[1] & 0x7f == 96;
        if to == bob_sub && video_rtp && !flag.get() {
            flag.set(true);
            return true;
        }
        false
    }));
    s.run(Duration::from_secs(3), &mut busy);

    assert!(dropped.get(), "the test dropped nothing");
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    sim::assert_no_gap(&video, "a sequence number is still missing after NACK/RTX");
    assert!(s.metrics.nacks.get() >= 1, "the server saw no NACK");
    assert!(
        s.metrics.rtx_sent.get() >= 1,
        "the server sent no retransmission"
    );
}

#[test]
fn speakers_are_announced() {
    let (mut s, a, b) = two_publishers();
    let id_a = s.clients[a].id;
    s.run(Duration::from_millis(600), |s| {
        let t = s.ms();
        if t.is_multiple_of(20) {
            s.send_audio(a, -20);
            s.send_audio(b, -100);
        }
    });
    assert!(s.clients[b].has_message(
        |m| matches!(m, ServerMessage::Speaking { attendee_ids } if attendee_ids == &vec![id_a])
    ));
    // Silence ends it.
    s.run(Duration::from_secs(1), |s| {
        if s.ms().is_multiple_of(20) {
            s.send_audio(a, -100);
        }
    });
    assert!(matches!(
        s.clients[b].messages.iter().rev().find(|m| matches!(m, ServerMessage::Speaking { .. })),
        Some(ServerMessage::Speaking { attendee_ids }) if attendee_ids.is_empty()
    ));
}

#[test]
fn a_large_meeting_forwards_only_the_loudest_voices() {
    let mut s = Sim::new();
    // Ten attendees; five talk at different levels, the listener is the tenth.
    let clients: Vec<usize> = (0..10).map(|i| s.join("m-big", &format!("P{i}"))).collect();
    let talkers = &clients[..5];
    for &c in talkers {
        s.publish(c);
    }
    s.connect_all();
    let listener = clients[9];
    let levels = [-10i8, -20, -30, -40, -45];
    let talk = |s: &mut Sim, ms: u64, levels: [i8; 5]| {
        s.run(Duration::from_millis(ms), |s| {
            if s.ms().is_multiple_of(20) {
                for (i, &c) in talkers.iter().enumerate() {
                    if levels[i] > -127 {
                        s.send_audio(c, levels[i]);
                    }
                }
            }
        });
    };
    talk(&mut s, 2000, levels);
    let counts = |s: &Sim| -> Vec<usize> {
        talkers
            .iter()
            .map(|&c| {
                s.clients[listener]
                    .received_from(s.clients[c].id, MediaSource::Audio)
                    .len()
            })
            .collect()
    };
    let before = counts(&s);
    talk(&mut s, 2000, levels);
    let after = counts(&s);
    let got: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // 100 packets each in two seconds: the three loudest arrive, the two quietest do not.
    assert!(got[..3].iter().all(|&n| n > 80), "{got:?}");
    assert_eq!(got[3..], [0, 0], "{got:?}");

    // The loudest stops (DTX: no packets at all); the fourth takes the free slot, and its stream is
    // continuous for the listener (no sequence gap read as loss).
    let quiet = [-127i8, -20, -30, -40, -45];
    talk(&mut s, 2000, quiet);
    let before = counts(&s);
    talk(&mut s, 1000, quiet);
    let got: Vec<usize> = counts(&s).iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        got[3] > 40,
        "the fourth voice did not take the free slot: {got:?}"
    );
    assert_eq!(got[4], 0, "{got:?}");
    let fourth = s.clients[listener].received_from(s.clients[talkers[3]].id, MediaSource::Audio);
    assert!(fourth.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn silent_attendee_is_dropped_after_consent_timeout() {
    let (mut s, a, b) = two_publishers();
    let id_a = s.clients[a].id;
    let (pub_a, sub_a) = (
        s.clients[a].publish.as_ref().unwrap().addr,
        s.clients[a].subscribe.as_ref().unwrap().addr,
    );
    // Ada's network goes dark (her consent checks no longer arrive).
    s.drop_filter = Some(Box::new(move |from, _to, _| from == pub_a || from == sub_a));
    s.run(Duration::from_secs(9), |s| media(s, &[b], -90));
    assert!(
        !s.clients[b].has_message(|m| matches!(m, ServerMessage::AttendeeLeft { .. })),
        "dropped too early"
    );
    s.run(Duration::from_secs(2), |s| media(s, &[b], -90));
    assert!(s.clients[b].has_message(|m| matches!(m, ServerMessage::AttendeeLeft { attendee_id, reason } if *attendee_id == id_a && reason == "timeout")));
}

#[test]
fn bad_datagrams_are_counted_and_harmless() {
    let (mut s, a, b) = two_publishers();
    let id_a = s.clients[a].id;
    s.send_video(a, true);
    s.run(Duration::from_millis(500), |s| media(s, &[a], -90));
    let before = s.clients[b].received_from(id_a, MediaSource::Camera).len();
    let dropped_before = s.metrics.dropped_total();

    let attacker: std::net::SocketAddr = "10.9.9.9:666".parse().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let stun_header = [
        0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let now = s.now;
    for i in 0..500usize {
        let len = rng.usize(0..1500);
        let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        s.shard.handle_datagram(now, attacker, s.server, &junk);
        // Truncated STUN, DTLS and RTP from a known peer's address too.
        let from = if i.is_multiple_of(2) {
            attacker
        } else {
            s.clients[a].publish.as_ref().unwrap().addr
        };
        s.shard
            .handle_datagram(now, from, s.server, &stun_header[..i % stun_header.len()]);
        s.shard
            .handle_datagram(now, from, s.server, &[22, 0xfe, 0xfd, 0, 0][..i % 5]);
        s.shard
            .handle_datagram(now, from, s.server, &[0x80, 0x60, 0x12][..i % 3]);
    }
    s.shard.flush_metrics();
    assert!(s.metrics.dropped_total() > dropped_before + 400);

    // The meeting carries on.
    s.run(Duration::from_millis(500), |s| media(s, &[a], -90));
    assert!(s.clients[b].received_from(id_a, MediaSource::Camera).len() > before + 10);
}

#[test]
fn offers_without_fingerprint_or_with_bad_tracks_are_refused() {
    let mut s = Sim::new();
    let a = s.join("m3", "Ada");
    let id = s.clients[a].id;
    let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n";
    s.shard.handle_command(
        s.now,
        convene_media::shard::Command::PublishOffer {
            attendee: id,
            sdp: sdp.into(),
            tracks: vec![],
        },
    );
    s.shard.handle_command(
        s.now,
        convene_media::shard::Command::PublishOffer {
            attendee: id,
            sdp: "a=fingerprint:sha-256 00\r\ngarbage".into(),
            tracks: vec![],
        },
    );
    s.shard.handle_command(
        s.now,
        convene_media::shard::Command::PublishOffer {
            attendee: id,
            sdp: sdp.into(),
            tracks: vec![convene_media::signal::messages::PublishTrack {
                mid: "0".into(),
                source: "hologram".into(),
            }],
        },
    );
    s.shard.handle_command(
        s.now,
        convene_media::shard::Command::SubscribeAnswer {
            attendee: id,
            sdp: "v=0".into(),
        },
    );
    s.pump();
    let codes: Vec<ErrorCode> = s.clients[a]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::BadSdp,
            ErrorCode::BadSdp,
            ErrorCode::InvalidField,
            ErrorCode::NoOfferOutstanding
        ]
    );
}

#[test]
fn simulcast_forwards_the_best_arriving_layer_and_switches_on_keyframes() {
    let mut s = Sim::new();
    let a = s.join("m4", "Ada");
    let b = s.join("m4", "Bob");
    s.publish_with(a, &["h", "l"]);
    s.connect_all();
    let id_a = s.clients[a].id;
    // Both layers flow; "h" carries more bytes.
    s.send_video_layer(a, Some("l"), true);
    s.send_video_layer(a, Some("h"), true);
    s.run(Duration::from_secs(2), |s| {
        if s.ms().is_multiple_of(35) {
            s.send_video_layer(a, Some("l"), false);
            s.send_video_layer(a, Some("h"), false);
        }
        if s.ms().is_multiple_of(500) {
            s.send_video_layer(a, Some("l"), true);
            s.send_video_layer(a, Some("h"), true);
        }
    });
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    assert!(video.len() > 20);
    let tail: Vec<u8> = video.iter().rev().take(10).map(|p| p.payload[3]).collect();
    assert!(
        tail.iter().all(|&l| l == b'h'),
        "not on the best layer: {tail:?}"
    );

    // "h" stops arriving (the sender's uplink dropped it): Bob moves to "l" at its next keyframe,
    // and his stream stays continuous.
    let before = video.len();
    s.run(Duration::from_secs(4), |s| {
        if s.ms().is_multiple_of(35) {
            s.send_video_layer(a, Some("l"), false);
        }
        if s.ms().is_multiple_of(500) {
            s.send_video_layer(a, Some("l"), true);
        }
    });
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    let after = &video[before..];
    let first_low = after
        .iter()
        .position(|p| p.payload[3] == b'l')
        .expect("never switched to the low layer");
    assert_eq!(
        after[first_low].payload[1] & 1,
        0,
        "switched on a delta frame"
    );
    assert!(after[first_low..].iter().all(|p| p.payload[3] == b'l'));
    assert!(
        video.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "sequence numbers jump across the switch"
    );
}

/// Send both simulcast layers for `ms`, with a keyframe on each every 500 ms.
fn simulcast_for(s: &mut Sim, publisher: usize, ms: u64) {
    s.run(Duration::from_millis(ms), |s| {
        let keyframe = s.ms().is_multiple_of(500);
        if keyframe || s.ms().is_multiple_of(35) {
            s.send_video_layer(publisher, Some("l"), keyframe);
            s.send_video_layer(publisher, Some("h"), keyframe);
        }
    });
}

#[test]
fn a_downlink_budget_picks_the_layer_that_fits_and_switches_cleanly() {
    let mut s = Sim::new();
    let a = s.join("m-bw", "Ada");
    let b = s.join("m-bw", "Bob");
    s.publish_with(a, &["h", "l"]);
    s.connect_all();
    let id_a = s.clients[a].id;
    simulcast_for(&mut s, a, 2000);
    let layer_of = |p: &sim::Received| p.payload[3];
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    assert!(video.iter().rev().take(5).all(|p| layer_of(p) == b'h'));

    // "h" is about 91 kbps and "l" about 37 kbps here: an 80 kbps cap fits only "l".
    s.downlink_cap(b, Some(80));
    let before = video.len();
    simulcast_for(&mut s, a, 2000);
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    let after = &video[before..];
    let first_low = after
        .iter()
        .position(|p| layer_of(p) == b'l')
        .expect("never moved to the low layer under the cap");
    assert_eq!(
        after[first_low].payload[1] & 1,
        0,
        "switched on a delta frame"
    );
    assert!(after[first_low..].iter().all(|p| layer_of(p) == b'l'));

    // The cap lifted: back up to "h" (on a keyframe), the stream continuous throughout.
    s.downlink_cap(b, None);
    simulcast_for(&mut s, a, 2000);
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    assert!(video.iter().rev().take(5).all(|p| layer_of(p) == b'h'));
    assert!(
        video.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "sequence numbers jump across a switch"
    );

    // Too little for any layer: the camera pauses rather than overflowing the link.
    s.downlink_cap(b, Some(30));
    simulcast_for(&mut s, a, 300);
    let paused_at = s.clients[b].received_from(id_a, MediaSource::Camera).len();
    simulcast_for(&mut s, a, 1500);
    assert_eq!(
        s.clients[b].received_from(id_a, MediaSource::Camera).len(),
        paused_at,
        "video still flowing under a 30 kbps cap"
    );
    assert!(s.metrics.allocation_changes.get() >= 3);

    // Per-meeting series: the changes counted, the paused stream seen; gone when the meeting ends.
    let series = |s: &Sim, name: &str| -> Option<f64> {
        s.registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .and_then(|f| {
                f.get_metric()
                    .iter()
                    .find(|m| m.get_label().iter().any(|l| l.value() == "m-bw"))
                    .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
            })
    };
    assert!(series(&s, "convene_media_meeting_allocation_changes_total").is_some_and(|v| v >= 3.0));
    assert_eq!(
        series(&s, "convene_media_meeting_paused_streams"),
        Some(1.0)
    );
    assert_eq!(
        series(&s, "convene_media_meeting_min_downlink_kbps"),
        Some(30.0)
    );
    s.leave(a);
    s.leave(b);
    assert_eq!(
        series(&s, "convene_media_meeting_allocation_changes_total"),
        None
    );
    assert_eq!(series(&s, "convene_media_meeting_paused_streams"), None);
}

/// The latest `publish_targets` a client got: (max_kbps, active_rids) of its camera.
/// The last publish target for the client's video m-line (camera or, republished, screen).
fn camera_target(s: &Sim, c: usize) -> Option<(u32, Option<Vec<String>>)> {
    let mid = s.clients[c].video_mid?.to_string();
    s.clients[c].messages.iter().rev().find_map(|m| match m {
        ServerMessage::PublishTargets { tracks } => tracks
            .iter()
            .find(|t| t.mid == mid)
            .map(|t| (t.max_kbps, t.active_rids.clone())),
        _ => None,
    })
}

#[test]
fn cameras_beyond_the_meetings_limit_wait_for_a_free_slot() {
    // The limit is 16; two keeps the simulation small.
    let mut s = Sim::with_config(|c| c.max_video_publishers = 2);
    let a = s.join("m-cams", "Ada");
    let b = s.join("m-cams", "Bob");
    let c = s.join("m-cams", "Cy");
    let viewer = s.join("m-cams", "Vi");
    for p in [a, b, c] {
        s.publish(p);
    }
    s.connect_all();
    let ids: Vec<_> = [a, b, c].iter().map(|&p| s.clients[p].id).collect();
    let send = |s: &mut Sim, ms: u64| {
        s.run(Duration::from_millis(ms), |s| {
            for p in [a, b, c] {
                if s.ms().is_multiple_of(35) {
                    s.send_video(p, s.ms().is_multiple_of(490));
                }
                if s.ms().is_multiple_of(20) {
                    s.send_audio(p, -30);
                }
            }
        })
    };
    send(&mut s, 2000);
    let video = |s: &Sim, who| {
        s.clients[viewer]
            .received_from(who, MediaSource::Camera)
            .len()
    };
    let audio = |s: &Sim, who| {
        s.clients[viewer]
            .received_from(who, MediaSource::Audio)
            .len()
    };
    assert!(video(&s, ids[0]) > 0 && video(&s, ids[1]) > 0);
    assert_eq!(
        video(&s, ids[2]),
        0,
        "a third camera got through a limit of two"
    );
    assert!(
        audio(&s, ids[2]) > 0,
        "the third publisher must still be heard"
    );
    // Cy is told to send no video.
    assert_eq!(camera_target(&s, c).map(|t| t.0), Some(0));
    assert_eq!(camera_target(&s, a).map(|t| t.0), Some(450));
    // Ada leaves: Cy's camera takes the free slot.
    s.leave(a);
    send(&mut s, 2000);
    assert!(video(&s, ids[2]) > 0, "the waiting camera was not admitted");
    assert!(camera_target(&s, c).is_some_and(|t| t.0 > 0));
}

#[test]
fn the_host_turns_hd_mode_on_for_a_one_to_one_call() {
    let mut s = Sim::new();
    let host = s.join_as("m-hd", "Hana", AttendeeRole::Host);
    let guest = s.join("m-hd", "Gus");
    s.publish_with(host, &["h", "l"]);
    s.connect_all();
    simulcast_for(&mut s, host, 1500);
    assert_eq!(camera_target(&s, host).map(|t| t.0), Some(650));
    // A guest may not.
    s.hd_mode(guest, true);
    assert!(s.clients[guest].has_message(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )));
    assert_eq!(camera_target(&s, host).map(|t| t.0), Some(650));
    // The host may: everyone is told, and the ceiling moves at once.
    s.hd_mode(host, true);
    for c in [host, guest] {
        assert!(s.clients[c].has_message(|m| matches!(m, ServerMessage::HdMode { on: true })));
    }
    assert_eq!(camera_target(&s, host).map(|t| t.0), Some(1400));
    // HD is a 1:1 tier: with a third person the meeting's tier applies again.
    s.join("m-hd", "Cy");
    simulcast_for(&mut s, host, 1200);
    assert_eq!(camera_target(&s, host).map(|t| t.0), Some(450));
}

#[test]
fn publishers_are_told_their_tier_and_which_layers_anyone_receives() {
    let mut s = Sim::new();
    let a = s.join("m-tiers", "Ada");
    let b = s.join("m-tiers", "Bob");
    s.publish_with(a, &["h", "l"]);
    s.connect_all();
    simulcast_for(&mut s, a, 1500);
    // 1:1: 650 kbps, and both layers are wanted (Bob receives "h").
    let (kbps, rids) = camera_target(&s, a).expect("no publish_targets");
    assert_eq!(kbps, 650);
    assert_eq!(rids, Some(vec!["h".to_owned(), "l".to_owned()]));
    // Bob caps his downlink to the low layer: "h" is nobody's. It stays on for a few seconds (an
    // estimate wobbling around it would otherwise turn it off and on), then Ada may stop sending it.
    s.downlink_cap(b, Some(80));
    simulcast_for(&mut s, a, 1500);
    assert_eq!(
        camera_target(&s, a),
        Some((650, Some(vec!["h".to_owned(), "l".to_owned()])))
    );
    simulcast_for(&mut s, a, 5000);
    assert_eq!(
        camera_target(&s, a),
        Some((650, Some(vec!["l".to_owned()])))
    );
    // The meeting grows: 3-4 people 450 kbps, 5 and more 184 kbps.
    s.join("m-tiers", "Cy");
    simulcast_for(&mut s, a, 1200);
    assert_eq!(camera_target(&s, a).map(|t| t.0), Some(450));
    s.join("m-tiers", "Di");
    s.join("m-tiers", "Ed");
    simulcast_for(&mut s, a, 1200);
    assert_eq!(camera_target(&s, a).map(|t| t.0), Some(184));
}

#[test]
fn a_large_meetings_housekeeping_spans_wake_ups_and_still_retargets_the_publisher() {
    // More subscribers than one chunk of a sweep (64): the probe sweep and the per-second
    // reallocation each take two wake-ups, and the publisher's targets follow the reallocation.
    let mut s = Sim::new();
    let a = s.join("m-sweep", "Ada");
    let viewers: Vec<usize> = (0..70)
        .map(|i| s.join("m-sweep", &format!("V{i}")))
        .collect();
    s.publish_with(a, &["h", "l"]);
    s.connect_all();
    simulcast_for(&mut s, a, 1500);
    assert_eq!(
        camera_target(&s, a).and_then(|t| t.1),
        Some(vec!["h".to_owned(), "l".to_owned()])
    );
    for &v in &viewers {
        s.downlink_cap(v, Some(80));
    }
    // Watch the sweeps while the cap takes effect: each must finish on the wake-up after the one
    // that started it (two chunks), and there must be some.
    let (mut sweeps, mut longest, mut run) = (0, 0, 0);
    s.run(Duration::from_millis(7000), |s| {
        let keyframe = s.ms().is_multiple_of(500);
        if keyframe || s.ms().is_multiple_of(35) {
            s.send_video_layer(a, Some("l"), keyframe);
            s.send_video_layer(a, Some("h"), keyframe);
        }
        // The state the previous step's wake-up left.
        if s.shard.sweep_in_progress() {
            run += 1;
            if run == 1 {
                sweeps += 1;
            }
            longest = longest.max(run);
        } else {
            run = 0;
        }
    });
    // Seven reallocations at least (one a second), and on the fast path a probe sweep per tick.
    assert!(sweeps >= 6, "only {sweeps} sweeps spanned wake-ups in 7 s");
    assert_eq!(longest, 1, "a sweep took more than two wake-ups");
    assert_eq!(
        camera_target(&s, a).and_then(|t| t.1),
        Some(vec!["l".to_owned()]),
        "the reallocation sweep did not switch the unwanted layer off"
    );
}

#[test]
fn a_layer_switched_off_comes_back_when_someone_wants_it_again() {
    let mut s = Sim::new();
    let a = s.join("m-off", "Ada");
    let b = s.join("m-off", "Bob");
    s.publish_with(a, &["h", "l"]);
    s.connect_all();
    let id_a = s.clients[a].id;
    // Ada's browser honours publish_targets: it sends only the layers listed.
    let obeying = |s: &mut Sim, ms: u64| {
        s.run(Duration::from_millis(ms), |s| {
            let keyframe = s.ms().is_multiple_of(500);
            if keyframe || s.ms().is_multiple_of(35) {
                let listed = camera_target(s, a).and_then(|t| t.1);
                for rid in ["l", "h"] {
                    if listed.as_ref().is_none_or(|l| l.iter().any(|r| r == rid)) {
                        s.send_video_layer(a, Some(rid), keyframe);
                    }
                }
            }
        })
    };
    obeying(&mut s, 2000);
    // Bob caps his downlink below "h": nobody receives it, so Ada is told to stop it, and does.
    s.downlink_cap(b, Some(80));
    obeying(&mut s, 7000);
    assert_eq!(
        camera_target(&s, a).and_then(|t| t.1),
        Some(vec!["l".to_owned()])
    );
    let before = s.clients[b].received_from(id_a, MediaSource::Camera).len();
    obeying(&mut s, 1000);
    let last_second = &s.clients[b].received_from(id_a, MediaSource::Camera)[before..];
    assert!(!last_second.is_empty() && last_second.iter().all(|p| p.payload[3] == b'l'));
    // Bob lifts the cap: "h" is listed again although it is not arriving, Ada resumes it, Bob gets it.
    s.downlink_cap(b, None);
    obeying(&mut s, 3000);
    assert_eq!(
        camera_target(&s, a).and_then(|t| t.1),
        Some(vec!["h".to_owned(), "l".to_owned()])
    );
    let got = s.clients[b].received_from(id_a, MediaSource::Camera);
    assert_eq!(
        got.last().map(|p| p.payload[3]),
        Some(b'h'),
        "Bob never got h back"
    );
}

#[test]
fn a_screen_without_simulcast_adapts_to_its_slowest_viewer() {
    let mut s = Sim::new();
    let a = s.join("m-screen", "Ada");
    let b = s.join("m-screen", "Bob");
    let c = s.join("m-screen", "Cy");
    s.publish(a);
    s.connect_all();
    // Ada's video m-line now carries her screen (single layer).
    s.republish(a, &["audio", "screen"]);
    // Viewers on wide links with real arrival times (the estimator needs them to hold its estimate).
    for viewer in [b, c] {
        let addr = s.clients[viewer]
            .subscribe
            .as_ref()
            .expect("subscribed")
            .addr;
        let wide = sim::netem::LinkSpec {
            rate_kbps: 5000,
            delay: Duration::from_millis(10),
            max_queue_delay: Duration::from_millis(250),
            loss_per_mille: 0,
        };
        s.shape(addr, wide);
    }
    let share = |s: &mut Sim, ms: u64| {
        s.run(Duration::from_millis(ms), |s| {
            // Ada's encoder follows her target, as a browser does with setParameters; like a real screen
            // encoder it starts low (static content) and ramps up over the first seconds.
            if s.ms().is_multiple_of(35) {
                let frame = (s.ms() / 35) as u32;
                let ramp = 400 + s.ms() as usize / 10;
                let kbps = (camera_target(s, a).map_or(1200, |t| t.0) as usize).min(ramp);
                s.send_frame(a, None, frame, frame.is_multiple_of(30), kbps * 35 / 8);
            }
            if s.ms().is_multiple_of(20) {
                s.send_audio(a, -30);
            }
        })
    };
    share(&mut s, 3000);
    let screen_kbps = |s: &Sim| camera_target(s, a).map(|t| t.0);
    assert!(screen_kbps(&s) > Some(320), "{:?}", screen_kbps(&s));
    // Bob's link has room for 420 kbps: the screen is sized so it fits him with headroom.
    s.downlink_cap(b, Some(420));
    share(&mut s, 1500);
    let sized = screen_kbps(&s).expect("a screen target");
    // 420 less Ada's audio (about 30 kbps with headers), over the 15 % headroom.
    assert!(
        (330..=350).contains(&sized),
        "screen target {sized} for a 420 kbps viewer"
    );
    // Cy has less than the guide's floor: the screen stays at 320 kbps (Cy's allocation pauses it).
    s.downlink_cap(c, Some(150));
    share(&mut s, 1500);
    assert_eq!(screen_kbps(&s), Some(320));
}

#[test]
fn republishing_a_source_gets_a_fresh_track_identity() {
    let (mut s, a, b) = two_publishers();
    let id_a = s.clients[a].id;
    s.republish(a, &["audio"]);
    s.run(Duration::from_millis(100), |_| {});
    assert_eq!(
        s.clients[b]
            .sub_tracks
            .iter()
            .filter(|t| t.attendee_id == id_a)
            .count(),
        1
    );
    s.republish(a, &["audio", "camera"]);
    s.run(Duration::from_millis(100), |_| {});
    assert_eq!(
        s.clients[b]
            .sub_tracks
            .iter()
            .filter(|t| t.attendee_id == id_a)
            .count(),
        2
    );

    // Browsers refuse an SDP with the same a=msid twice (even when one m-line is inactive).
    for m in &s.clients[b].messages {
        if let ServerMessage::SubscribeOffer { sdp, .. } = m {
            let mut msids: Vec<&str> = sdp.lines().filter(|l| l.starts_with("a=msid:")).collect();
            let n = msids.len();
            msids.sort();
            msids.dedup();
            assert_eq!(msids.len(), n, "duplicate a=msid in\n{sdp}");
        }
    }
    // And the new camera track carries video.
    let before = s.clients[b].received_from(id_a, MediaSource::Camera).len();
    s.send_video(a, true);
    s.run(Duration::from_millis(500), |s| media(s, &[a], -90));
    assert!(s.clients[b].received_from(id_a, MediaSource::Camera).len() > before + 5);
}

#[test]
fn a_publish_offer_with_a_wrong_track_is_refused_and_not_applied() {
    let (mut s, a, _b) = two_publishers();
    let answers = |s: &Sim| {
        s.clients[a]
            .messages
            .iter()
            .filter(|m| matches!(m, ServerMessage::PublishAnswer { .. }))
            .count()
    };
    let before = answers(&s);
    let id = s.clients[a].id;
    let sdp = s.clients[a].publish_sdp.clone().unwrap();
    let audio_mid = s.clients[a].audio_mid.unwrap().to_string();
    for tracks in [
        vec![convene_media::signal::messages::PublishTrack {
            mid: "7".into(),
            source: "audio".into(),
        }],
        vec![convene_media::signal::messages::PublishTrack {
            mid: audio_mid,
            source: "camera".into(),
        }],
    ] {
        s.shard.handle_command(
            s.now,
            convene_media::shard::Command::PublishOffer {
                attendee: id,
                sdp: sdp.clone(),
                tracks,
            },
        );
        s.pump();
    }
    assert_eq!(answers(&s), before, "a refused offer was answered");
    let errors = s.clients[a]
        .messages
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::InvalidField,
                    ..
                }
            )
        })
        .count();
    assert_eq!(errors, 2);
}

#[test]
fn shutdown_tells_everyone_once_without_roster_churn() {
    let (mut s, a, b) = two_publishers();
    let before = [s.clients[a].messages.len(), s.clients[b].messages.len()];
    s.shard
        .handle_command(s.now, convene_media::shard::Command::Shutdown);
    s.pump();
    for (c, n) in [(a, before[0]), (b, before[1])] {
        let new = &s.clients[c].messages[n..];
        assert!(
            matches!(
                new,
                [ServerMessage::Error {
                    code: ErrorCode::Unavailable,
                    ..
                }]
            ),
            "expected exactly one `unavailable`, got {new:?}"
        );
        // The shard let go of the attendee's channel.
        assert!(s.clients[c].signal.is_closed());
    }
    assert_eq!(s.shard.attendee_count(), 0);
    assert!(matches!(
        s.event_log.last().map(|e| &e.kind),
        Some(MeetingEventKind::MeetingEnded)
    ));
}

#[test]
fn an_unanswered_subscribe_offer_is_replaced() {
    let mut s = Sim::new();
    let a = s.join("m5", "Ada");
    let b = s.join("m5", "Bob");
    s.clients[b].answer_offers = false;
    s.publish(a);
    let offers = |s: &Sim| {
        s.clients[b]
            .messages
            .iter()
            .filter(|m| matches!(m, ServerMessage::SubscribeOffer { .. }))
            .count()
    };
    assert_eq!(offers(&s), 1);
    s.run(Duration::from_secs(5), |_| {});
    assert_eq!(offers(&s), 1, "re-offered too early");
    // Bob's client recovers and answers whatever comes next.
    s.clients[b].answer_offers = true;
    s.run(Duration::from_secs(6), |_| {});
    assert_eq!(
        offers(&s),
        2,
        "no new offer after the old one went unanswered"
    );
    s.connect_all();
    let id_a = s.clients[a].id;
    s.send_video(a, true);
    s.run(Duration::from_millis(500), |s| media(s, &[a], -90));
    assert!(
        !s.clients[b]
            .received_from(id_a, MediaSource::Camera)
            .is_empty()
    );
    assert!(
        !s.clients[b]
            .received_from(id_a, MediaSource::Audio)
            .is_empty()
    );
}

/// The recording events on the bus from `from` on, in order.
fn recording_events(s: &Sim, from: usize) -> Vec<MeetingEventKind> {
    s.event_log[from..]
        .iter()
        .map(|e| e.kind.clone())
        .filter(|k| {
            matches!(
                k,
                MeetingEventKind::RecordingStarted { .. }
                    | MeetingEventKind::RecordingStopped { .. }
            )
        })
        .collect()
}

fn recording_msg(on: bool, by: AttendeeId) -> ServerMessage {
    ServerMessage::Recording { on, by: Some(by) }
}

#[test]
fn host_starts_and_stops_recording_and_everyone_is_told() {
    let mut s = Sim::new();
    let h = s.join_as("r1", "Hedy", AttendeeRole::Host);
    let g = s.join("r1", "Grace");
    let id_h = s.clients[h].id;
    for c in [h, g] {
        assert!(
            s.clients[c].has_message(
                |m| matches!(m, ServerMessage::Joined { recording, .. } if !recording)
            )
        );
    }

    // Start: one event, and everyone (the host included) is told once.
    let (events, seen) = (
        s.event_log.len(),
        [s.clients[h].messages.len(), s.clients[g].messages.len()],
    );
    s.recording(h, true);
    assert_eq!(
        s.event_log[events..]
            .iter()
            .map(|e| e.kind.clone())
            .collect::<Vec<_>>(),
        vec![MeetingEventKind::RecordingStarted { attendee: id_h }]
    );
    assert_eq!(s.event_log[events].meeting.to_string(), "r1");
    for (c, n) in [(h, seen[0]), (g, seen[1])] {
        assert_eq!(s.clients[c].messages[n..], [recording_msg(true, id_h)]);
    }

    // Starting again changes nothing: no event, only the host hears the current state.
    let (events, seen) = (
        s.event_log.len(),
        [s.clients[h].messages.len(), s.clients[g].messages.len()],
    );
    s.recording(h, true);
    assert_eq!(s.event_log.len(), events, "a no-op emitted an event");
    assert_eq!(
        s.clients[h].messages[seen[0]..],
        [recording_msg(true, id_h)]
    );
    assert_eq!(s.clients[g].messages.len(), seen[1]);

    // Stop: one event, everyone told.
    let seen = [s.clients[h].messages.len(), s.clients[g].messages.len()];
    s.recording(h, false);
    for (c, n) in [(h, seen[0]), (g, seen[1])] {
        assert_eq!(s.clients[c].messages[n..], [recording_msg(false, id_h)]);
    }
    // Stopping again: nothing more on the bus.
    s.recording(h, false);
    assert_eq!(
        recording_events(&s, 0),
        vec![
            MeetingEventKind::RecordingStarted { attendee: id_h },
            MeetingEventKind::RecordingStopped { attendee: id_h },
        ]
    );
}

#[test]
fn a_non_host_cannot_record() {
    let mut s = Sim::new();
    let h = s.join_as("r2", "Hedy", AttendeeRole::Host);
    let g = s.join("r2", "Grace");
    let (events, seen_h, seen_g) = (
        s.event_log.len(),
        s.clients[h].messages.len(),
        s.clients[g].messages.len(),
    );
    s.recording(g, true);
    s.recording(g, false);
    let new = &s.clients[g].messages[seen_g..];
    assert_eq!(new.len(), 2, "{new:?}");
    for m in new {
        assert!(
            matches!(m, ServerMessage::Error { code: ErrorCode::Forbidden, message } if message.contains("host")),
            "{m:?}"
        );
    }
    assert_eq!(
        s.event_log.len(),
        events,
        "a refused request emitted an event"
    );
    assert_eq!(
        s.clients[h].messages.len(),
        seen_h,
        "the host was told something"
    );
    // Still in the meeting, and the meeting is not recording.
    assert_eq!(s.shard.attendee_count(), 2);
    assert!(!s.clients[g].signal.is_closed());
    let late = s.join("r2", "Late");
    assert!(
        s.clients[late]
            .has_message(|m| matches!(m, ServerMessage::Joined { recording, .. } if !recording))
    );
}

#[test]
fn a_late_joiner_learns_the_meeting_is_recording() {
    let mut s = Sim::new();
    let h = s.join_as("r3", "Hedy", AttendeeRole::Host);
    s.recording(h, true);
    let late = s.join("r3", "Late");
    assert!(s.clients[late].has_message(
        |m| matches!(m, ServerMessage::Joined { recording, attendees, .. } if *recording && attendees.len() == 1)
    ));
    // Another meeting on the same shard is not affected.
    let other = s.join("r3b", "Elsewhere");
    assert!(
        s.clients[other]
            .has_message(|m| matches!(m, ServerMessage::Joined { recording, .. } if !recording))
    );
}

#[test]
fn a_meeting_ending_while_recording_stops_the_recording_first() {
    let mut s = Sim::new();
    let h = s.join_as("r4", "Hedy", AttendeeRole::Host);
    let g = s.join("r4", "Grace");
    let id_h = s.clients[h].id;
    s.recording(h, true);
    // The host leaves first: the recording goes on (it is the meeting's, not the host's) ...
    s.leave(h);
    assert_eq!(recording_events(&s, 0).len(), 1);
    assert!(!s.clients[g].has_message(|m| matches!(m, ServerMessage::Recording { on: false, .. })));
    // ... until the meeting ends: then it stops, in the host's name, right before MeetingEnded.
    s.leave(g);
    let tail: Vec<MeetingEventKind> = s
        .event_log
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|e| e.kind.clone())
        .collect();
    assert!(
        matches!(tail[0], MeetingEventKind::AttendeeLeft { .. }),
        "{tail:?}"
    );
    assert_eq!(
        tail[1..],
        [
            MeetingEventKind::RecordingStopped { attendee: id_h },
            MeetingEventKind::MeetingEnded
        ]
    );

    // A meeting that ends not recording emits no RecordingStopped.
    let before = s.event_log.len();
    let h = s.join_as("r5", "Hedy", AttendeeRole::Host);
    s.recording(h, true);
    s.recording(h, false);
    s.leave(h);
    assert_eq!(recording_events(&s, before).len(), 2);
    assert!(matches!(
        s.event_log.last().map(|e| &e.kind),
        Some(MeetingEventKind::MeetingEnded)
    ));
}

#[test]
fn shutdown_while_recording_stops_the_recording_before_the_meeting_ends() {
    let mut s = Sim::new();
    let h = s.join_as("r6", "Hedy", AttendeeRole::Host);
    let id_h = s.clients[h].id;
    s.recording(h, true);
    s.shard
        .handle_command(s.now, convene_media::shard::Command::Shutdown);
    s.pump();
    let tail: Vec<MeetingEventKind> = s
        .event_log
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(
        tail,
        [
            MeetingEventKind::RecordingStopped { attendee: id_h },
            MeetingEventKind::MeetingEnded
        ]
    );
}
