//! Remote control through the shard: request, grant, the relayed data channel flow at its fixed rate,
//! and the refusals the guide describes, with in-process str0m peers in simulated time.

mod sim;

use std::time::Duration;

use convene_core::AttendeeRole;
use convene_media::shard::Command;
use convene_media::signal::messages::{ErrorCode, ServerMessage};
use sim::Sim;

/// Ada shares her screen (her token allows control only if `allow`); Bob and Cy watch.
fn sharing(allow: bool) -> (Sim, usize, usize, usize) {
    let mut s = Sim::new();
    let ada = s.join_with("m-rc", "Ada", AttendeeRole::Attendee, allow);
    let bob = s.join("m-rc", "Bob");
    let cy = s.join("m-rc", "Cy");
    s.publish(ada);
    s.connect_all();
    s.republish(ada, &["audio", "screen"]);
    s.run(Duration::from_millis(200), |_| {});
    (s, ada, bob, cy)
}

fn request(s: &mut Sim, from: usize, sharer: usize) {
    let (attendee, sharer) = (s.clients[from].id, s.clients[sharer].id);
    s.command(Command::RemoteControlRequest { attendee, sharer });
}

fn answer(s: &mut Sim, sharer: usize, controller: usize, granted: bool) {
    let (attendee, controller) = (s.clients[sharer].id, s.clients[controller].id);
    s.command(Command::RemoteControlAnswer {
        attendee,
        controller,
        granted,
    });
}

fn control_state(s: &Sim, c: usize) -> Option<(bool, convene_core::AttendeeId)> {
    s.clients[c].messages.iter().rev().find_map(|m| match m {
        ServerMessage::RemoteControl {
            active,
            controller_id,
            ..
        } => Some((*active, *controller_id)),
        _ => None,
    })
}

/// Grant Bob control of Ada's screen and wait for both data channels.
fn granted() -> (Sim, usize, usize, usize) {
    let (mut s, ada, bob, cy) = sharing(true);
    request(&mut s, bob, ada);
    answer(&mut s, ada, bob, true);
    let open = s.run_until(
        Duration::from_secs(5),
        |_| {},
        |s| {
            [ada, bob, cy].iter().all(|&c| {
                s.clients[c]
                    .subscribe
                    .as_ref()
                    .is_some_and(|p| p.connected && p.channel.is_some())
            })
        },
    );
    assert!(open, "the data channels did not open");
    (s, ada, bob, cy)
}

#[test]
fn the_sharer_is_asked_and_a_grant_is_announced_to_everyone() {
    let (mut s, ada, bob, cy) = sharing(true);
    let bob_id = s.clients[bob].id;
    request(&mut s, bob, ada);
    assert!(s.clients[ada].has_message(|m| matches!(m,
        ServerMessage::RemoteControlRequest { attendee_id, name } if *attendee_id == bob_id && name == "Bob")));
    // Nobody else hears of the request.
    assert!(
        !s.clients[cy].has_message(|m| matches!(m, ServerMessage::RemoteControlRequest { .. }))
    );

    answer(&mut s, ada, bob, true);
    for c in [ada, bob, cy] {
        assert_eq!(control_state(&s, c), Some((true, bob_id)), "client {c}");
    }
    // Granting again what nobody asked for is refused.
    answer(&mut s, ada, cy, true);
    assert!(s.clients[ada].has_message(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::InvalidField,
            ..
        }
    )));
    // One controller at a time.
    request(&mut s, cy, ada);
    assert!(s.clients[cy].has_message(|m| matches!(m,
        ServerMessage::Error { code: ErrorCode::RemoteControlUnavailable, message } if message.contains("already"))));
}

#[test]
fn a_declined_request_tells_the_requester_only() {
    let (mut s, ada, bob, cy) = sharing(true);
    let ada_id = s.clients[ada].id;
    request(&mut s, bob, ada);
    answer(&mut s, ada, bob, false);
    assert!(s.clients[bob].has_message(
        |m| matches!(m, ServerMessage::RemoteControlDeclined { attendee_id } if *attendee_id == ada_id)
    ));
    assert_eq!(control_state(&s, cy), None);
}

#[test]
fn where_policy_forbids_it_the_requester_gets_a_clear_error() {
    let (mut s, ada, bob, cy) = sharing(false);
    request(&mut s, bob, ada);
    assert!(s.clients[bob].has_message(|m| matches!(m,
        ServerMessage::Error { code: ErrorCode::RemoteControlUnavailable, message }
            if message.starts_with("remote control isn't available") && message.contains("organisation"))));
    assert!(
        !s.clients[ada].has_message(|m| matches!(m, ServerMessage::RemoteControlRequest { .. }))
    );
    // Nor can anyone ask for a screen that is not being shared.
    request(&mut s, bob, cy);
    assert!(s.clients[bob].has_message(|m| matches!(m,
        ServerMessage::Error { code: ErrorCode::RemoteControlUnavailable, message } if message.contains("not sharing"))));
}

