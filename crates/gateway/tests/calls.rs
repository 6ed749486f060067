//! The gateway core driven through whole calls in simulated time: transactions and their timers,
//! dialogs, CANCEL races, session timers, the dial plan and the DTMF IVR.

mod common;

use std::time::Duration;

use common::*;
use convene_gateway::audio::Prompt;
use convene_gateway::call::{EndReason, Event, GOODBYE_TAIL};
use convene_gateway::dialplan::Dial;
use convene_gateway::door::Refused;

const T1: Duration = Duration::from_millis(500);

/// INVITE to a meeting ID, admitted, answered; returns (invite, our tag, call).
fn answered_call(h: &mut Harness, call_id: &str) -> (Req, String, u64) {
    let invite = Req::invite("1234567890", call_id);
    h.recv(udp_peer(5090), &invite.text());
    assert_eq!(h.statuses(), vec![100]);
    let call = h.incoming_call();
    h.accept(call, 20000, Some(grant("1234567890")));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0]), 200);
    let tag = to_tag(&sent[0]);
    (invite, tag, call)
}

#[test]
fn options_is_answered_with_what_we_take() {
    let mut h = Harness::new();
    h.recv(udp_peer(5090), &Req::options().text());
    let sent = h.take_sent();
    assert_eq!(status(&sent[0]), 200);
    assert!(header(&sent[0], "Allow").unwrap().contains("INVITE"));
    assert!(header(&sent[0], "Allow").unwrap().contains("INFO"));
    assert!(
        header(&sent[0], "Accept")
            .unwrap()
            .contains("application/sdp")
    );
    assert!(
        header(&sent[0], "Accept")
            .unwrap()
            .contains("application/dtmf-relay")
    );
    assert!(header(&sent[0], "Via").unwrap().contains("branch="));
}

#[test]
fn invite_to_a_meeting_id_is_admitted_answered_and_hung_up() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "c1");
    h.recv(udp_peer(5090), &invite.text());
    assert_eq!(h.statuses(), vec![100]);
    let events = h.take_events();
    let Event::Incoming {
        call, dial, caller, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(dial, &Dial::Meeting("1234567890".into()));
    assert_eq!(caller, "Tandberg C20");
    h.accept(*call, 20000, Some(grant("1234567890")));
    let ok = h.take_sent().remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(header(&ok, "Contact"), Some("<sip:convene@127.0.0.1:5060>"));
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
    assert!(
        body(&ok).contains("m=audio 20000 RTP/AVP 0 101\r\n"),
        "{ok}"
    );
    assert!(body(&ok).contains("a=fmtp:101 0-15\r\n"));
    assert!(matches!(h.take_events()[0], Event::Joined { .. }));
    let tag = to_tag(&ok);

    // The 200 OK is retransmitted (T1, 2*T1, ...) until the ACK.
    h.advance(T1 + Duration::from_millis(1));
    assert_eq!(h.statuses(), vec![200]);
    h.advance(2 * T1);
    assert_eq!(h.statuses(), vec![200]);
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    h.advance(Duration::from_secs(10));
    assert!(h.take_sent().is_empty());

    // A retransmitted INVITE is absorbed: the 200 goes out again, no second call.
    h.recv(udp_peer(5090), &invite.text());
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.take_events().is_empty());

    let bye = Req::in_dialog(&invite, "BYE", 2, &tag);
    h.recv(udp_peer(5090), &bye.text());
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(
        h.take_events(),
        vec![Event::Ended {
            call: *call,
            reason: EndReason::HungUp
        }]
    );
    assert_eq!(h.gw.calls(), 0);
    // Its retransmission gets the same answer from the transaction, not a 481.
    h.recv(udp_peer(5090), &bye.text());
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn an_unacknowledged_200_is_retransmitted_then_the_call_ends_with_bye() {
    let mut h = Harness::new();
    let (_invite, _tag, call) = answered_call(&mut h, "noack");
    h.take_events();
    let mut retransmits = 0;
    let mut bye = None;
    for _ in 0..80 {
        h.advance(Duration::from_millis(500));
        for m in h.take_sent() {
            match status(&m) {
                200 => retransmits += 1,
                0 => bye = Some(m),
                s => panic!("unexpected {s}"),
            }
        }
    }
    // T1 doubling to T2 (4 s) over 64*T1 (32 s): 0.5, 1, 2, 4, 4, ... = 10 sends, give or take.
    assert!((8..=11).contains(&retransmits), "{retransmits}");
    let bye = bye.expect("a BYE after the ACK timeout");
    assert!(
        bye.starts_with("BYE sip:room@127.0.0.1:5090 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(header(&bye, "CSeq").unwrap().ends_with("BYE"));
    assert!(h.take_events().contains(&Event::Ended {
        call,
        reason: EndReason::NoAck
    }));
}

#[test]
fn cancel_before_the_answer_gets_487_and_a_late_admission_is_ignored() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "cancel");
    h.recv(udp_peer(5090), &invite.text());
    assert_eq!(h.statuses(), vec![100]);
    let call = h.incoming_call();
    let mut cancel = Req::in_dialog(&invite, "CANCEL", 1, "x");
    cancel.to_tag = None;
    cancel.branch = invite.branch.clone();
    cancel.uri = invite.uri.clone();
    h.recv(udp_peer(5090), &cancel.no_body().text());
    let sent = h.take_sent();
    assert_eq!(
        sent.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec![200, 487]
    );
    assert!(header(&sent[0], "CSeq").unwrap().ends_with("CANCEL"));
    assert!(header(&sent[1], "CSeq").unwrap().ends_with("INVITE"));
    assert_eq!(
        h.take_events(),
        vec![Event::Ended {
            call,
            reason: EndReason::Cancelled
        }]
    );
    // The race: admission answers after the CANCEL. Nothing is sent.
    h.accept(call, 20000, Some(grant("1234567890")));
    assert!(h.take_sent().is_empty());

    // The 487 is retransmitted (timer G) until the ACK, which is absorbed.
    h.advance(T1 + Duration::from_millis(1));
    assert_eq!(h.statuses(), vec![487]);
    let tag = to_tag(&sent[1]);
    h.recv(udp_peer(5090), &ack_non2xx(&invite, &tag));
    h.advance(Duration::from_secs(40));
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
}

