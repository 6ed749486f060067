//! A call from its INVITE to its end: checks in front of a new call, the answer (or refusal) once
//! admission has spoken, the late offer's answer in the ACK, CANCEL, and our BYE.

use super::*;

impl Gateway {
    pub(super) fn on_invite(&mut self, now: Instant, peer: Peer, req: SipRequest) {
        if !self.limiter.allow(now, peer.addr.ip()) {
            return self.rate_limited(now, &req);
        }
        if self.by_call_id.contains_key(&req.call_id) {
            // A second INVITE of an existing call without our tag (a fork or a confused device).
            return self.reply(now, &req, Reply::new(482).reason("Loop Detected"));
        }
        if self.calls.len() >= self.config.max_calls {
            self.metrics
                .refused
                .with_label_values(&["overloaded"])
                .inc();
            return self.reply(now, &req, Reply::new(503).header("Retry-After", "30"));
        }
        let timer = session_timer::negotiate(&req);
        if let Negotiation::TooSmall { min_se } = timer {
            return self.reply(
                now,
                &req,
                Reply::new(422).header("Min-SE", min_se.to_string()),
            );
        }
        // SDES keys travel in the SDP: only a call whose signaling is encrypted may use them.
        let srtp = (peer.transport == crate::sip::Transport::Tls)
            .then(srtp_keys)
            .flatten();
        let offer = if req.body.is_empty() {
            // Late offer: we offer in the 200 OK, the device answers in its ACK.
            None
        } else if !req.body_is("application/sdp") {
            return self.reply(
                now,
                &req,
                Reply::new(415).header("Accept", "application/sdp"),
            );
        } else {
            match sdp::parse(&req.body).and_then(|o| sdp::choose(&o, srtp.as_ref()).map(|_| o)) {
                Ok(o) => Some(o),
                Err(e) => {
                    return self.reply(
                        now,
                        &req,
                        Reply::new(488).header("Warning", format!("304 convene \"{e}\"")),
                    );
                }
            }
        };
        let dial = dialplan::route(req.uri_user.as_deref());
        if dial == Dial::Unknown {
            return self.reply(
                now,
                &req,
                Reply::new(404).reason("No Such Meeting: dial a 10-digit meeting ID or meet"),
            );
        }
        self.reply(now, &req, Reply::new(100));
        let id = self.next_call;
        self.next_call += 1;
        let local_tag = random_token();
        let caller = caller_name(&req);
        let call = Call {
            id,
            dialog: Dialog::from_invite(&req, local_tag, peer),
            invite: req,
            phase: Phase::Admitting {
                deadline: now + self.config.admission_timeout,
            },
            offer,
            session: Session {
                id: fastrand::u64(1..u64::MAX / 2),
                version: 1,
                ip: self.config.media_ip,
                port: 0,
                srtp,
            },
            negotiated: None,
            timer: None,
            timer_negotiation: timer,
            answered: false,
            rtp_events: EventDeduper::default(),
            grant: None,
            caller: caller.clone(),
            rtp_source: None,
            rtp: RtpStats::default(),
            started: now,
        };
        tracing::info!(call = id, call_id = %call.dialog.call_id, from = %peer, ?dial, %caller, "gateway call incoming");
        self.by_call_id.insert(call.dialog.call_id.clone(), id);
        self.calls.insert(id, call);
        self.metrics.calls.with_label_values(&["admitting"]).inc();
        self.event(Event::Incoming {
            call: id,
            dial,
            caller,
            source: peer.addr.ip(),
        });
    }

