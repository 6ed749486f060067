//! The checks every incoming SIP message passes before anything acts on it, and the typed view
//! ([`SipRequest`], [`SipResponse`]) the rest of the gateway works with.
//!
//! Parsing is rsipstack's (`rsipstack::sip`); what it does not do, we do here in front of it: size
//! limits, the version and URI scheme checks, mandatory headers, a Content-Length that matches the
//! body, and a method it does not know. Each refusal says which SIP answer it deserves (400, 505,
//! 513, 416, 501) or that no answer is possible (no usable Via), so the caller answers or counts a
//! drop; nothing here panics on any input (see `tests/malformed.rs` and the fuzz target).

use std::fmt;

use rsipstack::sip::Method;
use rsipstack::sip::headers::Header;

use super::compose::{build_response, sanitize};

/// Largest message we accept over any transport. Room systems' INVITEs with video and BFCP are
/// about 3 KiB; 32 KiB leaves room for long Record-Route sets while bounding what one peer can make
/// us hold.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest header section; longer ones are answered 513 like an oversized message.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in one message.
pub const MAX_HEADERS: usize = 128;

/// Methods this gateway implements; others are known to the parser but answered 501.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
/// Bodies we read.
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/media_control+xml";
/// Extensions we support.
pub const SUPPORTED: &str = "timer";

/// Why a message was refused before reaching a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("{0}")]
    BadRequest(String),
    #[error("version {0:?} is not SIP/2.0")]
    WrongVersion(String),
    #[error("message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("URI scheme {0:?} is not sip or sips")]
    UnsupportedScheme(String),
    #[error("method {0:?} is not implemented")]
    NotImplemented(String),
}

impl Malformed {
    /// The status code the refusal deserves.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::WrongVersion(_) => 505,
            Self::TooLarge => 513,
            Self::UnsupportedScheme(_) => 416,
            Self::NotImplemented(_) => 501,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "malformed",
            Self::WrongVersion(_) => "wrong_version",
            Self::TooLarge => "too_large",
            Self::UnsupportedScheme(_) => "unsupported_scheme",
            Self::NotImplemented(_) => "not_implemented",
        }
    }
}

/// The outcome of looking at one message.
#[derive(Debug)]
pub enum Inbound {
    Request(Box<SipRequest>),
    Response(Box<SipResponse>),
    /// Refused; `answer` is the error response to send back, if the message said where to.
    Refused {
        reason: Malformed,
        answer: Option<Vec<u8>>,
    },
}

/// One header as it was on the wire (compact names expanded, value trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    pub name: String,
    pub value: String,
}

/// A request that passed the checks, with what the gateway reads from it already typed.
#[derive(Debug, Clone)]
pub struct SipRequest {
    pub method: Method,
    /// The Request-URI as written.
    pub uri: String,
    /// Its user part (the dialled number or name), if any.
    pub uri_user: Option<String>,
    /// Every Via, top first, as written (copied into responses).
    pub vias: Vec<String>,
    /// The top Via's branch (`z9hG4bK...` for RFC 3261 peers).
    pub branch: String,
    /// The top Via's transport and sent-by, for logs.
    pub via_transport: String,
    /// Whether the top Via asks for responses to the source port (`rport`, RFC 3581).
    pub via_rport: bool,
    /// The top Via's sent-by port, where responses go over UDP without `rport` (RFC 3261 §18.2.2).
    pub via_port: Option<u16>,
    pub from: String,
    pub from_tag: Option<String>,
    /// The caller's display name (From), unquoted.
    pub from_display: Option<String>,
    /// The From URI's user part.
    pub from_user: Option<String>,
    pub to: String,
    pub to_tag: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    /// The Contact URI (without angle brackets), if any.
    pub contact: Option<String>,
    pub record_route: Vec<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub headers: Vec<RawHeader>,
}

/// A response (to a request we sent: BYE).
#[derive(Debug, Clone)]
pub struct SipResponse {
    pub status: u16,
    pub branch: String,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
}

impl SipRequest {
    /// The first header of that name (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// All values of a comma-separated list header, tokens lower-cased.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Whether the body is of this MIME type (parameters ignored).
    pub fn body_is(&self, mime: &str) -> bool {
        self.content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case(mime))
    }
}

fn header<'a>(headers: &'a [RawHeader], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Compact header forms (RFC 3261 §7.3.3 and extensions) to their full names, so later lookups need
/// only one spelling.
fn expand(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        "x" | "X" => "Session-Expires",
        "s" | "S" => "Subject",
        "e" | "E" => "Content-Encoding",
        _ => name,
    }
}

/// The start line and headers of a message, read leniently: enough to answer even a broken one.
struct Head {
    start: String,
    headers: Vec<RawHeader>,
}

