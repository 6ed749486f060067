//! Requests inside an answered call: BYE, INFO (DTMF, picture_fast_update), re-INVITE and UPDATE
//! (new offers, session refreshes), and the UPDATE we send when we are the session refresher.

use super::*;

impl Gateway {
    pub(super) fn in_dialog(&mut self, now: Instant, req: SipRequest) {
        let call = self
            .by_call_id
            .get(&req.call_id)
            .copied()
            .filter(|id| self.calls.get(id).is_some_and(|c| c.dialog.matches(&req)));
        let Some(call) = call else {
            return self.reply(now, &req, Reply::new(481));
        };
        let in_order = self
            .calls
            .get_mut(&call)
            .is_some_and(|c| c.dialog.accept_cseq(&req));
        if !in_order {
            return self.reply(now, &req, Reply::new(500).reason("CSeq Out Of Order"));
        }
        match req.method {
            Method::Bye => {
                self.reply(now, &req, Reply::new(200));
                self.remove(call, EndReason::HungUp);
            }
            Method::Info => self.on_info(now, call, &req),
            Method::Invite | Method::Update => self.on_offer(now, call, &req),
            Method::Options => self.reply(now, &req, capabilities(Reply::new(200))),
            _ => self.reply(now, &req, Reply::new(405).header("Allow", ALLOW)),
        }
    }

    pub(super) fn on_info(&mut self, now: Instant, call: CallId, req: &SipRequest) {
        if req.body.is_empty() {
            // An empty INFO is a keep-alive probe.
            return self.reply(now, req, Reply::new(200));
        }
        let content_type = req.content_type.clone().unwrap_or_default();
        if let Some(digit) = dtmf::info_digit(&content_type, &req.body) {
            self.reply(now, req, Reply::new(200));
            self.metrics.dtmf_digits.with_label_values(&["info"]).inc();
            return self.key(now, call, digit);
        }
        if req.body_is("application/dtmf-relay") || req.body_is("application/dtmf") {
            return self.reply(now, req, Reply::new(400).reason("No DTMF Signal In Body"));
        }
        if req.body_is("application/media_control+xml") {
            // RFC 5168: picture_fast_update is a keyframe request, surfaced for when video lands;
            // other media_control primitives are acknowledged and ignored.
            let text = String::from_utf8_lossy(&req.body);
            self.reply(now, req, Reply::new(200));
            if text.contains("picture_fast_update") {
                self.event(Event::KeyframeRequested { call });
            }
            return;
        }
        self.reply(now, req, Reply::new(415).header("Accept", ACCEPT));
    }

    /// re-INVITE or UPDATE: maybe a new offer (hold, resume, new address), maybe only a session
    /// refresh.
    pub(super) fn on_offer(&mut self, now: Instant, call: CallId, req: &SipRequest) {
        let timer = session_timer::negotiate(req);
        if let Negotiation::TooSmall { min_se } = timer {
            return self.reply(
                now,
                req,
                Reply::new(422).header("Min-SE", min_se.to_string()),
            );
        }
        let local = self.config.local.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let has_offer = req.body_is("application/sdp") && !req.body.is_empty();
        let mut changed = None;
        let mut body = None;
        if has_offer {
            let answer = sdp::parse(&req.body).and_then(|offer| {
                let mut session = c.session.clone();
                session.version += 1;
                let (text, neg) = sdp::answer(&offer, &session)?;
                Ok((offer, session, text, neg))
            });
            match answer {
                Ok((offer, session, text, neg)) => {
                    c.offer = Some(offer);
                    c.session = session;
                    if c.negotiated.as_ref() != Some(&neg) {
                        changed = Some(neg.clone());
                    }
                    c.negotiated = Some(neg);
                    body = Some(text);
                }
                Err(e) => {
                    // The old session stays as it was (RFC 3261 §14.2).
                    return self.reply(
                        now,
                        req,
                        Reply::new(488).header("Warning", format!("304 convene \"{e}\"")),
                    );
                }
            }
        } else if req.method == Method::Invite {
            // An offerless re-INVITE: our current description is the offer; the ACK would carry the
            // answer, which we take as unchanged.
            if let Some(offer) = &c.offer
                && let Ok((text, _)) = sdp::answer(offer, &c.session)
            {
                body = Some(text);
            }
        }
        let mut reply = Reply::new(200)
            .header("Contact", local.contact(c.dialog.peer.transport))
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED);
        // Any re-INVITE or UPDATE refreshes the session (RFC 4028 §10).
        match timer {
            Negotiation::On {
                interval,
                refresher,
                ..
            } => {
                c.timer = Some(SessionTimer {
                    interval,
                    refresher,
                    due: now + session_timer::action_after(interval, refresher),
                });
                for (n, v) in timer.headers() {
                    reply = reply.header(&n, v);
                }
            }
            _ => {
                if let Some(t) = &mut c.timer {
                    t.due = now + session_timer::action_after(t.interval, t.refresher);
                    // The session keeps its timer: say so, as the response to a refresh must.
                    let kept = Negotiation::On {
                        interval: t.interval,
                        refresher: t.refresher,
                        require: false,
                    };
                    for (n, v) in kept.headers() {
                        reply = reply.header(&n, v);
                    }
                }
            }
        }
        if let Some(text) = body {
            reply = reply.body("application/sdp", text.into_bytes());
        }
        self.reply(now, req, reply);
        if let Some(media) = changed {
            self.event(Event::MediaChanged { call, media });
        }
    }

    pub(super) fn send_update(&mut self, now: Instant, call: CallId) {
        let local = self.config.local.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(t) = &c.timer else {
            return;
        };
        let extra = vec![
            (
                "Session-Expires".into(),
                format!("{};refresher=uas", t.interval),
            ),
            ("Supported".into(), SUPPORTED.into()),
        ];
        if let Ok((branch, bytes)) = c.dialog.request(Method::Update, &local, extra) {
            let peer = c.dialog.peer;
            let call_id = c.dialog.call_id.clone();
            let o = self
                .transactions
                .send(now, &branch, Method::Update, &call_id, peer, bytes);
            self.transaction_output(now, o);
        }
    }
}