    /// Answer a call the user let in: 200 OK with our SDP answer on `rtp_port`. `grant` is the
    /// admission for a dialled meeting ID, None for the IVR.
    pub fn accept(&mut self, now: Instant, call: CallId, rtp_port: u16, grant: Option<JoinGrant>) {
        let local = self.config.local.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            // Cancelled or hung up while admission ran: nothing to answer.
            return;
        };
        if !matches!(c.phase, Phase::Admitting { .. }) {
            return;
        }
        c.session.port = rtp_port;
        let (sdp, negotiated) = match c.offer.as_ref() {
            Some(offer) => match sdp::answer(offer, &c.session) {
                Ok((sdp, negotiated)) => (sdp, Some(negotiated)),
                Err(_) => return self.refuse(now, call, 488, "Not Acceptable Here"),
            },
            None => (sdp::offer(&c.session), None),
        };
        let mut reply = Reply::new(200)
            .tag(Some(&c.dialog.local_tag))
            .header("Contact", local.contact(c.dialog.peer.transport))
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED);
        for (n, v) in c.timer_negotiation.headers() {
            reply = reply.header(&n, v);
        }
        if let Negotiation::On {
            interval,
            refresher,
            ..
        } = c.timer_negotiation
        {
            c.timer = Some(SessionTimer {
                interval,
                refresher,
                due: now + session_timer::action_after(interval, refresher),
            });
        }
        let reply = reply.body("application/sdp", sdp.into_bytes());
        c.answered = true;
        c.negotiated = negotiated.clone();
        c.grant = grant.clone();
        let invite = c.invite.clone();
        if let Some(n) = &negotiated {
            self.metrics
                .calls_answered
                .with_label_values(&[n.codec.name()])
                .inc();
        }
        self.reply(now, &invite, reply);
        match grant {
            Some(grant) => {
                self.set_phase(call, Phase::InMeeting);
                // With a late offer, the media (and so the join) is known at the ACK.
                if let Some(media) = negotiated {
                    self.event(Event::Joined { call, grant, media });
                }
            }
            None => {
                let collector = Collector::new(now, self.config.ivr_timeout);
                let tries_left = self.config.ivr_tries;
                self.set_phase(
                    call,
                    Phase::Ivr {
                        collector,
                        tries_left,
                        checking: false,
                        greeted: false,
                    },
                );
            }
        }
    }

    /// Refuse a call before answering it (admission said no, or no RTP port was free).
    pub fn refuse(&mut self, now: Instant, call: CallId, status: u16, reason: &str) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.answered {
            return;
        }
        let invite = c.invite.clone();
        let tag = c.dialog.local_tag.clone();
        self.reply(
            now,
            &invite,
            Reply::new(status).reason(reason).tag(Some(&tag)),
        );
        self.remove(call, EndReason::Refused);
    }

    /// Refuse with the status that fits an admission refusal.
    pub fn refuse_admission(&mut self, now: Instant, call: CallId, refused: &Refused) {
        let (status, reason) = refusal_status(refused);
        self.refuse(now, call, status, &reason);
    }

    /// The ACK of our 2xx: for a late offer it carries the device's answer (RFC 3261 §13.3.1.4: a
    /// missing or unacceptable answer ends the call with BYE).
    pub(super) fn on_ack(&mut self, now: Instant, req: &SipRequest) {
        let Some(&call) = self.by_call_id.get(&req.call_id) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if !c.answered {
            return;
        }
        if c.negotiated.is_none() {
            match sdp::read_answer(&req.body) {
                Ok(media) => {
                    c.negotiated = Some(media.clone());
                    self.metrics
                        .calls_answered
                        .with_label_values(&[media.codec.name()])
                        .inc();
                    if let (Some(grant), Phase::InMeeting) = (c.grant.clone(), &c.phase) {
                        self.event(Event::Joined { call, grant, media });
                    }
                }
                Err(e) => {
                    tracing::info!(call, error = %e, "the ACK carried no usable answer to our offer");
                    return self.bye(now, call, EndReason::NoAnswer);
                }
            }
        }
        // The IVR speaks once the call is established: before the ACK the device may not play
        // our audio yet (and the media of a late offer is known only now).
        self.ivr_greet(call);
    }

    pub(super) fn on_cancel(&mut self, now: Instant, req: &SipRequest) {
        let invite_key = Key::new(&req.branch, Method::Invite);
        if !self.transactions.is_proceeding(&invite_key) {
            // Nothing to cancel (already answered, or unknown): 200 if the INVITE is known.
            let known = self.by_call_id.contains_key(&req.call_id);
            return self.reply(now, req, Reply::new(if known { 200 } else { 481 }));
        }
        self.reply(now, req, Reply::new(200));
        let Some(&call) = self.by_call_id.get(&req.call_id) else {
            return;
        };
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let invite = c.invite.clone();
        let tag = c.dialog.local_tag.clone();
        self.reply(now, &invite, Reply::new(487).tag(Some(&tag)));
        self.remove(call, EndReason::Cancelled);
    }

    /// Hang up one call: BYE if answered, else a final error to its INVITE.
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        let answered = self.calls.get(&call).map(|c| c.answered);
        match answered {
            Some(true) => self.bye(now, call, EndReason::ByUs),
            Some(false) => self.refuse(now, call, 480, "Temporarily Unavailable"),
            None => {}
        }
    }

    /// Hang up every call admitted to `meeting`: the meeting ended.
    pub fn hangup_meeting(&mut self, now: Instant, meeting: &convene_core::MeetingId) {
        let calls: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.grant.as_ref().is_some_and(|g| &g.meeting == meeting))
            .map(|c| c.id)
            .collect();
        for call in calls {
            tracing::info!(call, %meeting, "meeting ended: hanging up");
            self.bye(now, call, EndReason::MeetingEnded);
        }
    }

    /// Hang up every call (shutdown).
    pub fn hangup_all(&mut self, now: Instant) {
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for call in calls {
            self.hangup(now, call);
        }
    }

    pub(super) fn bye(&mut self, now: Instant, call: CallId, reason: EndReason) {
        let local = self.config.local.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if matches!(c.phase, Phase::Ending) {
            return;
        }
        match c.dialog.request(Method::Bye, &local, Vec::new()) {
            Ok((branch, bytes)) => {
                let peer = c.dialog.peer;
                let call_id = c.dialog.call_id.clone();
                let o = self
                    .transactions
                    .send(now, &branch, Method::Bye, &call_id, peer, bytes);
                self.transaction_output(now, o);
            }
            Err(e) => tracing::warn!(call, error = %e, "cannot build BYE; dropping the call"),
        }
        // The call is over for everyone now; the BYE transaction lives on by itself.
        self.set_phase(call, Phase::Ending);
        self.remove(call, reason);
    }
}

/// Fresh SRTP master keys for a call's audio and video, from the system's secure random source. None if
/// it fails (the call then takes plain RTP only).
fn srtp_keys() -> Option<sdp::SrtpKeys> {
    let mut keys = sdp::SrtpKeys {
        audio: [0; sdp::SRTP_KEY_LEN],
        video: [0; sdp::SRTP_KEY_LEN],
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    aws_lc_rs::rand::SecureRandom::fill(&rng, &mut keys.audio).ok()?;
    aws_lc_rs::rand::SecureRandom::fill(&rng, &mut keys.video).ok()?;
    Some(keys)
}