#[test]
fn cancel_after_the_answer_changes_nothing() {
    let mut h = Harness::new();
    let (invite, tag, _call) = answered_call(&mut h, "latecancel");
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    let mut cancel = Req::in_dialog(&invite, "CANCEL", 1, "x");
    cancel.to_tag = None;
    cancel.branch = invite.branch.clone();
    h.recv(udp_peer(5090), &cancel.no_body().text());
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(h.gw.calls(), 1);
}

#[test]
fn non_2xx_over_tcp_is_not_retransmitted_and_contact_names_tcp() {
    let mut h = Harness::new();
    let mut invite = Req::invite("1234567890", "tcp1");
    invite.transport = "TCP";
    h.recv(tcp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.gw.refuse_admission(h.now, call, &Refused::UnknownMeeting);
    while let Some(o) = h.gw.poll_output() {
        if let convene_gateway::Output::Transmit { bytes, .. } = o {
            let m = String::from_utf8(bytes).unwrap();
            if status(&m) == 404 {
                assert!(m.starts_with("SIP/2.0 404 Unknown Meeting ID\r\n"), "{m}");
            }
        }
    }
    h.sent.clear();
    h.advance(Duration::from_secs(40));
    assert!(h.take_sent().is_empty(), "no retransmissions on TCP");

    let mut invite = Req::invite("1234567890", "tcp2");
    invite.transport = "TCP";
    h.recv(tcp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20002, Some(grant("1234567890")));
    let ok = h.take_sent().remove(0);
    assert_eq!(
        header(&ok, "Contact"),
        Some("<sip:convene@127.0.0.1:5060;transport=tcp>")
    );
}

#[test]
fn unknown_user_gets_404_with_a_reason() {
    let mut h = Harness::new();
    h.recv(udp_peer(5090), &Req::invite("alice", "u1").text());
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("SIP/2.0 404 No Such Meeting"),
        "{}",
        sent[0]
    );
    assert!(header(&sent[0], "To").unwrap().contains("tag="));
    assert!(h.take_events().is_empty());
}

