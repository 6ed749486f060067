//! RFC 4028 session timers, the UAS side: what to answer to an INVITE's (or UPDATE's)
//! Session-Expires and Min-SE, and when the session is refreshed or given up.
//!
//! We prefer the caller to refresh (`refresher=uac`, the usual choice of room systems); when it asks
//! us to, we refresh with UPDATE, which every device we target allows.

use std::time::Duration;

use super::message::SipRequest;

/// Our Min-SE: RFC 4028's minimum, so that no valid interval is refused needlessly.
pub const MIN_SE: u32 = 90;

/// Who refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// What a request's session-timer headers lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// No session timer for this session.
    Off,
    /// Refuse with 422 and this Min-SE.
    TooSmall { min_se: u32 },
    /// Run a timer of `interval` seconds.
    On {
        interval: u32,
        refresher: Refresher,
        /// Whether the response carries `Require: timer` (only when the caller supports it).
        require: bool,
    },
}

impl Negotiation {
    /// The response headers for an `On` negotiation.
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            Self::On {
                interval,
                refresher,
                require,
            } => {
                let r = match refresher {
                    Refresher::Uac => "uac",
                    Refresher::Uas => "uas",
                };
                let mut h = vec![(
                    "Session-Expires".to_owned(),
                    format!("{interval};refresher={r}"),
                )];
                if *require {
                    h.push(("Require".to_owned(), "timer".to_owned()));
                }
                h
            }
            _ => Vec::new(),
        }
    }
}

fn parse_se(value: &str) -> Option<(u32, Option<Refresher>)> {
    let mut parts = value.split(';');
    let delta = parts.next()?.trim().parse().ok()?;
    let mut refresher = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("refresher")
        {
            refresher = match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            };
        }
    }
    Some((delta, refresher))
}

/// Decide for `req` (RFC 4028 §9).
pub fn negotiate(req: &SipRequest) -> Negotiation {
    let Some(se) = req.header("Session-Expires") else {
        return Negotiation::Off;
    };
    let Some((interval, asked)) = parse_se(se) else {
        return Negotiation::Off;
    };
    if interval < MIN_SE {
        return Negotiation::TooSmall { min_se: MIN_SE };
    }
    let supported = req.tokens("Supported").iter().any(|t| t == "timer")
        || req.tokens("Require").iter().any(|t| t == "timer");
    if supported {
        return Negotiation::On {
            interval,
            refresher: asked.unwrap_or(Refresher::Uac),
            require: true,
        };
    }
    // A caller without the extension cannot refresh: we would have to, with UPDATE, and only if it
    // takes UPDATE. Otherwise the session simply has no timer.
    if req.tokens("Allow").iter().any(|t| t == "update") {
        Negotiation::On {
            interval,
            refresher: Refresher::Uas,
            require: false,
        }
    } else {
        Negotiation::Off
    }
}

/// When we act on a running timer of `interval` seconds, counted from the last refresh: refresh at
/// half the interval (RFC 4028 §10), or as the non-refresher, end the session before it expires by
/// min(32 s, interval/3).
pub fn action_after(interval: u32, refresher: Refresher) -> Duration {
    let interval = Duration::from_secs(u64::from(interval));
    match refresher {
        Refresher::Uas => interval / 2,
        Refresher::Uac => interval - (interval / 3).min(Duration::from_secs(32)),
    }
}
