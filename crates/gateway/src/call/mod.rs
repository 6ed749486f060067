//! The gateway core: every call's SIP state, sans-IO.
//!
//! [`Gateway`] takes time, datagrams/stream messages and the answers of its user (admission, RTP
//! ports) and gives back [`Output`]s: bytes to send to a [`Peer`] and [`Event`]s. Its loop contract:
//! feed input with `handle_*`, then drain [`Gateway::poll_output`] and sleep until
//! [`Gateway::poll_timeout`], then call [`Gateway::handle_timeout`]. The tokio wrapper is
//! [`crate::net`]; `tests/` drives this type directly with simulated time.
//!
//! A call's life: INVITE -> 100 Trying and [`Event::Incoming`] (the user checks admission for a
//! meeting ID and binds an RTP port) -> [`Gateway::accept`] (200 OK with the SDP answer) or
//! [`Gateway::refuse`] -> ACK -> in the meeting, or in the IVR collecting a meeting ID by DTMF
//! ([`Event::IvrEntered`] -> [`Gateway::ivr_admitted`] / [`Gateway::ivr_refused`]) -> BYE from
//! either side.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rsipstack::sip::Method;

use crate::dialplan::{self, Dial};
use crate::door::{JoinGrant, Refused};
use crate::dtmf::{self, Collector, Entry, EventDeduper};
use crate::metrics::GatewayMetrics;
use crate::sdp::{self, Negotiated, Session};
use crate::sip::message::{self, ACCEPT, ALLOW, SUPPORTED, random_token};
use crate::sip::session_timer::{self, Negotiation, Refresher};
use crate::sip::transaction::{self, Key, Timers, Transactions};
use crate::sip::{Inbound, LocalAddrs, Peer, Reply, SipRequest, dialog::Dialog};

mod limiter;
use limiter::Limiter;
pub use limiter::RateLimit;

/// A call, as the gateway's user names it.
pub type CallId = u64;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct Config {
    pub timers: Timers,
    pub local: LocalAddrs,
    /// The address put in SDP answers.
    pub media_ip: IpAddr,
    pub rate: RateLimit,
    /// Most calls at once; more are answered 503.
    pub max_calls: usize,
    /// Tries the IVR gives a caller before saying goodbye.
    pub ivr_tries: u32,
    /// How long the IVR waits for a `#` before counting a failed try.
    pub ivr_timeout: Duration,
    /// How long admission (and binding an RTP port) may take before the caller gets 480.
    pub admission_timeout: Duration,
    /// Most live transactions; beyond, new requests are dropped and counted (a flood from many
    /// spoofed sources must not grow memory without bound).
    pub max_transactions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timers: Timers::default(),
            local: LocalAddrs::default(),
            media_ip: IpAddr::from([127, 0, 0, 1]),
            rate: RateLimit::default(),
            max_calls: 500,
            ivr_tries: 3,
            ivr_timeout: Duration::from_secs(30),
            admission_timeout: Duration::from_secs(10),
            max_transactions: 100_000,
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller hung up (BYE).
    HungUp,
    /// The caller cancelled before we answered.
    Cancelled,
    /// We hung up (shutdown, meeting ended).
    ByUs,
    /// The IVR gave up after its tries.
    IvrGaveUp,
    /// Our 2xx was never acknowledged.
    NoAck,
    /// The session timer ran out without a refresh.
    SessionExpired,
    /// Refused before it was answered.
    Refused,
    /// A late-offer call's ACK brought no usable SDP answer.
    NoAnswer,
}

impl EndReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::HungUp => "hung_up",
            Self::Cancelled => "cancelled",
            Self::ByUs => "by_us",
            Self::IvrGaveUp => "ivr_gave_up",
            Self::NoAck => "no_ack",
            Self::SessionExpired => "session_expired",
            Self::Refused => "refused",
            Self::NoAnswer => "no_answer",
        }
    }
}