fn read_head(text: &str) -> Result<Head, Malformed> {
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("").trim().to_owned();
    let mut headers: Vec<RawHeader> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 §7.3.1).
            match headers.last_mut() {
                Some(last) => {
                    last.value.push(' ');
                    last.value.push_str(line.trim());
                }
                None => {
                    return Err(Malformed::BadRequest(
                        "continuation before any header".into(),
                    ));
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Malformed::BadRequest(format!(
                "header line without a colon: {:?}",
                truncate(line, 40)
            )));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(Malformed::BadRequest(format!(
                "bad header name {:?}",
                truncate(name, 40)
            )));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(Malformed::TooLarge);
        }
        headers.push(RawHeader {
            name: expand(name).to_owned(),
            value: value.trim().to_owned(),
        });
    }
    Ok(Head { start, headers })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Look at one complete message (a UDP datagram, or one message framed off a stream).
pub fn inspect(bytes: &[u8]) -> Inbound {
    // Split head and body; a message without the blank line is truncated but may still say where
    // to answer, so its head is read anyway.
    let (head_bytes, body, complete) = match find(bytes, b"\r\n\r\n") {
        Some(i) => (&bytes[..i], &bytes[i + 4..], true),
        None => (bytes, &[][..], false),
    };
    let head_text = String::from_utf8_lossy(&head_bytes[..head_bytes.len().min(MAX_HEAD_BYTES)]);
    let head = read_head(&head_text);
    let refuse = |reason: Malformed, head: Option<&Head>| Inbound::Refused {
        answer: head.and_then(|h| error_answer(h, &reason)),
        reason,
    };
    let head = match head {
        Ok(h) => h,
        Err(reason) => {
            // Whatever could be read may still name a Via: try a lenient read of the lines before the
            // bad one so the sender learns what was wrong.
            let partial = read_head_prefix(&head_text);
            return refuse(reason, partial.as_ref());
        }
    };
    if bytes.len() > MAX_MESSAGE_BYTES || head_bytes.len() > MAX_HEAD_BYTES {
        return refuse(Malformed::TooLarge, Some(&head));
    }
    if head.start.starts_with("SIP/") {
        return match response(&head) {
            Some(r) => Inbound::Response(Box::new(r)),
            // A broken response cannot be answered; the caller counts it.
            None => Inbound::Refused {
                reason: Malformed::BadRequest("unreadable response".into()),
                answer: None,
            },
        };
    }
    if !complete {
        return refuse(
            Malformed::BadRequest("truncated: no blank line after the headers".into()),
            Some(&head),
        );
    }
    match request(&head, body) {
        Ok(r) => Inbound::Request(Box::new(r)),
        Err(reason) => refuse(reason, Some(&head)),
    }
}

