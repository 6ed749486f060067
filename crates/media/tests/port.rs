//! Port attendees (calls the gateway bridges) in the SFU core: they join without WebRTC, their audio
//! reaches browsers through the same forwarding, and browsers' audio reaches their port.

mod sim;

use std::sync::Arc;
use std::time::Duration;

use convene_core::port::{PortDelivery, PortMedia, PortPacket, PortPublication};
use convene_core::{AttendeeId, ClientType, MediaSource, MeetingEventKind};
use convene_media::shard::{Command, PortLink};
use convene_media::signal::messages::ServerMessage;
use sim::Sim;
use tokio::sync::mpsc::Receiver;

/// A port attendee in meeting `meeting`, publishing audio; returns its id and its deliveries.
fn join_port(s: &mut Sim, meeting: &str, queue: usize) -> (AttendeeId, Receiver<PortDelivery>) {
    join_port_with(s, meeting, queue, vec![PortPublication::Audio], false, None)
}

fn join_port_with(
    s: &mut Sim,
    meeting: &str,
    queue: usize,
    publishes: Vec<PortPublication>,
    takes_video: bool,
    downlink_kbps: Option<u32>,
) -> (AttendeeId, Receiver<PortDelivery>) {
    let id = AttendeeId::random();
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    s.command(Command::JoinPort {
        attendee: id,
        meeting: meeting.parse().expect("meeting id"),
        name: "Room 4".into(),
        client: ClientType::Sip,
        publishes,
        port: PortLink {
            deliveries: tx,
            takes_video,
            downlink_kbps,
        },
    });
    (id, rx)
}

/// One H.264 packet of the port's camera: an IDR slice (keyframe) or a P slice.
fn port_video(s: &mut Sim, id: AttendeeId, seq: u16, keyframe: bool) {
    let nal = if keyframe { 0x65 } else { 0x41 };
    let payload: Arc<[u8]> =
        Arc::from(vec![nal, 0x88, 0x84, (seq & 0xff) as u8].into_boxed_slice());
    s.command(Command::PortMedia {
        attendee: id,
        media: PortMedia {
            source: MediaSource::Camera,
            packet: PortPacket {
                seq,
                timestamp: u32::from(seq).wrapping_mul(3000),
                marker: true,
                audio_level: None,
                payload,
            },
        },
    });
}

fn port_audio(s: &mut Sim, id: AttendeeId, seq: u16, level: u8) {
    let payload: Arc<[u8]> = Arc::from(vec![0xfc, 0xee, (seq & 0xff) as u8].into_boxed_slice());
    s.command(Command::PortMedia {
        attendee: id,
        media: PortMedia {
            source: MediaSource::Audio,
            packet: PortPacket {
                seq,
                timestamp: u32::from(seq).wrapping_mul(960),
                marker: false,
                audio_level: Some(level),
                payload,
            },
        },
    });
}

fn drain(rx: &mut Receiver<PortDelivery>) -> Vec<PortDelivery> {
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        out.push(d);
    }
    out
}