#[test]
fn in_dialog_requests_for_unknown_dialogs_get_481_and_other_methods_405() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "ghost");
    h.recv(
        udp_peer(5090),
        &Req::in_dialog(&invite, "BYE", 2, "nope").text(),
    );
    assert_eq!(h.statuses(), vec![481]);
    let mut reg = Req::options();
    reg.method = "REGISTER";
    h.recv(udp_peer(5090), &reg.text());
    let sent = h.take_sent();
    assert_eq!(status(&sent[0]), 405);
    assert!(header(&sent[0], "Allow").is_some());
}

#[test]
fn info_dtmf_and_picture_fast_update_are_accepted() {
    let mut h = Harness::new();
    let (invite, tag, call) = answered_call(&mut h, "info");
    h.take_events();
    let info = Req::in_dialog(&invite, "INFO", 2, &tag)
        .body("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n");
    h.recv(udp_peer(5090), &info.text());
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(h.take_events(), vec![Event::Dtmf { call, digit: '5' }]);
    let fir = Req::in_dialog(&invite, "INFO", 3, &tag).body(
        "application/media_control+xml",
        "<?xml version=\"1.0\"?><media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>",
    );
    h.recv(udp_peer(5090), &fir.text());
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(h.take_events(), vec![Event::KeyframeRequested { call }]);
    let other = Req::in_dialog(&invite, "INFO", 4, &tag).body("text/plain", "hi");
    h.recv(udp_peer(5090), &other.text());
    assert_eq!(h.statuses(), vec![415]);
    let bad = Req::in_dialog(&invite, "INFO", 5, &tag).body("application/dtmf-relay", "Signal=xyz");
    h.recv(udp_peer(5090), &bad.text());
    assert_eq!(h.statuses(), vec![400]);
    // Out of order CSeq.
    let old = Req::in_dialog(&invite, "INFO", 3, &tag).body("application/dtmf-relay", "Signal=1");
    let mut old = old;
    old.branch = "z9hG4bK-old".into();
    h.recv(udp_peer(5090), &old.text());
    assert_eq!(h.statuses(), vec![500]);
}

#[test]
fn reinvite_hold_and_resume() {
    let mut h = Harness::new();
    let (invite, tag, call) = answered_call(&mut h, "hold");
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    h.take_events();
    let hold_sdp = common::AUDIO_OFFER.replace("a=sendrecv", "a=sendonly");
    let reinvite = Req::in_dialog(&invite, "INVITE", 2, &tag).body("application/sdp", &hold_sdp);
    h.recv(udp_peer(5090), &reinvite.text());
    let ok = h.take_sent().remove(0);
    assert_eq!(status(&ok), 200);
    assert!(body(&ok).contains("a=recvonly"), "{ok}");
    assert!(
        body(&ok).contains("o=convene ") && body(&ok).contains(" 2 IN IP4"),
        "{ok}"
    );
    assert!(body(&ok).contains("m=audio 20000 "), "same port: {ok}");
    assert!(matches!(h.take_events()[0], Event::MediaChanged { call: c, .. } if c == call));
    h.recv(udp_peer(5090), &ack(&reinvite, &tag));
    let resume =
        Req::in_dialog(&invite, "INVITE", 3, &tag).body("application/sdp", common::AUDIO_OFFER);
    h.recv(udp_peer(5090), &resume.text());
    let ok = h.take_sent().remove(0);
    assert!(body(&ok).contains("a=sendrecv"));
    assert!(body(&ok).contains(" 3 IN IP4"));
    // UPDATE without SDP is answered 200 without SDP.
    let update = Req::in_dialog(&invite, "UPDATE", 4, &tag);
    h.recv(udp_peer(5090), &update.text());
    let ok = h.take_sent().remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(body(&ok), "");
}

#[test]
fn session_timer_too_small_is_refused_with_422() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "se1")
        .with("Supported: timer")
        .with("Session-Expires: 60");
    h.recv(udp_peer(5090), &invite.text());
    let sent = h.take_sent();
    assert_eq!(status(&sent[0]), 422);
    assert_eq!(header(&sent[0], "Min-SE"), Some("90"));
}

