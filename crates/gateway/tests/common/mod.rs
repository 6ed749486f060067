//! A test harness around the sans-IO gateway: a simulated clock, messages written the way devices
//! write them, and helpers to read what the gateway sent.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convene_core::{AttendeeId, MeetingId};
use convene_gateway::call::{Config, Event, Gateway, Output};
use convene_gateway::sip::{LocalAddrs, Peer, Transport};
use convene_gateway::{GatewayMetrics, JoinGrant};

pub const AUDIO_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";

pub struct Harness {
    pub gw: Gateway,
    pub now: Instant,
    pub sent: Vec<(Peer, String)>,
    pub events: Vec<Event>,
    pub metrics: GatewayMetrics,
}

pub fn udp_peer(port: u16) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        conn: None,
    }
}

pub fn tcp_peer(port: u16) -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        conn: Some(7),
    }
}

pub fn grant(meeting: &str) -> JoinGrant {
    JoinGrant {
        token: "token".into(),
        meeting: meeting.parse::<MeetingId>().unwrap(),
        attendee: AttendeeId::random(),
        name: "Room".into(),
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(Self::new_config())
    }

    pub fn new_config() -> Config {
        Config {
            local: LocalAddrs {
                udp: Some("127.0.0.1:5060".parse().unwrap()),
                tcp: Some("127.0.0.1:5060".parse().unwrap()),
                tls: None,
                public_host: None,
            },
            ..Config::default()
        }
    }

    pub fn with_config(config: Config) -> Self {
        let metrics = GatewayMetrics::unregistered();
        Self {
            gw: Gateway::new(config, metrics.clone()),
            now: Instant::now(),
            sent: Vec::new(),
            events: Vec::new(),
            metrics,
        }
    }

    /// Collect what the gateway has to say (after calling it directly, e.g. `h.gw.ivr_refused`).
    pub fn drain(&mut self) {
        while let Some(o) = self.gw.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => {
                    self.sent.push((peer, String::from_utf8(bytes).unwrap()))
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    pub fn recv(&mut self, peer: Peer, msg: &str) {
        self.gw.handle_message(self.now, peer, msg.as_bytes());
        self.drain();
    }

    pub fn recv_bytes(&mut self, peer: Peer, msg: &[u8]) {
        self.gw.handle_message(self.now, peer, msg);
        self.drain();
    }

    /// Advance simulated time to `to`, running every timer on the way in order.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(t) = self.gw.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.gw.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    pub fn accept(&mut self, call: u64, port: u16, grant: Option<JoinGrant>) {
        self.gw.accept(self.now, call, port, grant);
        self.drain();
    }

    pub fn take_sent(&mut self) -> Vec<String> {
        self.sent.drain(..).map(|(_, m)| m).collect()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The status codes of everything sent since the last take.
    pub fn statuses(&mut self) -> Vec<u16> {
        self.take_sent().iter().map(|m| status(m)).collect()
    }

    /// The one call an INVITE started.
    pub fn incoming_call(&mut self) -> u64 {
        let events = self.take_events();
        events
            .iter()
            .find_map(|e| match e {
                Event::Incoming { call, .. } => Some(*call),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Incoming event in {events:?}"))
    }
}

pub fn status(msg: &str) -> u16 {
    if let Some(rest) = msg.strip_prefix("SIP/2.0 ") {
        rest[..3].parse().unwrap()
    } else {
        0 // a request
    }
}

pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n\r\n").next()?.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// A request written like a device writes it.
pub struct Req {
    pub method: &'static str,
    pub uri: String,
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
    pub transport: &'static str,
    pub extra: Vec<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Req {
    pub fn invite(user: &str, call_id: &str) -> Self {
        Self {
            method: "INVITE",
            uri: format!("sip:{user}@127.0.0.1:5060"),
            branch: format!("z9hG4bK-{call_id}-1"),
            call_id: call_id.into(),
            from_tag: "dev1".into(),
            to_tag: None,
            cseq: 1,
            transport: "UDP",
            extra: Vec::new(),
            content_type: Some("application/sdp".into()),
            body: AUDIO_OFFER.into(),
        }
    }

    pub fn options() -> Self {
        Self {
            method: "OPTIONS",
            uri: "sip:127.0.0.1:5060".into(),
            branch: format!("z9hG4bK-opt-{}", fastrand::u32(..)),
            call_id: format!("opt-{}", fastrand::u32(..)),
            from_tag: "o1".into(),
            to_tag: None,
            cseq: 1,
            transport: "UDP",
            extra: Vec::new(),
            content_type: None,
            body: String::new(),
        }
    }

    /// An in-dialog request after `invite`, answered with our tag `to_tag`.
    pub fn in_dialog(invite: &Req, method: &'static str, cseq: u32, to_tag: &str) -> Self {
        Self {
            method,
            uri: "sip:convene@127.0.0.1:5060".into(),
            branch: format!("z9hG4bK-{}-{cseq}-{method}", invite.call_id),
            call_id: invite.call_id.clone(),
            from_tag: invite.from_tag.clone(),
            to_tag: Some(to_tag.into()),
            cseq,
            transport: invite.transport,
            extra: Vec::new(),
            content_type: None,
            body: String::new(),
        }
    }

    pub fn with(mut self, header: &str) -> Self {
        self.extra.push(header.into());
        self
    }

    pub fn body(mut self, content_type: &str, body: &str) -> Self {
        self.content_type = Some(content_type.into());
        self.body = body.into();
        self
    }

    pub fn no_body(mut self) -> Self {
        self.content_type = None;
        self.body.clear();
        self
    }

    pub fn text(&self) -> String {
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let cseq_method = if self.method == "ACK" {
            "ACK"
        } else {
            self.method
        };
        let mut s = format!(
            "{} {} SIP/2.0\r\nVia: SIP/2.0/{} 127.0.0.1:5090;branch={};rport\r\nFrom: \"Tandberg C20\" <sip:room@127.0.0.1:5090>;tag={}\r\nTo: <sip:1234567890@127.0.0.1>{to_tag}\r\nCall-ID: {}\r\nCSeq: {} {cseq_method}\r\nContact: <sip:room@127.0.0.1:5090>\r\nMax-Forwards: 70\r\n",
            self.method,
            self.uri,
            self.transport,
            self.branch,
            self.from_tag,
            self.call_id,
            self.cseq
        );
        for h in &self.extra {
            s.push_str(h);
            s.push_str("\r\n");
        }
        if let Some(ct) = &self.content_type {
            s.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        s.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        ));
        s
    }
}

/// The To tag we put in a response.
pub fn to_tag(msg: &str) -> String {
    let to = header(msg, "To").unwrap();
    to.split(";tag=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// ACK for a 2xx (new branch, same CSeq number).
pub fn ack(invite: &Req, to_tag: &str) -> String {
    let mut a = Req::in_dialog(invite, "ACK", invite.cseq, to_tag);
    a.branch = format!("z9hG4bK-ack-{}-{}", invite.call_id, invite.cseq);
    a.text()
}

/// ACK for a non-2xx (same branch as the INVITE, RFC 3261 §17.1.1.3).
pub fn ack_non2xx(invite: &Req, to_tag: &str) -> String {
    let mut a = Req::in_dialog(invite, "ACK", invite.cseq, to_tag);
    a.branch = invite.branch.clone();
    a.uri = invite.uri.clone();
    a.text()
}
