//! The IVR: meeting IDs keyed as DTMF (RTP telephone-events or INFO), three tries, then goodbye.

use super::*;

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
        self.ivr_failed_try(now, call);
    }

    pub(super) fn ivr_failed_try(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Phase::Ivr {
            collector,
            tries_left,
            checking,
        } = &mut c.phase
        else {
            return;
        };
        *tries_left = tries_left.saturating_sub(1);
        *checking = false;
        collector.reset(now);
        // Prompts ("that meeting ID is not valid, please try again") come with the audio path.
        if *tries_left == 0 {
            tracing::info!(call, "IVR: no valid meeting ID after all tries, goodbye");
            self.bye(now, call, EndReason::IvrGaveUp);
        }
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
                self.ivr_failed_try(now, call);
            }
        }
    }
}
