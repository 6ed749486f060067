//! The dial plan: what a Request-URI's user part asks for.
//!
//! `sip:1234567890@host` names a meeting (its 10-digit ID, the same namespace web users type);
//! `sip:meet@host` and `sip:u@host` reach the IVR, which asks for the ID by DTMF. Anything else is
//! refused at once with 404 and a reason phrase saying so: a room system shows that phrase at once,
//! where answering to say it would cost a call setup and a prompt's length (see docs/sip.md).

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// A meeting ID, to be checked by the admission rule.
    Meeting(String),
    /// The IVR: collect the meeting ID by DTMF.
    Ivr,
    /// Not something this gateway answers.
    Unknown,
}

/// Whether `s` has the shape of a meeting ID (10 digits).
pub fn is_meeting_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Route a Request-URI user part.
pub fn route(user: Option<&str>) -> Dial {
    let Some(user) = user else {
        return Dial::Unknown;
    };
    // Some room systems dial "+1234567890" style numbers or with visual separators.
    let digits: String = user
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' '))
        .collect();
    if is_meeting_id(&digits) {
        return Dial::Meeting(digits);
    }
    if user.eq_ignore_ascii_case("meet") || user.eq_ignore_ascii_case("u") {
        return Dial::Ivr;
    }
    Dial::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(Some("1234567890")),
            Dial::Meeting("1234567890".into())
        );
        assert_eq!(
            route(Some("123-456-7890")),
            Dial::Meeting("1234567890".into())
        );
        assert_eq!(route(Some("meet")), Dial::Ivr);
        assert_eq!(route(Some("U")), Dial::Ivr);
        assert_eq!(route(Some("123456789")), Dial::Unknown);
        assert_eq!(route(Some("12345678901")), Dial::Unknown);
        assert_eq!(route(Some("alice")), Dial::Unknown);
        assert_eq!(route(None), Dial::Unknown);
    }
}