#[test]
fn session_timer_refreshed_by_the_caller_or_the_call_ends() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "se2")
        .with("Supported: timer")
        .with("Session-Expires: 90;refresher=uac")
        .with("Min-SE: 90");
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20000, Some(grant("1234567890")));
    let ok = h.take_sent().remove(0);
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
    assert_eq!(header(&ok, "Require"), Some("timer"));
    let tag = to_tag(&ok);
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    // Refresh by UPDATE at 45 s keeps the call.
    h.advance(Duration::from_secs(45));
    let update =
        Req::in_dialog(&invite, "UPDATE", 2, &tag).with("Session-Expires: 90;refresher=uac");
    h.recv(udp_peer(5090), &update.text());
    let ok = h.take_sent().remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
    h.advance(Duration::from_secs(45));
    assert_eq!(h.gw.calls(), 1);
    // No refresh: BYE before expiry, at 90 - min(32, 30) = 60 s after the last refresh.
    h.advance(Duration::from_secs(16));
    let sent = h.take_sent();
    assert!(sent.iter().any(|m| m.starts_with("BYE ")), "{sent:?}");
    assert!(h.take_events().contains(&Event::Ended {
        call,
        reason: EndReason::SessionExpired
    }));
}

#[test]
fn ivr_collects_a_meeting_id_by_info_and_rtp() {
    let mut h = Harness::new();
    let invite = Req::invite("meet", "ivr1");
    h.recv(udp_peer(5090), &invite.text());
    let events = h.take_events();
    let Event::Incoming { call, dial, .. } = &events[0] else {
        panic!()
    };
    let call = *call;
    assert_eq!(dial, &Dial::Ivr);
    h.take_sent();
    h.accept(call, 20004, None);
    let ok = h.take_sent().remove(0);
    let tag = to_tag(&ok);
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    // Digits 1-5 by RFC 4733 (each event repeated, as devices do), the rest by INFO.
    for (i, d) in [1u8, 2, 3, 4, 5].into_iter().enumerate() {
        let ts = 1000 * (i as u32 + 1);
        for end in [false, true, true, true] {
            let mut p = vec![0x80, 101, 0, i as u8];
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 1, d, if end { 0x8a } else { 0x0a }, 0, 160]);
            h.gw.handle_rtp(h.now, call, "127.0.0.1:40000".parse().unwrap(), &p);
            // The same key from elsewhere is ignored.
            h.gw.handle_rtp(h.now, call, "127.0.0.1:40002".parse().unwrap(), &p);
        }
    }
    for (i, d) in "67890#".chars().enumerate() {
        let info = Req::in_dialog(&invite, "INFO", 2 + i as u32, &tag).body(
            "application/dtmf-relay",
            &format!("Signal={d}\r\nDuration=100\r\n"),
        );
        h.recv(udp_peer(5090), &info.text());
    }
    while let Some(o) = h.gw.poll_output() {
        if let convene_gateway::Output::Event(e) = o {
            h.events.push(e);
        }
    }
    let entered: Vec<_> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::IvrEntered { meeting_id, .. } => Some(meeting_id),
            _ => None,
        })
        .collect();
    assert_eq!(entered, vec!["1234567890".to_owned()]);
    assert_eq!(
        h.metrics
            .refused
            .with_label_values(&["rtp_foreign_source"])
            .get(),
        20
    );
    h.gw.ivr_admitted(call, grant("1234567890"));
    assert!(matches!(
        h.gw.poll_output(),
        Some(convene_gateway::Output::Event(Event::Joined { .. }))
    ));
}

#[test]
fn ivr_says_goodbye_after_three_failed_tries() {
    let mut h = Harness::new();
    let invite = Req::invite("u", "ivr2");
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20006, None);
    let tag = to_tag(&h.take_sent()[0]);
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    let mut cseq = 2;
    let mut press = |h: &mut Harness, keys: &str| {
        for d in keys.chars() {
            let info = Req::in_dialog(&invite, "INFO", cseq, &tag)
                .body("application/dtmf-relay", &format!("Signal={d}\r\n"));
            cseq += 1;
            h.recv(udp_peer(5090), &info.text());
        }
    };
    // Try 1: an unknown meeting.
    press(&mut h, "1111111111#");
    assert!(
        h.take_events()
            .iter()
            .any(|e| matches!(e, Event::IvrEntered { .. }))
    );
    h.gw.ivr_refused(h.now, call, &Refused::UnknownMeeting);
    // Try 2: not a meeting ID at all.
    press(&mut h, "12#");
    // Try 3: nothing, the try times out.
    h.take_sent();
    h.advance(Duration::from_secs(31));
    // The BYE no longer goes at the third failure itself: the goodbye prompt is spoken first, and
    // the BYE follows once it has been heard (tests/ivr.rs times it exactly).
    assert!(h.take_events().contains(&Event::Prompt {
        call,
        prompt: Prompt::GoodbyeNotFound
    }));
    assert!(h.take_sent().is_empty());
    h.advance(Prompt::GoodbyeNotFound.duration() + GOODBYE_TAIL);
    let sent = h.take_sent();
    assert!(sent.iter().any(|m| m.starts_with("BYE ")), "{sent:?}");
    assert!(h.take_events().contains(&Event::Ended {
        call,
        reason: EndReason::IvrGaveUp
    }));
}

