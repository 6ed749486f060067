//! What an IVR caller hears and when, through the sans-IO core in simulated time: the prompts the
//! core asks for ([`Event::Prompt`]) in order, and the goodbye's BYE held back until the goodbye has
//! been heard.

mod common;

use std::time::Duration;

use common::*;
use convene_gateway::audio::Prompt;
use convene_gateway::call::{EndReason, Event, GOODBYE_TAIL};
use convene_gateway::door::Refused;

const MS: Duration = Duration::from_millis(1);

/// An IVR call dialled as `user`, answered and acknowledged; returns (invite, our tag, call).
fn ivr_call(h: &mut Harness, user: &str, call_id: &str) -> (Req, String, u64) {
    let invite = Req::invite(user, call_id);
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20100, None);
    let tag = to_tag(&h.take_sent()[0]);
    assert!(
        prompts(&h.take_events()).is_empty(),
        "nothing is said before the ACK: the device may not play our audio yet"
    );
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    (invite, tag, call)
}

/// The prompts among `events`, in order, each checked to be for one call.
fn prompts(events: &[Event]) -> Vec<Prompt> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Prompt { prompt, .. } => Some(*prompt),
            _ => None,
        })
        .collect()
}

/// Keys pressed by SIP INFO, from CSeq `*cseq` on.
fn press(h: &mut Harness, invite: &Req, tag: &str, cseq: &mut u32, keys: &str) {
    for d in keys.chars() {
        let info = Req::in_dialog(invite, "INFO", *cseq, tag)
            .body("application/dtmf-relay", &format!("Signal={d}\r\n"));
        *cseq += 1;
        h.recv(udp_peer(5090), &info.text());
    }
}

fn entered(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::IvrEntered { meeting_id, .. } => Some(meeting_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_ivr_welcomes_asks_again_and_says_joining_in_order() {
    let mut h = Harness::new();
    let (invite, tag, call) = ivr_call(&mut h, "meet", "p1");
    let events = h.take_events();
    assert_eq!(
        events,
        vec![Event::Prompt {
            call,
            prompt: Prompt::EnterMeetingId
        }]
    );
    // A retransmitted ACK does not welcome the caller twice.
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    assert!(prompts(&h.take_events()).is_empty());

    let mut cseq = 2;
    // Not 10 digits: try again.
    press(&mut h, &invite, &tag, &mut cseq, "12345#");
    assert_eq!(prompts(&h.take_events()), vec![Prompt::TryAgain]);
    // An unknown meeting: try again.
    press(&mut h, &invite, &tag, &mut cseq, "1111111111#");
    assert_eq!(entered(&h.take_events()), vec!["1111111111".to_owned()]);
    h.gw.ivr_refused(h.now, call, &Refused::UnknownMeeting);
    h.drain();
    assert_eq!(prompts(&h.take_events()), vec![Prompt::TryAgain]);
    // The right ID, admitted: the call joins, then hears that it is joining.
    press(&mut h, &invite, &tag, &mut cseq, "1234567890#");
    assert_eq!(entered(&h.take_events()), vec!["1234567890".to_owned()]);
    h.gw.ivr_admitted(call, grant("1234567890"));
    h.drain();
    let events = h.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Joined { call: c, .. },
                Event::Prompt { call: p, prompt: Prompt::Joining },
            ] if *c == call && *p == call
        ),
        "{events:?}"
    );
    // In the meeting, keys are only keys, and the call stays up.
    press(&mut h, &invite, &tag, &mut cseq, "#");
    h.advance(Duration::from_secs(60));
    let events = h.take_events();
    assert!(prompts(&events).is_empty(), "{events:?}");
    assert_eq!(h.gw.calls(), 1);
}

#[test]
fn silence_is_asked_again_with_the_welcome_not_told_not_found() {
    let mut h = Harness::new();
    let (_, _, call) = ivr_call(&mut h, "u", "p2");
    h.take_events();
    h.advance(Duration::from_secs(30) - MS);
    assert!(h.take_events().is_empty());
    h.advance(MS);
    assert_eq!(
        h.take_events(),
        vec![Event::Prompt {
            call,
            prompt: Prompt::EnterMeetingId
        }]
    );
}

