//! Transports as the sans-IO core sees them: where a message came from and goes back to, the
//! Contact we put in dialogs per transport, and the framing of SIP over a byte stream (TCP, TLS).
//!
//! Sockets themselves live in [`crate::net`]; nothing here does IO.

use std::fmt;
use std::net::SocketAddr;

use super::message::MAX_MESSAGE_BYTES;

/// The transport a message travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Reliable transports need no retransmissions of requests and non-2xx responses (RFC 3261 §17).
    pub fn reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }

    /// The `transport=` URI parameter and Via token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A connection of a stream transport, numbered by the IO edge.
pub type ConnId = u64;

/// A peer as the core addresses it: responses go back the way the request came (the same
/// connection for TCP/TLS, RFC 3261 §18.2.2; the source address for UDP, as `rport` asks, RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The connection, for stream transports.
    pub conn: Option<ConnId>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// The addresses we listen on, one per transport, as put in Contact and Via.
#[derive(Debug, Clone, Default)]
pub struct LocalAddrs {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    /// The host to advertise (the public IP), when it differs from the bound address.
    pub public_host: Option<std::net::IpAddr>,
}

impl LocalAddrs {
    fn addr(&self, transport: Transport) -> Option<SocketAddr> {
        let a = match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }?;
        Some(match self.public_host {
            Some(ip) => SocketAddr::new(ip, a.port()),
            None => a,
        })
    }

    /// The host:port we are reached at over `transport` (for Via and Contact).
    pub fn sent_by(&self, transport: Transport) -> String {
        match self.addr(transport) {
            Some(a) => a.to_string(),
            None => "convene.invalid".into(),
        }
    }

    /// Our Contact for a dialog on `transport`. It names the transport explicitly: rsipstack's
    /// default names UDP for every dialog, which sends a TCP or TLS caller's ACK and BYE to a UDP
    /// port it never used (found in the research, docs/research/sip-stack.md).
    /// TLS is named with `sip:` and `transport=tls` rather than `sips:`, which would promise TLS on
    /// every hop beyond the device too.
    pub fn contact(&self, transport: Transport) -> String {
        let scheme = "sip";
        let param = match transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        format!("<{scheme}:convene@{}{param}>", self.sent_by(transport))
    }
}

/// Why a stream was given up: it cannot be framed any more, so the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a message on a stream must carry Content-Length")]
    NoContentLength,
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
}

/// Cuts SIP messages off a byte stream (RFC 3261 §18.3: Content-Length is mandatory on streams).
/// Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.buf.drain(..skip);
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > MAX_MESSAGE_BYTES {
                return Err(FramingError::TooLarge);
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]);
        let mut length = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                    length = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| FramingError::BadContentLength)?,
                    );
                }
            }
        }
        let length = length.ok_or(FramingError::NoContentLength)?;
        let total = end + 4 + length;
        if total > MAX_MESSAGE_BYTES {
            return Err(FramingError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let message: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_messages() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut f = StreamFramer::default();
        f.push(b"\r\n\r\n");
        f.push(&m[..10]);
        assert_eq!(f.next_message(), Ok(None));
        f.push(&m[10..]);
        f.push(m);
        assert_eq!(f.next_message(), Ok(Some(m.to_vec())));
        assert_eq!(f.next_message(), Ok(Some(m.to_vec())));
        assert_eq!(f.next_message(), Ok(None));
    }

    #[test]
    fn refuses_what_cannot_be_framed() {
        let mut f = StreamFramer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::NoContentLength));
        let mut f = StreamFramer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::TooLarge));
        let mut f = StreamFramer::default();
        f.push(&vec![b'a'; MAX_MESSAGE_BYTES + 1]);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge));
    }

    #[test]
    fn contact_names_the_transport() {
        let l = LocalAddrs {
            udp: Some("127.0.0.1:5060".parse().unwrap()),
            tcp: Some("127.0.0.1:5060".parse().unwrap()),
            tls: Some("127.0.0.1:5061".parse().unwrap()),
            public_host: None,
        };
        assert_eq!(l.contact(Transport::Udp), "<sip:convene@127.0.0.1:5060>");
        assert_eq!(
            l.contact(Transport::Tcp),
            "<sip:convene@127.0.0.1:5060;transport=tcp>"
        );
        assert_eq!(
            l.contact(Transport::Tls),
            "<sip:convene@127.0.0.1:5061;transport=tls>"
        );
    }
}
