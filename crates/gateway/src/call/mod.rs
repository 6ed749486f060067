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
//!
//! The IVR speaks through [`Event::Prompt`]: the core decides which prompt is due and when (the
//! welcome at the ACK, "try again" after a failed try, "joining" on admission, the goodbye, whose
//! BYE waits until it has been heard), and the user plays it into the call's audio.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rsipstack::sip::Method;

use crate::audio::Prompt;
use crate::dialplan::{self, Dial};
use crate::door::{JoinGrant, Refused};
use crate::dtmf::{self, Collector, Entry, EventDeduper};
use crate::metrics::GatewayMetrics;
use crate::sdp::{self, Negotiated, Session};
use crate::sip::compose::{self, random_token};
use crate::sip::message::{self, ACCEPT, ALLOW, SUPPORTED};
use crate::sip::session_timer::{self, Negotiation, Refresher};
use crate::sip::transaction::{self, Key, Timers, Transactions};
use crate::sip::{Inbound, LocalAddrs, Peer, Reply, SipRequest, dialog::Dialog};

mod dialog;
mod invite;
mod ivr;
mod limiter;
mod rtp;
pub use ivr::GOODBYE_TAIL;
use limiter::Limiter;
pub use limiter::RateLimit;
pub use rtp::{RtpHeader, RtpStats};

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
    /// Its meeting ended.
    MeetingEnded,
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
            Self::MeetingEnded => "meeting_ended",
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
    /// Speak `prompt` to the caller now (`AudioBridge::play_prompt` of the call's audio), in place
    /// of whatever prompt is still playing. Only IVR calls get prompts; the core times its own
    /// steps after one (the goodbye's BYE waits for [`Prompt::duration`]), so nothing is to be
    /// reported back.
    Prompt { call: CallId, prompt: Prompt },
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
        /// The welcome prompt was asked for (at the first ACK; ACKs may repeat).
        greeted: bool,
    },
    /// The IVR gave up and its goodbye prompt is playing; BYE at `bye_at`.
    Farewell {
        bye_at: Instant,
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
    rtp: RtpStats,
    started: Instant,
}

impl Call {
    fn state_label(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Admitting { .. } => Some("admitting"),
            // A caller hearing the IVR's goodbye is still the IVR's for operators.
            Phase::Ivr { .. } | Phase::Farewell { .. } => Some("ivr"),
            Phase::InMeeting => Some("meeting"),
            Phase::Ending => None,
        }
    }
}

/// One live call as operators see it (`convene gateway calls`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallInfo {
    pub call: CallId,
    pub call_id: String,
    /// Transport and address of the device.
    pub peer: String,
    /// admitting, ivr or meeting.
    pub state: &'static str,
    pub caller: String,
    pub meeting: Option<String>,
    pub codec: Option<&'static str>,
    /// RTP received from the device, and how much of it was missing.
    pub rtp_packets: u64,
    pub rtp_lost: u64,
    /// RFC 3550 interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// How long ago the INVITE arrived.
    #[serde(skip)]
    pub age: Duration,
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

    /// The audio (and video) a live call agreed on, once its offer/answer is done.
    pub fn media_of(&self, call: CallId) -> Option<&Negotiated> {
        self.calls.get(&call)?.negotiated.as_ref()
    }

    /// Live calls.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// The live calls, oldest first.
    pub fn snapshot(&self, now: Instant) -> Vec<CallInfo> {
        let mut calls: Vec<CallInfo> = self
            .calls
            .values()
            .filter_map(|c| {
                Some(CallInfo {
                    call: c.id,
                    call_id: c.dialog.call_id.clone(),
                    peer: c.dialog.peer.to_string(),
                    state: c.state_label()?,
                    caller: c.caller.clone(),
                    meeting: c.grant.as_ref().map(|g| g.meeting.to_string()),
                    codec: c.negotiated.as_ref().map(|n| n.codec.name()),
                    rtp_packets: c.rtp.packets,
                    rtp_lost: c.rtp.lost,
                    jitter_ms: c
                        .rtp
                        .jitter_ms(c.negotiated.as_ref().map_or(8000, |n| n.format.clock)),
                    age: now.saturating_duration_since(c.started),
                })
            })
            .collect();
        calls.sort_by_key(|c| c.call);
        calls
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
        let bytes = compose::respond(req, &reply);
        if let Some(o) = self.transactions.respond(now, &key, reply.status, bytes) {
            self.transaction_output(now, o);
        }
    }

    fn handle_request(&mut self, now: Instant, peer: Peer, req: SipRequest) {
        let peer = reply_peer(peer, &req);
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
        if let Some(refusal) = extension_check(&req) {
            return self.reply(now, &req, refusal);
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
                Phase::Farewell { bye_at } => Some(*bye_at),
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
        let mut farewells = Vec::new();
        for c in self.calls.values() {
            if let Phase::Farewell { bye_at } = c.phase
                && bye_at <= now
            {
                farewells.push(c.id);
            }
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
            // Silence is not a wrong ID: ask again rather than say "not found".
            self.ivr_failed_try(now, call, Prompt::EnterMeetingId);
        }
        for call in farewells {
            self.bye(now, call, EndReason::IvrGaveUp);
        }
    }
}

/// RFC 3261 §8.2.2.3 and §16.3: a request that requires an extension we lack gets 420 naming it;
/// one whose Max-Forwards ran out gets 483 (OPTIONS excepted: it may be answered, §11).
fn extension_check(req: &SipRequest) -> Option<Reply> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return None;
    }
    let unsupported: Vec<String> = req
        .tokens("Require")
        .into_iter()
        .filter(|t| !SUPPORTED.split(',').any(|s| s.trim() == t))
        .collect();
    if !unsupported.is_empty() {
        return Some(Reply::new(420).header("Unsupported", unsupported.join(", ")));
    }
    let hops_left = req.header("Max-Forwards").map(|v| v.trim().parse::<u32>());
    if matches!(hops_left, Some(Ok(0))) && req.method != Method::Options {
        return Some(Reply::new(483));
    }
    None
}

/// Where responses (and our in-dialog requests) go: back over the same connection on TCP/TLS; over
/// UDP to the source address when the Via asks with `rport` (RFC 3581, what devices behind NAT
/// need), else to the source IP and the Via's sent-by port (RFC 3261 §18.2.2), for devices that
/// send from one port and listen on another.
fn reply_peer(peer: Peer, req: &SipRequest) -> Peer {
    if peer.transport != crate::sip::Transport::Udp || req.via_rport {
        return peer;
    }
    Peer {
        addr: SocketAddr::new(peer.addr.ip(), req.via_port.unwrap_or(5060)),
        ..peer
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
