//! The IVR: meeting IDs keyed as DTMF (RTP telephone-events or INFO), three tries, then goodbye.
//!
//! What the caller hears, as [`Event::Prompt`]s: [`Prompt::EnterMeetingId`] once the call is
//! established (its ACK); after an ID that is unknown, refused or not 10 digits,
//! [`Prompt::TryAgain`]; after 30 s without `#`, [`Prompt::EnterMeetingId`] again; on admission,
//! [`Prompt::Joining`]; after the last failed try, [`Prompt::GoodbyeNotFound`] and the BYE once it
//! has been heard ([`GOODBYE_TAIL`] after its end).

use super::*;

/// How long after the end of the goodbye prompt the BYE waits: the prompt's last packets are still
/// in flight and in the device's jitter buffer when the gateway has sent them, and a BYE that
/// overtakes them cuts the caller's "Goodbye" short.
pub const GOODBYE_TAIL: Duration = Duration::from_millis(500);

impl Gateway {
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
        // After Joined: the call's audio is in its meeting by then, and the prompt plays over the
        // first second of the meeting's mix.
        self.event(Event::Prompt {
            call,
            prompt: Prompt::Joining,
        });
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
        self.ivr_failed_try(now, call, Prompt::TryAgain);
    }

    /// The welcome prompt, once per IVR call.
    pub(super) fn ivr_greet(&mut self, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Phase::Ivr { greeted, .. } = &mut c.phase else {
            return;
        };
        if *greeted {
            return;
        }
        *greeted = true;
        self.event(Event::Prompt {
            call,
            prompt: Prompt::EnterMeetingId,
        });
    }

    /// A try failed: `again` asks for the next one, or after the last the goodbye is spoken and
    /// the BYE follows it.
    pub(super) fn ivr_failed_try(&mut self, now: Instant, call: CallId, again: Prompt) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Phase::Ivr {
            collector,
            tries_left,
            checking,
            ..
        } = &mut c.phase
        else {
            return;
        };
        *tries_left = tries_left.saturating_sub(1);
        *checking = false;
        collector.reset(now);
        if *tries_left > 0 {
            return self.event(Event::Prompt {
                call,
                prompt: again,
            });
        }
        tracing::info!(call, "IVR: no valid meeting ID after all tries, goodbye");
        let goodbye = Prompt::GoodbyeNotFound;
        self.set_phase(
            call,
            Phase::Farewell {
                bye_at: now + goodbye.duration() + GOODBYE_TAIL,
            },
        );
        self.event(Event::Prompt {
            call,
            prompt: goodbye,
        });
    }

    pub(super) fn key(&mut self, now: Instant, call: CallId, digit: char) {
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
                self.ivr_failed_try(now, call, Prompt::TryAgain);
            }
        }
    }
}