#[test]
fn a_port_attendee_hears_browsers_and_is_heard_by_them() {
    let mut s = Sim::new();
    let a = s.join("m1", "Ada");
    s.publish(a);
    s.connect_all();
    let id_a = s.clients[a].id;
    let (port, mut deliveries) = join_port(&mut s, "m1", 512);

    // The browser sees the room arrive as an attendee, and is offered its audio (no camera).
    assert!(s.clients[a].has_message(|m| matches!(m, ServerMessage::AttendeeJoined { attendee } if attendee.attendee_id == port && attendee.name == "Room 4")));
    s.run(Duration::from_millis(200), |_| {});
    let offered: Vec<_> = s.clients[a]
        .sub_tracks
        .iter()
        .filter(|t| t.attendee_id == port)
        .map(|t| t.source)
        .collect();
    assert_eq!(offered, vec![MediaSource::Audio]);

    // Both ways for two seconds: the browser's camera and voice, the room's voice (with a wrap of
    // its 16-bit sequence numbers on the way).
    s.send_video(a, true);
    let mut seq: u16 = 65_500;
    s.run(Duration::from_secs(2), |s| {
        let t = s.ms();
        if t.is_multiple_of(20) {
            s.send_audio(a, -30);
            port_audio(s, port, seq, 25);
            seq = seq.wrapping_add(1);
        }
        if t.is_multiple_of(35) {
            s.send_video(a, false);
        }
    });

    // The browser received the room's audio, in order, payloads intact.
    let heard = s.clients[a].received_from(port, MediaSource::Audio);
    assert!(heard.len() > 80, "browser got {} packets", heard.len());
    assert!(heard.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(heard.iter().all(|r| r.payload[..2] == [0xfc, 0xee]));

    // The port received the browser's audio only (it takes no video), one continuous stream.
    let got = drain(&mut deliveries);
    let audio: Vec<&PortPacket> = got
        .iter()
        .filter_map(|d| match d {
            PortDelivery::Media {
                from,
                source: MediaSource::Audio,
                packet,
            } if *from == id_a => Some(packet),
            _ => None,
        })
        .collect();
    assert!(audio.len() > 80, "port got {} audio packets", audio.len());
    assert_eq!(
        audio.len(),
        got.len(),
        "only audio reaches an audio-only port"
    );
    assert!(
        audio
            .windows(2)
            .all(|w| w[1].seq == w[0].seq.wrapping_add(1))
    );
    assert!(
        audio
            .windows(2)
            .all(|w| w[1].timestamp.wrapping_sub(w[0].timestamp) == 960)
    );
    // The browser's RFC 6464 level (-30 dBov) crosses as 30.
    assert!(audio.iter().all(|p| p.audio_level == Some(30)));
    assert!(audio.iter().all(|p| p.payload[0] == 0xfc));

    // The room's level makes it a speaker for everyone.
    assert!(s.clients[a].has_message(
        |m| matches!(m, ServerMessage::Speaking { attendee_ids } if attendee_ids.contains(&port))
    ));
}

#[test]
fn a_port_attendee_keeps_the_meeting_and_leaves_like_anyone() {
    let mut s = Sim::new();
    let a = s.join("m2", "Ada");
    s.publish(a);
    s.connect_all();
    let (port, _deliveries) = join_port(&mut s, "m2", 16);
    assert!(s.event_log.iter().any(|e| matches!(
        &e.kind,
        MeetingEventKind::AttendeeJoined { attendee, client: ClientType::Sip, .. } if *attendee == port
    )));

    // The browser leaves: the room alone keeps the meeting going (no peers, no consent timeout).
    s.leave(a);
    s.run(Duration::from_secs(30), |_| {});
    assert!(
        !s.event_log
            .iter()
            .any(|e| matches!(e.kind, MeetingEventKind::MeetingEnded))
    );

    // Its leave ends it.
    s.command(Command::Leave { attendee: port });
    assert!(s.event_log.iter().any(|e| matches!(
        &e.kind,
        MeetingEventKind::AttendeeLeft { attendee, .. } if *attendee == port
    )));
    assert!(
        s.event_log
            .iter()
            .any(|e| matches!(e.kind, MeetingEventKind::MeetingEnded))
    );
    // Media for an attendee that left is ignored, not a panic.
    port_audio(&mut s, port, 1, 20);
}

#[test]
fn a_full_port_queue_drops_and_counts_without_stalling_the_meeting() {
    let mut s = Sim::new();
    let a = s.join("m3", "Ada");
    let b = s.join("m3", "Bob");
    s.publish(a);
    s.publish(b);
    s.connect_all();
    let id_a = s.clients[a].id;
    // A queue of 4 that nobody reads.
    let (_port, mut deliveries) = join_port(&mut s, "m3", 4);
    s.run(Duration::from_secs(1), |s| {
        if s.ms().is_multiple_of(20) {
            s.send_audio(a, -30);
        }
    });
    // Bob still hears Ada all along.
    let heard = s.clients[b].received_from(id_a, MediaSource::Audio);
    assert!(heard.len() > 40, "bob got {}", heard.len());
    assert_eq!(drain(&mut deliveries).len(), 4);
    let dropped = s
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "convene_media_packets_dropped_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "port_full"))
        .map(|m| m.get_counter().get_value())
        .sum::<f64>();
    assert!(dropped > 30.0, "dropped {dropped}");
}

#[test]
fn a_video_port_shows_its_h264_camera_and_receives_cameras_and_keyframe_requests() {
    let mut s = Sim::new();
    let a = s.join("m4", "Ada");
    s.publish(a);
    s.connect_all();
    let id_a = s.clients[a].id;
    let (port, mut deliveries) = join_port_with(
        &mut s,
        "m4",
        2048,
        vec![
            PortPublication::Audio,
            PortPublication::H264Camera {
                profile_level_id: Some("42e01f".into()),
            },
        ],
        true,
        None,
    );
    s.run(Duration::from_millis(200), |_| {});
    // The browser is offered the room's audio and camera.
    let mut offered: Vec<_> = s.clients[a]
        .sub_tracks
        .iter()
        .filter(|t| t.attendee_id == port)
        .map(|t| t.source)
        .collect();
    offered.sort_by_key(|source| source.index());
    assert_eq!(offered, vec![MediaSource::Audio, MediaSource::Camera]);
    // The browser's subscription asked the room for a keyframe, through the port.
    let early = drain(&mut deliveries);
    assert!(
        early.iter().any(|d| matches!(
            d,
            PortDelivery::KeyframeRequest {
                source: MediaSource::Camera
            }
        )),
        "{early:?}"
    );

    // The room's H.264 (a keyframe first) reaches the browser; the browser's camera reaches the room.
    let mut seq: u16 = 1;
    s.send_video(a, true);
    s.run(Duration::from_secs(2), |s| {
        let t = s.ms();
        if t.is_multiple_of(35) {
            port_video(s, port, seq, seq == 1);
            seq += 1;
            s.send_video(a, false);
        }
    });
    let shown = s.clients[a].received_from(port, MediaSource::Camera);
    assert!(
        shown.len() > 40,
        "browser got {} video packets",
        shown.len()
    );
    assert_eq!(shown[0].payload[0], 0x65, "starts on the keyframe");
    let got = drain(&mut deliveries);
    let cameras = got
        .iter()
        .filter(|d| matches!(d, PortDelivery::Media { from, source: MediaSource::Camera, .. } if *from == id_a))
        .count();
    assert!(cameras > 40, "port got {cameras} camera packets");

    // The room asks for a keyframe of the browser's camera: the publisher is asked (past the
    // per-layer throttle, and nothing else asking meanwhile).
    s.run(Duration::from_millis(400), |_| {});
    let requests_before = s.clients[a].publish.as_ref().unwrap().keyframe_requests;
    s.command(Command::PortKeyframeRequest {
        from: id_a,
        source: MediaSource::Camera,
    });
    s.run(Duration::from_millis(100), |_| {});
    assert!(s.clients[a].publish.as_ref().unwrap().keyframe_requests > requests_before);
}

#[test]
fn a_room_that_asks_for_less_gets_the_simulcast_layer_that_fits() {
    let mut s = Sim::new();
    let a = s.join("m5", "Ada");
    s.publish_with(a, &["h", "l"]);
    s.connect_all();
    let id_a = s.clients[a].id;
    // Its offer said 80 kbps (e.g. max-fs of a small screen); another room said nothing.
    let (_small, mut small) = join_port_with(
        &mut s,
        "m5",
        4096,
        vec![PortPublication::Audio],
        true,
        Some(80),
    );
    let (_big, mut big) =
        join_port_with(&mut s, "m5", 4096, vec![PortPublication::Audio], true, None);
    // "h" is about 91 kbps and "l" about 37 kbps in the sim.
    s.run(Duration::from_millis(3000), |s| {
        let keyframe = s.ms().is_multiple_of(500);
        if keyframe || s.ms().is_multiple_of(35) {
            s.send_video_layer(a, Some("l"), keyframe);
            s.send_video_layer(a, Some("h"), keyframe);
        }
    });
    let layers = |rx: &mut Receiver<PortDelivery>| -> Vec<(u16, u8)> {
        drain(rx)
            .into_iter()
            .filter_map(|d| match d {
                PortDelivery::Media {
                    from,
                    source: MediaSource::Camera,
                    packet,
                } if from == id_a => Some((packet.seq, packet.payload[3])),
                _ => None,
            })
            .collect()
    };
    let small = layers(&mut small);
    let big = layers(&mut big);
    assert!(
        small.len() > 20 && big.len() > 20,
        "{} {}",
        small.len(),
        big.len()
    );
    assert!(
        small.iter().rev().take(10).all(|&(_, l)| l == b'l'),
        "{small:?}"
    );
    assert!(
        big.iter().rev().take(10).all(|&(_, l)| l == b'h'),
        "{big:?}"
    );
    // One continuous stream for the capped room across its switch down.
    assert!(small.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1)));
}
