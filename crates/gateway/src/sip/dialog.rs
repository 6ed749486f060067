//! A dialog as the UAS sees it (RFC 3261 §12): the identifiers, the remote target and route set, and
//! the CSeq spaces of both sides. Builds the in-dialog requests we send (BYE, UPDATE).

use rsipstack::sip::Method;

use super::compose::{OutRequest, random_token};
use super::message::{Malformed, SipRequest};
use super::transport::{LocalAddrs, Peer};

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Their From header (our To in requests we send).
    pub remote_party: String,
    /// Their To header with our tag (our From).
    pub local_party: String,
    /// Where in-dialog requests go: the caller's Contact.
    pub remote_target: String,
    /// Record-Route of the INVITE, in order (the UAS route set, §12.1.1).
    pub route_set: Vec<String>,
    pub remote_cseq: u32,
    pub local_cseq: u32,
    pub peer: Peer,
}

impl Dialog {
    /// The dialog an INVITE creates, with our tag.
    pub fn from_invite(req: &SipRequest, local_tag: String, peer: Peer) -> Self {
        let local_party = match &req.to_tag {
            Some(_) => req.to.clone(),
            None => format!("{};tag={local_tag}", req.to),
        };
        let remote_target = req.contact.clone().unwrap_or_else(|| {
            // Without a Contact, the From URI is the best target we have.
            let from = req.from.as_str();
            let start = from.find('<').map(|i| i + 1).unwrap_or(0);
            let end = from[start..]
                .find('>')
                .map(|i| start + i)
                .unwrap_or(from.len());
            from[start..end].split(';').next().unwrap_or("").to_owned()
        });
        Self {
            call_id: req.call_id.clone(),
            local_tag,
            remote_tag: req.from_tag.clone(),
            remote_party: req.from.clone(),
            local_party,
            remote_target,
            route_set: req.record_route.clone(),
            remote_cseq: req.cseq,
            local_cseq: 0,
            peer,
        }
    }

    /// Whether an in-dialog request belongs here (To tag ours, From tag theirs).
    pub fn matches(&self, req: &SipRequest) -> bool {
        req.call_id == self.call_id
            && req.to_tag.as_deref() == Some(self.local_tag.as_str())
            && req.from_tag == self.remote_tag
    }

    /// Check and record the CSeq of an in-dialog request: lower than the last one is out of order
    /// (§12.2.2), answered 500.
    pub fn accept_cseq(&mut self, req: &SipRequest) -> bool {
        if req.method == Method::Ack || req.method == Method::Cancel {
            return true;
        }
        if req.cseq < self.remote_cseq {
            return false;
        }
        self.remote_cseq = req.cseq;
        true
    }

    /// A new in-dialog request from us; returns the bytes and the branch of its Via.
    pub fn request(
        &mut self,
        method: Method,
        local: &LocalAddrs,
        extra: Vec<(String, String)>,
    ) -> Result<(String, Vec<u8>), Malformed> {
        self.local_cseq = self.local_cseq.max(1) + 1;
        let branch = format!("z9hG4bK{}", random_token());
        let transport = self.peer.transport;
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.token().to_ascii_uppercase(),
            local.sent_by(transport)
        );
        let bytes = OutRequest {
            method,
            uri: &self.remote_target,
            via,
            from: self.local_party.clone(),
            to: self.remote_party.clone(),
            call_id: &self.call_id,
            cseq: self.local_cseq,
            route: &self.route_set,
            contact: (method != Method::Bye).then(|| local.contact(transport)),
            extra,
        }
        .to_bytes()?;
        Ok((branch, bytes))
    }
}