/// What the core tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new call: for a meeting ID, check admission; either way bind an RTP port, then
    /// [`Gateway::accept`] or [`Gateway::refuse`].
    Incoming {
        call: CallId,
        dial: Dial,
        caller: String,
        /// The address the call came from (admission limits wrong guesses per address).
        source: IpAddr,
    },
    /// The IVR caller entered a meeting ID: check admission, then [`Gateway::ivr_admitted`] or
    /// [`Gateway::ivr_refused`].
    IvrEntered {
        call: CallId,
        meeting_id: String,
        caller: String,
        source: IpAddr,
    },
    /// The call is in its meeting with this audio (bridging media is the next increment).
    Joined {
        call: CallId,
        grant: JoinGrant,
        media: Negotiated,
    },
    /// The device changed its audio (re-INVITE/UPDATE: hold, resume, new address).
    MediaChanged { call: CallId, media: Negotiated },
    /// A DTMF key from the device.
    Dtmf { call: CallId, digit: char },
    /// The device asked for a keyframe (SIP INFO picture_fast_update, RFC 5168).
    KeyframeRequested { call: CallId },
    /// The call is over; its RTP port can be released.
    Ended { call: CallId, reason: EndReason },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Transmit { peer: Peer, bytes: Vec<u8> },
    Event(Event),
}

#[derive(Debug)]
enum Phase {
    /// INVITE received, waiting for the user's accept/refuse until the deadline.
    Admitting {
        deadline: Instant,
    },
    /// Answered, collecting a meeting ID.
    Ivr {
        collector: Collector,
        tries_left: u32,
        /// An entered ID is being checked: key presses wait.
        checking: bool,
    },
    InMeeting,
    /// We sent BYE and wait for its answer (or timer F).
    Ending,
}

struct SessionTimer {
    interval: u32,
    refresher: Refresher,
    /// When we refresh (we are refresher) or give up (they are).
    due: Instant,
}

struct Call {
    id: CallId,
    dialog: Dialog,
    invite: SipRequest,
    phase: Phase,
    offer: Option<sdp::Offer>,
    session: Session,
    negotiated: Option<Negotiated>,
    timer: Option<SessionTimer>,
    timer_negotiation: Negotiation,
    answered: bool,
    rtp_events: EventDeduper,
    grant: Option<JoinGrant>,
    caller: String,
    /// Where the device's RTP comes from (latched on the first packet).
    rtp_source: Option<SocketAddr>,
}

impl Call {
    fn state_label(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Admitting { .. } => Some("admitting"),
            Phase::Ivr { .. } => Some("ivr"),
            Phase::InMeeting => Some("meeting"),
            Phase::Ending => None,
        }
    }
}

/// The sans-IO gateway core.
pub struct Gateway {
    config: Config,
    transactions: Transactions,
    calls: HashMap<CallId, Call>,
    by_call_id: HashMap<String, CallId>,
    next_call: CallId,
    limiter: Limiter,
    out: VecDeque<Output>,
    metrics: GatewayMetrics,
}

impl Gateway {
    pub fn new(config: Config, metrics: GatewayMetrics) -> Self {
        Self {
            transactions: Transactions::new(config.timers),
            limiter: Limiter::new(config.rate),
            config,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            next_call: 1,
            out: VecDeque::new(),
            metrics,
        }
    }

    /// Live calls.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether a request we sent (BYE, UPDATE) still waits for its answer.
    pub fn awaiting_answers(&self) -> bool {
        self.transactions.awaiting_answers()
    }