#[test]
fn shutdown_sends_bye_to_every_call_and_the_bye_completes() {
    let mut h = Harness::new();
    let (i1, t1, _) = answered_call(&mut h, "s1");
    h.recv(udp_peer(5090), &ack(&i1, &t1));
    let (i2, t2, _) = answered_call(&mut h, "s2");
    h.recv(udp_peer(5090), &ack(&i2, &t2));
    // A third call still waiting for admission is refused instead.
    h.recv(udp_peer(5090), &Req::invite("1234567890", "s3").text());
    h.take_sent();
    h.gw.hangup_all(h.now);
    let mut byes = Vec::new();
    let mut refusals = 0;
    while let Some(o) = h.gw.poll_output() {
        if let convene_gateway::Output::Transmit { bytes, .. } = o {
            let m = String::from_utf8(bytes).unwrap();
            if m.starts_with("BYE ") {
                byes.push(m);
            } else if status(&m) == 480 {
                refusals += 1;
            }
        }
    }
    assert_eq!(byes.len(), 2);
    assert_eq!(refusals, 1);
    assert_eq!(h.gw.calls(), 0);
    assert!(h.gw.awaiting_answers());
    for bye in &byes {
        let via = header(bye, "Via").unwrap();
        let branch = via
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            header(bye, "From").unwrap(),
            header(bye, "To").unwrap(),
            header(bye, "Call-ID").unwrap(),
            header(bye, "CSeq").unwrap()
        );
        assert!(branch.starts_with("z9hG4bK"));
        assert!(header(bye, "From").unwrap().contains("tag="));
        h.recv(udp_peer(5090), &resp);
    }
    assert!(!h.gw.awaiting_answers());
}

