//! Forwarding on the fast path (`ShardConfig::fast_path`): the shard writes, numbers and protects
//! subscribers' RTP itself, and its own estimator reads their transport-wide feedback. The subscribers
//! are str0m peers, an implementation independent of the fast path's header writing and SRTP: what they
//! decode is what a browser would.

mod sim;

use std::time::Duration;

use convene_core::MediaSource;
use sim::Sim;

fn media(s: &mut Sim, publishers: &[usize]) {
    let t = s.ms();
    for &c in publishers {
        if t.is_multiple_of(35) {
            s.send_video(c, false);
        }
        if t.is_multiple_of(20) {
            s.send_audio(c, -30);
        }
    }
}

#[test]
fn subscribers_decode_what_the_fast_path_sends_and_its_estimator_hears_back() {
    let mut s = Sim::with_config(|c| c.fast_path = true);
    let a = s.join("fast", "Ada");
    let b = s.join("fast", "Bob");
    s.publish(a);
    s.publish(b);
    s.connect_all();
    let (id_a, id_b) = (s.clients[a].id, s.clients[b].id);
    s.send_video(a, true);
    s.send_video(b, true);
    s.run(Duration::from_secs(3), |s| media(s, &[a, b]));

    let (connections, packets, feedbacks) = s.shard.fast_egress_counts();
    assert_eq!(
        connections, 2,
        "both subscribe connections on the fast path"
    );
    for (c, from, from_index) in [(a, id_b, b), (b, id_a, a)] {
        s.assert_decoded_from(c, from, from_index, 60, 120);
    }
    // Everything the subscribers decoded came through the fast path: str0m sent no RTP.
    let decoded: usize = [a, b]
        .iter()
        .map(|&c| {
            s.clients[c]
                .subscribe
                .as_ref()
                .map_or(0, |p| p.received.len())
        })
        .sum();
    assert!(
        packets as usize >= decoded,
        "{packets} sent, {decoded} decoded"
    );
    // The subscribers' str0m sends transport-wide feedback every ~100 ms: the estimator heard it.
    assert!(feedbacks >= 20, "{feedbacks} feedback reports");
    // Sender reports (SRTCP, our own) reached the subscribers: str0m read each media stream's packet
    // count from them, close to what it received.
    for c in [a, b] {
        let peer = s.clients[c].subscribe.as_ref().expect("subscribed");
        assert_eq!(
            peer.sender_reported.len(),
            2,
            "reports for audio and camera: {:?}",
            peer.sender_reported
        );
        for (mid, reported) in &peer.sender_reported {
            let received = peer.received.iter().filter(|p| p.mid == *mid).count() as u64;
            assert!(
                *reported > 0 && reported.abs_diff(received) <= 60,
                "{mid}: reported {reported}, received {received}"
            );
        }
    }
    // Operators see it in the metrics.
    s.shard.flush_metrics();
    assert_eq!(s.metrics.fast_media.get(), packets);
    // And the allocation spends the fast path's estimate.
    assert!(s.lowest_downlink_budget_kbps().is_some_and(|k| k > 0));
}

/// Publishers' media is received on the fast path too: decrypted, routed and forwarded without str0m,
/// with the feedback str0m used to give the publisher written by us. The publisher is a str0m peer
/// with its send-side estimator on, so what it makes of our transport-wide feedback is checked by an
/// independent implementation; a datagram lost on its way in is asked for (NACK) and repaired (RTX).
#[test]
fn publishers_media_arrives_on_the_fast_path_with_feedback_and_repair() {
    let mut s = Sim::with_config(|c| c.fast_path = true);
    s.publisher_bwe = true;
    let a = s.join("fast-in", "Ada");
    let b = s.join("fast-in", "Bob");
    s.publish(a);
    s.publish(b);
    s.connect_all();
    let id_a = s.clients[a].id;
    s.send_video(a, true);
    s.run(Duration::from_secs(2), |s| media(s, &[a, b]));

    let (connections, received, feedbacks, _) = s.shard.fast_ingress_counts();
    assert_eq!(connections, 2, "both publish connections on the fast path");
    assert!(
        received > 100,
        "only {received} packets received on the fast path"
    );
    assert!(
        feedbacks >= 20,
        "{feedbacks} transport-wide feedback reports"
    );
    // str0m's estimator on the publisher side read our feedback and estimated from it.
    let estimates = &s.clients[a].publish.as_ref().expect("published").estimates;
    assert!(
        !estimates.is_empty(),
        "the publisher made no estimate from our feedback"
    );
    s.assert_decoded_from(b, id_a, a, 40, 80);

    // Lose one of Ada's video datagrams on its way to the server.
    let ada_pub = s.clients[a].publish.as_ref().unwrap().addr;
    let server = s.server;
    let lost = std::rc::Rc::new(std::cell::Cell::new(None::<u16>));
    let flag = lost.clone();
    s.drop_filter = Some(Box::new(move |from, to, bytes| {
        let video_rtp = bytes.len() > 150 && bytes[0] >> 6 == 2 && bytes[1] & 0x7f == 96;
        if from == ada_pub && to == server && video_rtp && flag.get().is_none() {
            flag.set(Some(u16::from_be_bytes([bytes[2], bytes[3]])));
            return true;
        }
        false
    }));
    let before = s.clients[b].received_from(id_a, MediaSource::Camera).len();
    s.run(Duration::from_secs(2), |s| media(s, &[a, b]));
    assert!(lost.get().is_some(), "the test dropped nothing");
    let (_, _, _, nacks) = s.shard.fast_ingress_counts();
    assert!(nacks >= 1, "the server asked the publisher for nothing");
    // Bob got every packet of Ada's camera since, the lost one included (repaired by RTX).
    let video = s.clients[b].received_from(id_a, MediaSource::Camera);
    sim::assert_no_gap(&video[before..], "a packet is still missing after NACK/RTX");
    s.shard.flush_metrics();
    assert!(s.metrics.fast_received.get() >= received);
}
