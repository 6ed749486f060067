//! Writing SIP: responses to requests (RFC 3261 §8.2.6) and the in-dialog requests we originate,
//! serialised with rsipstack's writer.

use rsipstack::sip::headers::Header;
use rsipstack::sip::{Method, Response, StatusCode, Version};

use super::message::{Malformed, SipRequest};

/// Text safe in a reason phrase or quoted Warning: no control characters or quotes, bounded.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .take(120)
        .collect()
}

/// Serialise a response with rsipstack's writer. `reason` overrides the standard phrase (e.g. a 404
/// that says which meeting is unknown).
pub fn build_response(
    status: u16,
    reason: Option<&str>,
    headers: Vec<Header>,
    body: Vec<u8>,
) -> Vec<u8> {
    let status_code = match reason {
        Some(r) => StatusCode::Other(status, sanitize(r)),
        None => StatusCode::from(status),
    };
    Response {
        status_code,
        wire_reason: None,
        version: Version::V2,
        headers: headers.into(),
        body,
    }
    .to_bytes()
}

/// What to put in a response besides the headers copied from the request.
#[derive(Debug, Default, Clone)]
pub struct Reply {
    pub status: u16,
    pub reason: Option<String>,
    /// Our To tag (dialog-creating responses and every final response to an INVITE).
    pub to_tag: Option<String>,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn tag(mut self, tag: Option<&str>) -> Self {
        self.to_tag = tag.map(str::to_owned);
        self
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.content_type = Some(content_type.to_owned());
        self.body = body;
        self
    }
}

/// Build the response to `req` (RFC 3261 §8.2.6: Via, From, Call-ID, CSeq copied; To copied with
/// our tag added unless it has one).
pub fn respond(req: &SipRequest, reply: &Reply) -> Vec<u8> {
    let mut headers: Vec<Header> = req
        .vias
        .iter()
        .map(|v| Header::Other("Via".into(), v.clone()))
        .collect();
    headers.push(Header::Other("From".into(), req.from.clone()));
    let to = match (&req.to_tag, &reply.to_tag) {
        (None, Some(tag)) if reply.status > 100 => format!("{};tag={tag}", req.to),
        _ => req.to.clone(),
    };
    headers.push(Header::Other("To".into(), to));
    headers.push(Header::Other("Call-ID".into(), req.call_id.clone()));
    headers.push(Header::Other(
        "CSeq".into(),
        format!("{} {}", req.cseq, req.cseq_method),
    ));
    if (200..300).contains(&reply.status) || reply.status == 101 {
        // Record-Route is echoed in dialog-creating responses (RFC 3261 §12.1.1).
        for rr in &req.record_route {
            headers.push(Header::Other("Record-Route".into(), rr.clone()));
        }
    }
    for (name, value) in &reply.headers {
        headers.push(Header::Other(name.clone(), value.clone()));
    }
    headers.push(Header::Other("Server".into(), "Convene".into()));
    if let Some(ct) = &reply.content_type {
        headers.push(Header::Other("Content-Type".into(), ct.clone()));
    }
    headers.push(Header::Other(
        "Content-Length".into(),
        reply.body.len().to_string(),
    ));
    build_response(
        reply.status,
        reply.reason.as_deref(),
        headers,
        reply.body.clone(),
    )
}

/// A request we originate (BYE, in a dialog), serialised with rsipstack's writer.
pub struct OutRequest<'a> {
    pub method: Method,
    pub uri: &'a str,
    pub via: String,
    pub from: String,
    pub to: String,
    pub call_id: &'a str,
    pub cseq: u32,
    pub route: &'a [String],
    pub contact: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl OutRequest<'_> {
    pub fn to_bytes(&self) -> Result<Vec<u8>, Malformed> {
        let uri = rsipstack::sip::Uri::try_from(self.uri)
            .map_err(|_| Malformed::BadRequest(format!("bad target URI {:?}", self.uri)))?;
        let mut headers: Vec<Header> = vec![
            Header::Other("Via".into(), self.via.clone()),
            Header::Other("Max-Forwards".into(), "70".into()),
            Header::Other("From".into(), self.from.clone()),
            Header::Other("To".into(), self.to.clone()),
            Header::Other("Call-ID".into(), self.call_id.to_owned()),
            Header::Other("CSeq".into(), format!("{} {}", self.cseq, self.method)),
        ];
        for r in self.route {
            headers.push(Header::Other("Route".into(), r.clone()));
        }
        if let Some(c) = &self.contact {
            headers.push(Header::Other("Contact".into(), c.clone()));
        }
        for (n, v) in &self.extra {
            headers.push(Header::Other(n.clone(), v.clone()));
        }
        headers.push(Header::Other("User-Agent".into(), "Convene".into()));
        headers.push(Header::Other("Content-Length".into(), "0".into()));
        Ok(rsipstack::sip::Request {
            method: self.method,
            uri,
            version: Version::V2,
            headers: headers.into(),
            body: Vec::new(),
        }
        .to_bytes())
    }
}

/// A random token for tags and branches: 16 hex digits.
pub fn random_token() -> String {
    format!("{:016x}", fastrand::u64(..))
}