#[test]
fn the_controllers_events_reach_the_sharer_and_nobody_elses_do() {
    let (mut s, ada, bob, cy) = granted();
    assert!(s.channel_send(bob, b"pointer 0.25 0.75"));
    s.run(Duration::from_millis(100), |_| {});
    let got = &s.clients[ada].subscribe.as_ref().unwrap().channel_messages;
    assert_eq!(got, &vec![b"pointer 0.25 0.75".to_vec()]);

    // Cy is not controlling: dropped and counted.
    let dropped = s.metrics.dropped_total();
    assert!(s.channel_send(cy, b"pointer 0.5 0.5"));
    s.run(Duration::from_millis(100), |_| {});
    assert_eq!(
        s.clients[ada]
            .subscribe
            .as_ref()
            .unwrap()
            .channel_messages
            .len(),
        1
    );
    assert!(s.metrics.dropped_total() > dropped);
    // Bob's own channel never echoes anything back.
    assert!(
        s.clients[bob]
            .subscribe
            .as_ref()
            .unwrap()
            .channel_messages
            .is_empty()
    );
}

#[test]
fn the_flow_is_held_to_its_fixed_rate() {
    let (mut s, ada, bob, _) = granted();
    // 100 kB at once: far over a quarter second of 800 kbps (25 kB).
    for i in 0..100u8 {
        s.channel_send(bob, &[i; 1000]);
    }
    s.run(Duration::from_millis(50), |_| {});
    let relayed = s.clients[ada]
        .subscribe
        .as_ref()
        .unwrap()
        .channel_messages
        .len();
    assert!((20..=30).contains(&relayed), "{relayed} kB relayed at once");
    // Paced sends (1 kB every 20 ms = 400 kbps) all pass.
    let before = relayed;
    s.run(Duration::from_millis(1000), |s| {
        if s.ms().is_multiple_of(20) {
            s.channel_send(bob, &[7; 1000]);
        }
    });
    s.run(Duration::from_millis(100), |_| {});
    let paced = s.clients[ada]
        .subscribe
        .as_ref()
        .unwrap()
        .channel_messages
        .len()
        - before;
    assert_eq!(paced, 50);
}

#[test]
fn stopping_or_ending_the_share_ends_control() {
    let (mut s, ada, bob, cy) = granted();
    let bob_id = s.clients[bob].id;
    // While controlled, the sharer's downlink holds the fixed 800 kbps flow: media gets the rest. (Bob
    // publishes so that Ada's connection carries media and has an estimate to hold it from.)
    s.publish(bob);
    s.connect_all();
    let bob_media = move |s: &mut Sim| {
        if s.ms().is_multiple_of(35) {
            let frame = (s.ms() / 35) as u32;
            s.send_frame(bob, None, frame, frame % 30 == 1, 1500);
        }
        if s.ms().is_multiple_of(20) {
            s.send_audio(bob, -30);
        }
    };
    s.run(Duration::from_millis(2000), bob_media);
    let held = s
        .lowest_downlink_budget_kbps()
        .expect("a budget is reported");
    let attendee = s.clients[bob].id;
    s.command(Command::RemoteControlStop { attendee });
    s.run(Duration::from_millis(1200), bob_media);
    let freed = s
        .lowest_downlink_budget_kbps()
        .expect("a budget is reported");
    // held = estimate - 800 (at least 0), freed = estimate; 200 kbps for the estimate's own drift.
    assert!(
        held + 800 <= freed + 200,
        "budget {held} kbps under control, {freed} after"
    );
    for c in [ada, bob, cy] {
        assert_eq!(control_state(&s, c), Some((false, bob_id)));
    }
    assert!(s.channel_send(bob, b"late"));
    s.run(Duration::from_millis(100), |_| {});
    assert!(
        s.clients[ada]
            .subscribe
            .as_ref()
            .unwrap()
            .channel_messages
            .is_empty()
    );

    // Granted again, then Ada stops sharing her screen: control ends with it.
    request(&mut s, bob, ada);
    answer(&mut s, ada, bob, true);
    assert_eq!(control_state(&s, cy), Some((true, bob_id)));
    s.republish(ada, &["audio"]);
    assert_eq!(control_state(&s, cy), Some((false, bob_id)));
}