#[test]
fn the_goodbye_bye_waits_until_the_goodbye_has_been_heard() {
    let mut h = Harness::new();
    let (invite, tag, call) = ivr_call(&mut h, "meet", "p3");
    let mut cseq = 2;
    let mut heard = prompts(&h.take_events());
    for _ in 0..3 {
        press(&mut h, &invite, &tag, &mut cseq, "9999999999#");
        assert_eq!(entered(&h.take_events()).len(), 1);
        h.gw.ivr_refused(h.now, call, &Refused::UnknownMeeting);
        h.drain();
        heard.extend(prompts(&h.take_events()));
    }
    assert_eq!(
        heard,
        vec![
            Prompt::EnterMeetingId,
            Prompt::TryAgain,
            Prompt::TryAgain,
            Prompt::GoodbyeNotFound
        ]
    );
    // The goodbye starts now; the BYE goes when it and its tail are over, not before.
    let bye_in = Prompt::GoodbyeNotFound.duration() + GOODBYE_TAIL;
    h.take_sent();
    assert_eq!(h.gw.snapshot(h.now)[0].state, "ivr");
    // Keys during the goodbye are too late: nothing is checked.
    press(&mut h, &invite, &tag, &mut cseq, "1234567890#");
    let events = h.take_events();
    assert!(entered(&events).is_empty(), "{events:?}");
    assert!(
        h.take_sent().iter().all(|m| status(m) == 200),
        "INFO is answered"
    );
    h.advance(bye_in - MS);
    assert!(h.take_sent().is_empty(), "no BYE while the goodbye plays");
    assert_eq!(h.gw.calls(), 1);
    h.advance(MS);
    let sent = h.take_sent();
    assert!(
        matches!(sent.as_slice(), [bye] if bye.starts_with("BYE ")),
        "{sent:?}"
    );
    assert_eq!(
        h.take_events(),
        vec![Event::Ended {
            call,
            reason: EndReason::IvrGaveUp
        }]
    );
    assert_eq!(h.gw.calls(), 0);
    assert_eq!(
        h.metrics
            .calls_ended
            .with_label_values(&["ivr_gave_up"])
            .get(),
        1
    );
}

#[test]
fn a_caller_who_hangs_up_during_the_goodbye_gets_no_bye() {
    let config = convene_gateway::Config {
        ivr_tries: 1,
        ..Harness::new_config()
    };
    let mut h = Harness::with_config(config);
    let (invite, tag, call) = ivr_call(&mut h, "meet", "p4");
    let mut cseq = 2;
    press(&mut h, &invite, &tag, &mut cseq, "12#");
    assert_eq!(
        prompts(&h.take_events()),
        vec![Prompt::EnterMeetingId, Prompt::GoodbyeNotFound]
    );
    h.take_sent();
    h.advance(Duration::from_secs(1));
    h.recv(
        udp_peer(5090),
        &Req::in_dialog(&invite, "BYE", cseq, &tag).text(),
    );
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(
        h.take_events(),
        vec![Event::Ended {
            call,
            reason: EndReason::HungUp
        }]
    );
    h.advance(Duration::from_secs(10));
    assert!(h.take_sent().is_empty(), "nothing left to hang up");
    assert!(h.take_events().is_empty());
}

#[test]
fn a_late_offer_ivr_call_is_welcomed_at_the_ack_that_answers() {
    let mut h = Harness::new();
    let invite = Req::invite("meet", "p5").no_body();
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20102, None);
    let tag = to_tag(&h.take_sent()[0]);
    let mut answer = Req::in_dialog(&invite, "ACK", 1, &tag).body("application/sdp", AUDIO_OFFER);
    answer.branch = "z9hG4bK-p5-ack".into();
    h.recv(udp_peer(5090), &answer.text());
    assert_eq!(
        h.take_events(),
        vec![Event::Prompt {
            call,
            prompt: Prompt::EnterMeetingId
        }]
    );

    // Without a usable answer the call ends at once: nobody to speak to.
    let invite = Req::invite("meet", "p6").no_body();
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20104, None);
    let tag = to_tag(&h.take_sent()[0]);
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    assert_eq!(
        h.take_events(),
        vec![Event::Ended {
            call,
            reason: EndReason::NoAnswer
        }]
    );
}

#[test]
fn an_unknown_meeting_dialled_by_uri_is_refused_not_answered_with_a_prompt() {
    // Kept on purpose (docs/sip.md): before answering, a 404 with a reason phrase is what a room
    // system shows its user best, and refusing costs no RTP port or media task.
    let mut h = Harness::new();
    let invite = Req::invite("1111111111", "p7");
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.gw.refuse_admission(h.now, call, &Refused::UnknownMeeting);
    h.drain();
    let sent = h.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 404 Unknown Meeting ID\r\n"),
        "{sent:?}"
    );
    let events = h.take_events();
    assert!(prompts(&events).is_empty(), "{events:?}");
    assert!(events.contains(&Event::Ended {
        call,
        reason: EndReason::Refused
    }));
}