    /// The addresses we advertise (the IO edge fills in the bound ports).
    pub fn local_mut(&mut self) -> &mut LocalAddrs {
        &mut self.config.local
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit { peer, bytes });
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn set_phase(&mut self, call: CallId, phase: Phase) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(l) = c.state_label() {
            self.metrics.calls.with_label_values(&[l]).dec();
        }
        c.phase = phase;
        if let Some(l) = c.state_label() {
            self.metrics.calls.with_label_values(&[l]).inc();
        }
    }

    fn remove(&mut self, call: CallId, reason: EndReason) {
        if let Some(c) = self.calls.remove(&call) {
            if let Some(l) = c.state_label() {
                self.metrics.calls.with_label_values(&[l]).dec();
            }
            self.by_call_id.remove(&c.dialog.call_id);
            self.metrics
                .calls_ended
                .with_label_values(&[reason.label()])
                .inc();
            tracing::info!(call, call_id = %c.dialog.call_id, reason = reason.label(), "gateway call ended");
            self.event(Event::Ended { call, reason });
        }
    }

    /// One message from the network (a UDP datagram, or one message framed off a stream).
    pub fn handle_message(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        match message::inspect(bytes) {
            Inbound::Request(req) => self.handle_request(now, peer, *req),
            Inbound::Response(resp) => {
                if let Some(o) =
                    self.transactions
                        .on_response(now, &resp.branch, resp.cseq_method, resp.status)
                {
                    self.transaction_output(now, o);
                }
            }
            Inbound::Refused { reason, answer } => {
                let label = if answer.is_some() {
                    reason.label()
                } else {
                    "unanswerable"
                };
                self.metrics.refused.with_label_values(&[label]).inc();
                tracing::debug!(%peer, %reason, "refused a SIP message");
                if let Some(bytes) = answer {
                    self.send(peer, bytes);
                }
            }
        }
    }

    fn reply(&mut self, now: Instant, req: &SipRequest, mut reply: Reply) {
        if reply.to_tag.is_none() && reply.status > 100 && req.to_tag.is_none() {
            // Every final answer outside a dialog carries a To tag (RFC 3261 §8.2.6.2).
            reply.to_tag = Some(random_token());
        }
        let key = Key::new(&req.branch, req.method);
        let bytes = message::respond(req, &reply);
        if let Some(o) = self.transactions.respond(now, &key, reply.status, bytes) {
            self.transaction_output(now, o);
        }
    }

    fn handle_request(&mut self, now: Instant, peer: Peer, req: SipRequest) {
        self.metrics
            .requests
            .with_label_values(&[req.method.to_string().as_str()])
            .inc();
        let key = Key::new(&req.branch, req.method);
        if self.transactions.len() >= self.config.max_transactions && req.method != Method::Ack {
            self.metrics
                .refused
                .with_label_values(&["overloaded"])
                .inc();
            return;
        }
        match self
            .transactions
            .on_request(now, &key, req.method, &req.call_id, req.cseq, peer)
        {
            transaction::Incoming::New => {}
            transaction::Incoming::Retransmission(last) => {
                self.metrics
                    .retransmissions
                    .with_label_values(&["in"])
                    .inc();
                if let Some(bytes) = last {
                    self.send(peer, bytes);
                }
                return;
            }
            transaction::Incoming::AckFor2xx => return self.on_ack(now, &req),
            transaction::Incoming::AckAbsorbed | transaction::Incoming::StrayAck => return,
        }
        let in_dialog = req.to_tag.is_some();
        match req.method {
            Method::Invite if !in_dialog => self.on_invite(now, peer, req),
            Method::Options if !in_dialog => {
                if !self.limiter.allow(now, peer.addr.ip()) {
                    return self.rate_limited(now, &req);
                }
                self.reply(now, &req, capabilities(Reply::new(200)));
            }
            Method::Cancel => self.on_cancel(now, &req),
            _ if in_dialog => self.in_dialog(now, req),
            Method::Bye | Method::Info | Method::Update => self.reply(now, &req, Reply::new(481)),
            _ => self.reply(now, &req, Reply::new(405).header("Allow", ALLOW)),
        }
    }

    fn rate_limited(&mut self, now: Instant, req: &SipRequest) {
        self.metrics
            .refused
            .with_label_values(&["rate_limited"])
            .inc();
        self.reply(
            now,
            req,
            Reply::new(503)
                .reason("Too Many Requests From This Source")
                .header("Retry-After", "5"),
        );
    }

    fn on_invite(&mut self, now: Instant, peer: Peer, req: SipRequest) {
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
            match sdp::parse(&req.body).and_then(|o| sdp::choose(&o).map(|_| o)) {
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
            },
            negotiated: None,
            timer: None,
            timer_negotiation: timer,
            answered: false,
            rtp_events: EventDeduper::default(),
            grant: None,
            caller: caller.clone(),
            rtp_source: None,
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

    /// The IVR's entered meeting ID admitted the caller.
    pub fn ivr_admitted(&mut self, call: CallId, grant: JoinGrant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if !matches!(c.phase, Phase::Ivr { .. }) {
            return;
        }
        c.grant = Some(grant.clone());
        let media = c.negotiated.clone();
        self.set_phase(call, Phase::InMeeting);
        if let Some(media) = media {
            self.event(Event::Joined { call, grant, media });
        }
    }

    /// The IVR's entered meeting ID did not admit the caller: another try, or goodbye.
    pub fn ivr_refused(&mut self, now: Instant, call: CallId, refused: &Refused) {
        let label = match refused {
            Refused::UnknownMeeting => "unknown_meeting",
            Refused::NotAllowed(_) => "not_allowed",
            Refused::Unavailable => "unavailable",
            Refused::TooManyGuesses(_) => "too_many_guesses",
        };
        self.metrics.ivr_failures.with_label_values(&[label]).inc();
        self.ivr_failed_try(now, call);
    }

    fn ivr_failed_try(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Phase::Ivr {
            collector,
            tries_left,
            checking,
        } = &mut c.phase
        else {
            return;
        };
        *tries_left = tries_left.saturating_sub(1);
        *checking = false;
        collector.reset(now);
        // Prompts ("that meeting ID is not valid, please try again") come with the audio path.
        if *tries_left == 0 {
            tracing::info!(call, "IVR: no valid meeting ID after all tries, goodbye");
            self.bye(now, call, EndReason::IvrGaveUp);
        }
    }

    /// An RTP packet that arrived on this call's port from `from`: DTMF events are read from it.
    /// The first source is latched (symmetric RTP: a device behind NAT sends from where it wants
    /// media); packets from any other address are ignored, so nobody else can key DTMF into a call.
    pub fn handle_rtp(&mut self, now: Instant, call: CallId, from: SocketAddr, packet: &[u8]) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.rtp_source {
            None => c.rtp_source = Some(from),
            Some(latched) if latched != from => {
                self.metrics
                    .refused
                    .with_label_values(&["rtp_foreign_source"])
                    .inc();
                return;
            }
            Some(_) => {}
        }
        let Some(pt) = c.negotiated.as_ref().and_then(|n| n.telephone_event) else {
            return;
        };
        let Some(event) = dtmf::rtp_event(packet, pt) else {
            return;
        };
        if let Some(digit) = c.rtp_events.key_press(event) {
            self.metrics.dtmf_digits.with_label_values(&["rtp"]).inc();
            self.key(now, call, digit);
        }
    }

    fn key(&mut self, now: Instant, call: CallId, digit: char) {
        self.event(Event::Dtmf { call, digit });
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Phase::Ivr {
            collector,
            checking: false,
            ..
        } = &mut c.phase
            && let Entry::Entered(id) = collector.press(now, digit)
        {
            if dialplan::is_meeting_id(&id) {
                if let Phase::Ivr { checking, .. } = &mut c.phase {
                    *checking = true;
                }
                let caller = c.caller.clone();
                let source = c.dialog.peer.addr.ip();
                self.event(Event::IvrEntered {
                    call,
                    meeting_id: id,
                    caller,
                    source,
                });
            } else {
                self.metrics
                    .ivr_failures
                    .with_label_values(&["not_a_meeting_id"])
                    .inc();
                self.ivr_failed_try(now, call);
            }
        }
    }

    /// The ACK of our 2xx: for a late offer it carries the device's answer (RFC 3261 §13.3.1.4: a
    /// missing or unacceptable answer ends the call with BYE).
    fn on_ack(&mut self, now: Instant, req: &SipRequest) {
        let Some(&call) = self.by_call_id.get(&req.call_id) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.negotiated.is_some() || !c.answered {
            return;
        }
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
                self.bye(now, call, EndReason::NoAnswer);
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, req: &SipRequest) {
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

    fn in_dialog(&mut self, now: Instant, req: SipRequest) {
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

    fn on_info(&mut self, now: Instant, call: CallId, req: &SipRequest) {
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
        if req.body_is("application/media_control+xml") {
            // RFC 5168: a full intra request. Any such body asks for a keyframe; video is later.
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
    fn on_offer(&mut self, now: Instant, call: CallId, req: &SipRequest) {
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

    /// Hang up one call: BYE if answered, else a final error to its INVITE.
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        let answered = self.calls.get(&call).map(|c| c.answered);
        match answered {
            Some(true) => self.bye(now, call, EndReason::ByUs),
            Some(false) => self.refuse(now, call, 480, "Temporarily Unavailable"),
            None => {}
        }
    }

    /// Hang up every call (shutdown).
    pub fn hangup_all(&mut self, now: Instant) {
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for call in calls {
            self.hangup(now, call);
        }
    }

    fn bye(&mut self, now: Instant, call: CallId, reason: EndReason) {
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

    fn send_update(&mut self, now: Instant, call: CallId) {
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

    fn transaction_output(&mut self, now: Instant, o: transaction::Output) {
        match o {
            transaction::Output::Transmit { peer, bytes } => self.send(peer, bytes),
            transaction::Output::AckTimeout { call_id } => {
                if let Some(&call) = self.by_call_id.get(&call_id) {
                    tracing::info!(call, "no ACK for our 200 OK: hanging up");
                    self.bye(now, call, EndReason::NoAck);
                }
            }
            transaction::Output::ClientResponse {
                call_id,
                method,
                status,
            } => {
                if method == Method::Update && status >= 300 {
                    // A refused refresh: let the session lapse at its expiry.
                    tracing::info!(%call_id, status, "session refresh refused");
                }
            }
            transaction::Output::ClientTimeout { call_id, method } => {
                tracing::debug!(%call_id, %method, "no answer to our request");
            }
        }
    }

    /// The next moment [`Gateway::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().flat_map(|c| {
            let timer = c.timer.as_ref().filter(|_| c.answered).map(|t| t.due);
            let ivr = match &c.phase {
                Phase::Ivr {
                    collector,
                    checking: false,
                    ..
                } => Some(collector.deadline()),
                Phase::Admitting { deadline } => Some(*deadline),
                _ => None,
            };
            [timer, ivr].into_iter().flatten()
        });
        calls
            .chain(self.transactions.next_timeout())
            .chain(self.limiter.next_cleanup())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut outputs = Vec::new();
        self.transactions.on_timeout(now, &mut outputs);
        for o in outputs {
            if matches!(o, transaction::Output::Transmit { .. }) {
                self.metrics
                    .retransmissions
                    .with_label_values(&["out"])
                    .inc();
            }
            self.transaction_output(now, o);
        }
        self.limiter.cleanup(now);
        let mut expired = Vec::new();
        let mut refresh = Vec::new();
        let mut ivr_timeouts = Vec::new();
        let mut admission_timeouts = Vec::new();
        for c in self.calls.values() {
            if let Phase::Admitting { deadline } = c.phase
                && deadline <= now
            {
                admission_timeouts.push(c.id);
            }
            if let Some(t) = c.timer.as_ref().filter(|_| c.answered)
                && t.due <= now
            {
                match t.refresher {
                    Refresher::Uac => expired.push(c.id),
                    Refresher::Uas => refresh.push(c.id),
                }
            }
            if let Phase::Ivr {
                collector,
                checking: false,
                ..
            } = &c.phase
                && collector.deadline() <= now
            {
                ivr_timeouts.push(c.id);
            }
        }
        for call in expired {
            tracing::info!(call, "session timer expired without a refresh");
            self.bye(now, call, EndReason::SessionExpired);
        }
        for call in refresh {
            self.send_update(now, call);
            if let Some(t) = self.calls.get_mut(&call).and_then(|c| c.timer.as_mut()) {
                t.due = now + session_timer::action_after(t.interval, t.refresher);
            }
        }
        for call in admission_timeouts {
            tracing::warn!(call, "admission did not answer in time");
            self.refuse(now, call, 480, "Admission Timed Out");
        }
        for call in ivr_timeouts {
            self.metrics
                .ivr_failures
                .with_label_values(&["timeout"])
                .inc();
            self.ivr_failed_try(now, call);
        }
    }
}

/// OPTIONS answers: what we take.
fn capabilities(reply: Reply) -> Reply {
    reply
        .header("Allow", ALLOW)
        .header("Accept", ACCEPT)
        .header("Supported", SUPPORTED)
}

/// The status and reason phrase a room system shows for an admission refusal.
pub fn refusal_status(refused: &Refused) -> (u16, String) {
    match refused {
        Refused::UnknownMeeting => (404, "Unknown Meeting ID".into()),
        Refused::NotAllowed(why) => (403, why.clone()),
        Refused::Unavailable => (503, "Service Unavailable".into()),
        Refused::TooManyGuesses(wait) => (
            403,
            format!(
                "Too Many Wrong Meeting IDs: Try Again In {} s",
                wait.as_secs().max(1)
            ),
        ),
    }
}

/// The attendee name of a caller: its From display name, else its user part, else "Room system".
fn caller_name(req: &SipRequest) -> String {
    let name = req
        .from_display
        .as_deref()
        .or(req.from_user.as_deref())
        .unwrap_or("Room system");
    let clean: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "Room system".into()
    } else {
        clean.to_owned()
    }
}