/// The well-formed header lines before the first bad one.
fn read_head_prefix(text: &str) -> Option<Head> {
    let mut kept = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            match line.split_once(':') {
                Some((name, _))
                    if !name.trim().is_empty() && name.trim().bytes().all(is_token_byte) => {}
                _ => break,
            }
        }
        if i > 0 {
            kept.push_str("\r\n");
        }
        kept.push_str(line);
    }
    read_head(&kept).ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn request(head: &Head, body: &[u8]) -> Result<SipRequest, Malformed> {
    let mut parts = head.start.split_whitespace();
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::BadRequest(format!(
            "bad request line {:?}",
            truncate(&head.start, 60)
        )));
    };
    if !method.bytes().all(is_token_byte) {
        return Err(Malformed::BadRequest("bad method".into()));
    }
    if version != "SIP/2.0" {
        return Err(Malformed::WrongVersion(truncate(version, 20)));
    }
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return Err(Malformed::UnsupportedScheme(truncate(scheme, 20)));
    }
    let method: Method = match method.parse() {
        Ok(m) => m,
        Err(_) => return Err(Malformed::NotImplemented(truncate(method, 20))),
    };
    let headers = &head.headers;
    let need = |name: &str| {
        header(headers, name).ok_or_else(|| Malformed::BadRequest(format!("missing {name} header")))
    };
    let vias: Vec<String> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Via"))
        .map(|h| h.value.clone())
        .collect();
    let top_via = vias
        .first()
        .ok_or_else(|| Malformed::BadRequest("missing Via header".into()))?;
    let from = need("From")?;
    let to = need("To")?;
    let call_id = need("Call-ID")?;
    let cseq_text = need("CSeq")?;
    if call_id.is_empty() {
        return Err(Malformed::BadRequest("empty Call-ID".into()));
    }
    let cseq = rsipstack::sip::typed::CSeq::parse(cseq_text)
        .map_err(|_| Malformed::BadRequest(format!("bad CSeq {:?}", truncate(cseq_text, 40))))?;
    let body_len = match header(headers, "Content-Length") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| Malformed::BadRequest("bad Content-Length".into()))?,
        None => body.len(),
    };
    if body_len > body.len() {
        return Err(Malformed::BadRequest(format!(
            "Content-Length {body_len} but only {} bytes of body",
            body.len()
        )));
    }
    // Bytes beyond Content-Length are ignored (RFC 3261 §18.3).
    let body = body[..body_len].to_vec();
    if cseq.method != method {
        return Err(Malformed::BadRequest(
            "CSeq method differs from the request method".into(),
        ));
    }
    let parsed_uri = rsipstack::sip::Uri::try_from(uri)
        .map_err(|_| Malformed::BadRequest(format!("bad Request-URI {:?}", truncate(uri, 60))))?;
    // One Via header line may carry several hops ("Via: a, b"); the top one is the first.
    let top_via = split_list(top_via).into_iter().next().unwrap_or_default();
    let via = rsipstack::sip::typed::Via::parse(&top_via)
        .map_err(|_| Malformed::BadRequest("bad Via header".into()))?;
    let branch = via
        .branch()
        .map(|b| b.to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Malformed::BadRequest("Via without a branch".into()))?;
    let from_typed = rsipstack::sip::typed::From::parse(from)
        .map_err(|_| Malformed::BadRequest("bad From header".into()))?;
    let to_typed = rsipstack::sip::typed::To::parse(to)
        .map_err(|_| Malformed::BadRequest("bad To header".into()))?;
    let contact = match header(headers, "Contact") {
        Some(c) => Some(
            rsipstack::sip::typed::Contact::parse(c)
                .map_err(|_| Malformed::BadRequest("bad Contact header".into()))?
                .uri
                .to_string(),
        ),
        None => None,
    };
    let record_route = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Record-Route"))
        .flat_map(|h| split_list(&h.value))
        .collect();
    let from_display = from_typed
        .display_name
        .as_deref()
        .map(|d| d.trim().trim_matches('"').replace("\\\"", "\""))
        .filter(|d| !d.is_empty());
    Ok(SipRequest {
        method,
        uri: uri.to_owned(),
        uri_user: parsed_uri
            .user()
            .map(str::to_owned)
            .filter(|u| !u.is_empty()),
        branch,
        via_transport: format!("{} {}", via.transport, via.sent_by()),
        via_rport: via.rport().is_some(),
        via_port: via.sent_by().port.map(u16::from),
        vias,
        from: from.to_owned(),
        from_tag: from_typed.tag().map(|t| t.to_string()),
        from_display,
        from_user: from_typed.uri.user().map(str::to_owned),
        to: to.to_owned(),
        to_tag: to_typed.tag().map(|t| t.to_string()),
        call_id: call_id.to_owned(),
        cseq: cseq.seq,
        cseq_method: cseq.method,
        contact,
        record_route,
        content_type: header(headers, "Content-Type").map(str::to_owned),
        body,
        headers: head.headers.clone(),
    })
}

/// Split a header list on commas outside angle brackets and quotes.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(value[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim().to_owned());
    out.retain(|s| !s.is_empty());
    out
}

fn response(head: &Head) -> Option<SipResponse> {
    let mut parts = head.start.splitn(3, ' ');
    let _version = parts.next()?;
    let status: u16 = parts.next()?.parse().ok()?;
    if !(100..700).contains(&status) {
        return None;
    }
    let via = split_list(header(&head.headers, "Via")?)
        .into_iter()
        .next()?;
    let via = rsipstack::sip::typed::Via::parse(&via).ok()?;
    let cseq = rsipstack::sip::typed::CSeq::parse(header(&head.headers, "CSeq")?).ok()?;
    Some(SipResponse {
        status,
        branch: via.branch()?.to_string(),
        call_id: header(&head.headers, "Call-ID")?.to_owned(),
        cseq: cseq.seq,
        cseq_method: cseq.method,
    })
}

/// The error answer to a refused request, if it names where answers go (a Via) and is not an ACK
/// (never answered, RFC 3261 §17.2.3).
fn error_answer(head: &Head, reason: &Malformed) -> Option<Vec<u8>> {
    if head.start.starts_with("SIP/") || head.start.starts_with("ACK ") {
        return None;
    }
    let vias: Vec<&RawHeader> = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Via"))
        .collect();
    if vias.is_empty() {
        return None;
    }
    let mut headers: Vec<Header> = vias
        .iter()
        .map(|h| Header::Other("Via".into(), h.value.clone()))
        .collect();
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = header(&head.headers, name) {
            headers.push(Header::Other(name.into(), v.to_owned()));
        }
    }
    if reason.status() == 501 {
        headers.push(Header::Other("Allow".into(), ALLOW.into()));
    }
    if reason.status() == 416 {
        // Nothing to add: the reason phrase says which scheme was refused.
    }
    // A Warning (RFC 3261 §20.43, code 399: miscellaneous) tells the sender what exactly was wrong.
    headers.push(Header::Other(
        "Warning".into(),
        format!("399 convene \"{}\"", sanitize(&reason.to_string())),
    ));
    headers.push(Header::Other("Content-Length".into(), "0".into()));
    Some(build_response(reason.status(), None, headers, Vec::new()))
}

impl fmt::Display for SipRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (call {})", self.method, self.uri, self.call_id)
    }
}
