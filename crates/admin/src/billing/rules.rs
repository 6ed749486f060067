//! Active Pro, exactly as `media-targets.md` states it: a Pro user is Active Pro on a calendar day (UTC)
//! when they hosted a meeting that ended that day and at least one of: the meeting was scheduled; it
//! had more than two attendees; it had at least one recording event; an attendee dialed in; an attendee
//! joined with H.323 or SIP. Basic users cannot host; attendees are never charged. A user is billed at
//! most once per day, however many meetings qualify.

use time::{Date, OffsetDateTime, UtcOffset};

use crate::model::License;

/// What billing needs to know about one ended conference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceFacts {
    /// The host's licence when the meeting ended (None: no known host).
    pub host_license: Option<License>,
    pub scheduled: bool,
    /// Distinct attendees over the whole conference, the host included.
    pub attendees: usize,
    pub recorded: bool,
    pub dialed_in: bool,
    /// A SIP or H.323 room system took part.
    pub room_system: bool,
}

/// One reason a conference makes its host Active Pro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    Scheduled,
    MoreThanTwoAttendees,
    Recorded,
    DialIn,
    RoomSystem,
}

impl Criterion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::MoreThanTwoAttendees => "more_than_two_attendees",
            Self::Recorded => "recorded",
            Self::DialIn => "dial_in",
            Self::RoomSystem => "sip_or_h323",
        }
    }
}

/// The criteria the conference meets, if its host is billed at all; empty means no charge.
pub fn active_pro(facts: &ConferenceFacts) -> Vec<Criterion> {
    // Only Pro hosts are charged: Basic cannot host, and trials are free by definition.
    if facts.host_license != Some(License::Pro) {
        return Vec::new();
    }
    [
        (facts.scheduled, Criterion::Scheduled),
        (facts.attendees > 2, Criterion::MoreThanTwoAttendees),
        (facts.recorded, Criterion::Recorded),
        (facts.dialed_in, Criterion::DialIn),
        (facts.room_system, Criterion::RoomSystem),
    ]
    .into_iter()
    .filter_map(|(met, c)| met.then_some(c))
    .collect()
}

/// The reasons as stored and exported: criteria joined with `+`.
pub fn reason_text(criteria: &[Criterion]) -> String {
    criteria
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The UTC calendar day a conference that ended at `ended_at` is billed on.
pub fn billing_day(ended_at: OffsetDateTime) -> Date {
    ended_at.to_offset(UtcOffset::UTC).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn pro() -> ConferenceFacts {
        ConferenceFacts {
            host_license: Some(License::Pro),
            attendees: 2,
            ..Default::default()
        }
    }

    #[test]
    fn each_criterion_alone_bills_the_host() {
        let cases = [
            (
                ConferenceFacts {
                    scheduled: true,
                    ..pro()
                },
                Criterion::Scheduled,
            ),
            (
                ConferenceFacts {
                    attendees: 3,
                    ..pro()
                },
                Criterion::MoreThanTwoAttendees,
            ),
            (
                ConferenceFacts {
                    recorded: true,
                    ..pro()
                },
                Criterion::Recorded,
            ),
            (
                ConferenceFacts {
                    dialed_in: true,
                    ..pro()
                },
                Criterion::DialIn,
            ),
            (
                ConferenceFacts {
                    room_system: true,
                    ..pro()
                },
                Criterion::RoomSystem,
            ),
        ];
        for (facts, criterion) in cases {
            assert_eq!(active_pro(&facts), vec![criterion], "{facts:?}");
        }
    }

    #[test]
    fn an_unscheduled_two_person_call_is_not_billed() {
        assert!(active_pro(&pro()).is_empty());
        assert!(
            active_pro(&ConferenceFacts {
                attendees: 1,
                ..pro()
            })
            .is_empty()
        );
    }

    #[test]
    fn only_pro_hosts_are_billed() {
        let busy = ConferenceFacts {
            scheduled: true,
            attendees: 10,
            recorded: true,
            dialed_in: true,
            room_system: true,
            host_license: None,
        };
        for license in [
            None,
            Some(License::Basic),
            Some(License::ProTrial),
            Some(License::Plus),
        ] {
            let facts = ConferenceFacts {
                host_license: license,
                ..busy.clone()
            };
            assert!(active_pro(&facts).is_empty(), "{license:?}");
        }
        let all = active_pro(&ConferenceFacts {
            host_license: Some(License::Pro),
            ..busy
        });
        assert_eq!(
            reason_text(&all),
            "scheduled+more_than_two_attendees+recorded+dial_in+sip_or_h323"
        );
    }

    #[test]
    fn a_meeting_across_midnight_counts_on_the_day_it_ended() {
        // 23:50 -> 00:10 UTC: billed on the later day.
        assert_eq!(
            billing_day(datetime!(2026-11-25 00:10 UTC)),
            datetime!(2026-11-25 00:00 UTC).date()
        );
        // An end time given in another offset is still a UTC day.
        assert_eq!(
            billing_day(datetime!(2026-11-24 20:10 -05:00)),
            datetime!(2026-11-25 00:00 UTC).date()
        );
    }
}