#[test]
fn our_bye_is_retransmitted_over_udp_until_answered() {
    let mut h = Harness::new();
    let (i1, t1, call) = answered_call(&mut h, "r1");
    h.recv(udp_peer(5090), &ack(&i1, &t1));
    h.gw.hangup(h.now, call);
    let first: Vec<String> = std::iter::from_fn(|| h.gw.poll_output())
        .filter_map(|o| match o {
            convene_gateway::Output::Transmit { bytes, .. } => {
                Some(String::from_utf8(bytes).unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(first.len(), 1);
    h.advance(Duration::from_secs(2));
    let again = h.take_sent();
    assert!(
        again.len() >= 2 && again.iter().all(|m| *m == first[0]),
        "{again:?}"
    );
    h.advance(Duration::from_secs(40));
    h.take_sent();
    assert!(!h.gw.awaiting_answers(), "timer F ended it");
}

#[test]
fn invite_and_options_floods_from_one_source_are_limited() {
    let mut h = Harness::new();
    let mut limited = 0;
    for i in 0..60 {
        let mut o = Req::options();
        o.branch = format!("z9hG4bK-flood-{i}");
        h.recv(udp_peer(5090), &o.text());
        if h.statuses() == vec![503] {
            limited += 1;
        }
    }
    assert!(limited >= 30, "{limited}");
    // Another source is unaffected.
    let other = Peer {
        addr: "127.0.0.2:5090".parse().unwrap(),
        ..udp_peer(5090)
    };
    h.recv(other, &Req::options().text());
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.metrics.refused.with_label_values(&["rate_limited"]).get() >= 30);
    // The bucket refills.
    h.advance(Duration::from_secs(5));
    h.recv(udp_peer(5090), &Req::options().text());
    assert_eq!(h.statuses(), vec![200]);
}

use convene_gateway::sip::Peer;

#[test]
fn admission_that_never_answers_gets_480() {
    let mut h = Harness::new();
    h.recv(udp_peer(5090), &Req::invite("1234567890", "slow").text());
    let call = h.incoming_call();
    h.take_sent();
    h.advance(Duration::from_secs(11));
    let sent = h.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 480 Admission Timed Out"),
        "{sent:?}"
    );
    assert!(h.take_events().contains(&Event::Ended {
        call,
        reason: EndReason::Refused
    }));
    // The late answer changes nothing.
    h.accept(call, 20000, Some(grant("1234567890")));
    assert!(h.take_sent().is_empty());
}

#[test]
fn transactions_are_bounded() {
    let config = convene_gateway::Config {
        max_transactions: 10,
        rate: convene_gateway::call::RateLimit {
            burst: 1000.0,
            per_second: 1000.0,
        },
        ..Harness::new_config()
    };
    let mut h = Harness::with_config(config);
    let mut answered = 0;
    for i in 0..50 {
        let mut o = Req::options();
        o.branch = format!("z9hG4bK-cap-{i}");
        h.recv(udp_peer(5090), &o.text());
        answered += h.take_sent().len();
    }
    assert_eq!(answered, 10);
    assert_eq!(
        h.metrics.refused.with_label_values(&["overloaded"]).get(),
        40
    );
    // Timer J frees them (64*T1 on UDP).
    h.advance(Duration::from_secs(33));
    h.recv(udp_peer(5090), &Req::options().text());
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn late_offer_is_answered_in_the_ack() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "late").no_body();
    h.recv(udp_peer(5090), &invite.text());
    assert_eq!(h.statuses(), vec![100]);
    let call = h.incoming_call();
    h.accept(call, 20008, Some(grant("1234567890")));
    let ok = h.take_sent().remove(0);
    assert_eq!(status(&ok), 200);
    assert!(
        body(&ok).contains("m=audio 20008 RTP/AVP 96 9 0 8 101\r\n"),
        "{ok}"
    );
    assert!(
        h.take_events().is_empty(),
        "nothing joins before the answer"
    );
    let tag = to_tag(&ok);
    let mut ack = Req::in_dialog(&invite, "ACK", 1, &tag).body(
        "application/sdp",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    ack.branch = "z9hG4bK-late-ack".into();
    h.recv(udp_peer(5090), &ack.text());
    let events = h.take_events();
    let [Event::Joined { media, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(media.codec, convene_gateway::sdp::Codec::G722);
    assert_eq!(media.telephone_event, Some(101));
    h.advance(Duration::from_secs(5));
    assert!(
        h.take_sent().is_empty(),
        "the ACK stopped the 200's retransmissions"
    );
}

#[test]
fn late_offer_without_an_answer_in_the_ack_ends_with_bye() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "late2").no_body();
    h.recv(udp_peer(5090), &invite.text());
    let call = h.incoming_call();
    h.take_sent();
    h.accept(call, 20010, Some(grant("1234567890")));
    let tag = to_tag(&h.take_sent()[0]);
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    let sent = h.take_sent();
    assert!(sent[0].starts_with("BYE "), "{sent:?}");
    assert!(h.take_events().contains(&Event::Ended {
        call,
        reason: EndReason::NoAnswer
    }));
}

#[test]
fn required_extensions_we_lack_get_420_and_spent_max_forwards_483() {
    let mut h = Harness::new();
    let invite = Req::invite("1234567890", "prack").with("Require: 100rel, timer");
    h.recv(udp_peer(5090), &invite.text());
    let sent = h.take_sent();
    assert_eq!(status(&sent[0]), 420);
    assert_eq!(header(&sent[0], "Unsupported"), Some("100rel"));
    assert_eq!(h.gw.calls(), 0);
    let timer_only = Req::invite("1234567890", "timer-only")
        .with("Require: timer")
        .with("Session-Expires: 1800");
    h.recv(udp_peer(5090), &timer_only.text());
    assert_eq!(h.statuses(), vec![100]);
    let hops = Req::invite("1234567890", "hops")
        .text()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    h.recv(udp_peer(5090), &hops);
    assert_eq!(h.statuses(), vec![483]);
    let options = Req::options()
        .text()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    h.recv(udp_peer(5090), &options);
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn the_snapshot_lists_live_calls_for_operators() {
    let mut h = Harness::new();
    let (invite, tag, call) = answered_call(&mut h, "snap");
    h.recv(udp_peer(5090), &ack(&invite, &tag));
    h.recv(udp_peer(5090), &Req::invite("meet", "snap-ivr").text());
    h.advance(Duration::from_secs(3));
    let calls = h.gw.snapshot(h.now);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].call, call);
    assert_eq!(calls[0].state, "meeting");
    assert_eq!(calls[0].meeting.as_deref(), Some("1234567890"));
    assert_eq!(calls[0].codec, Some("PCMU"));
    assert_eq!(calls[0].caller, "Tandberg C20");
    assert_eq!(calls[0].peer, "udp:127.0.0.1:5090");
    assert!(calls[0].age >= Duration::from_secs(3));
    assert_eq!(calls[1].state, "admitting");
    assert_eq!(calls[1].codec, None);
}

#[test]
fn without_rport_udp_answers_go_to_the_via_port() {
    let mut h = Harness::new();
    let text = Req::invite("1234567890", "norport").text().replace(
        "127.0.0.1:5090;branch=z9hG4bK-norport-1;rport",
        "127.0.0.1:5070;branch=z9hG4bK-norport-1",
    );
    // Sent from an ephemeral port; the device listens on 5070.
    h.recv(udp_peer(40000), &text);
    let call = h.incoming_call();
    h.accept(call, 20000, Some(grant("1234567890")));
    let ports: Vec<u16> = h.sent.iter().map(|(p, _)| p.addr.port()).collect();
    assert_eq!(ports, vec![5070, 5070]);
    // With rport, the source port.
    h.sent.clear();
    h.recv(udp_peer(40001), &Req::options().text());
    assert_eq!(h.sent[0].0.addr.port(), 40001);
}

#[test]
fn comma_separated_vias_keep_the_top_branch_and_all_hops() {
    let mut h = Harness::new();
    let first = Req::options().text().replace(
        ";rport\r\n",
        ";rport, SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy\r\n",
    );
    // From another port than the Via's: rport of the top hop must be seen for the answer to go there.
    h.recv(udp_peer(40002), &first);
    let (peer, answer) = h.sent.remove(0);
    assert_eq!(peer.addr.port(), 40002);
    assert_eq!(status(&answer), 200);
    assert!(
        header(&answer, "Via")
            .unwrap()
            .ends_with("10.0.0.1:5060;branch=z9hG4bKproxy")
    );
    // The same request again is a retransmission of the same transaction (the top branch).
    h.recv(udp_peer(40002), &first);
    assert_eq!(
        h.metrics.retransmissions.with_label_values(&["in"]).get(),
        1
    );
    // A different second hop with the same top branch is still the same transaction.
    let other = first.replace("z9hG4bKproxy", "z9hG4bKother");
    h.recv(udp_peer(40002), &other);
    assert_eq!(
        h.metrics.retransmissions.with_label_values(&["in"]).get(),
        2
    );
}

#[test]
fn a_meeting_that_ends_hangs_up_its_calls_only() {
    let mut h = Harness::new();
    let (i1, t1, in_a) = answered_call(&mut h, "end-a");
    h.recv(udp_peer(5090), &ack(&i1, &t1));
    let other = Req::invite("2222222222", "end-b");
    h.recv(udp_peer(5090), &other.text());
    let in_b = h.incoming_call();
    h.accept(in_b, 20002, Some(grant("2222222222")));
    h.take_sent();
    h.take_events();
    h.gw.hangup_meeting(h.now, &"1234567890".parse().unwrap());
    while let Some(o) = h.gw.poll_output() {
        match o {
            convene_gateway::Output::Transmit { bytes, .. } => h
                .sent
                .push((udp_peer(0), String::from_utf8(bytes).unwrap())),
            convene_gateway::Output::Event(e) => h.events.push(e),
        }
    }
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("BYE ") && sent[0].contains("Call-ID: end-a\r\n"),
        "{sent:?}"
    );
    assert_eq!(
        h.take_events(),
        vec![Event::Ended {
            call: in_a,
            reason: EndReason::MeetingEnded
        }]
    );
    assert_eq!(h.gw.calls(), 1);
}
