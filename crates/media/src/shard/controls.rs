//! Host controls: what only an attendee whose join token says `host` may do to the whole meeting.
//!
//! Today that is the recording flag. Media is not recorded yet; the flag and its events are real:
//! everyone in the meeting sees it, and billing counts recorded time from `RecordingStarted` /
//! `RecordingStopped` on the event bus.

use convene_core::{AttendeeRole, MeetingEvent, MeetingEventKind, MeetingId};

use super::Shard;
use super::model::Meeting;
use crate::signal::messages::{ErrorCode, ServerMessage};

impl Shard {
    /// The attendee at `idx` asks to start (`on`) or stop recording its meeting.
    pub(super) fn set_recording(&mut self, idx: usize, on: bool) {
        let attendee = &self.attendees[idx];
        if attendee.role != AttendeeRole::Host {
            // Checked here rather than in the front end: the shard owns the roster, and every
            // front end (the Chime SDK one too, later) must get the same answer.
            return self.reject(
                idx,
                ErrorCode::Forbidden,
                "only the meeting's host can start or stop recording",
            );
        }
        let (id, meeting_id) = (attendee.id, attendee.meeting.clone());
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        if meeting.recording == on {
            // Nothing changes, so nothing is emitted (billing must not see a second start), but the
            // sender still learns the state: its button may be out of date.
            let reply = recording_message(meeting);
            self.attendees[idx].send(reply);
            return;
        }
        meeting.recording = on;
        meeting.recording_by = Some(id);
        let reply = recording_message(meeting);
        tracing::info!(meeting = %meeting_id, attendee = %id, on, "recording changed");
        let kind = if on {
            MeetingEventKind::RecordingStarted { attendee: id }
        } else {
            MeetingEventKind::RecordingStopped { attendee: id }
        };
        self.bus
            .publish(MeetingEvent::now(meeting_id.clone(), kind));
        for &o in &self.meetings[&meeting_id].attendees {
            self.attendees[o].send(reply.clone());
        }
    }

    /// A meeting ended (or the server is stopping) while recording: close the recording first, so
    /// every `RecordingStarted` has its `RecordingStopped` before `MeetingEnded`.
    pub(super) fn stop_recording_at_end(&self, meeting_id: &MeetingId, meeting: &Meeting) {
        if !meeting.recording {
            return;
        }
        let Some(host) = meeting.recording_by else {
            return;
        };
        tracing::info!(meeting = %meeting_id, "meeting ended while recording; recording stopped");
        self.bus.publish(MeetingEvent::now(
            meeting_id.clone(),
            MeetingEventKind::RecordingStopped { attendee: host },
        ));
    }
}

impl Shard {
    /// The attendee at `idx` asks to turn HD mode on or off for its meeting.
    pub(super) fn set_hd_mode(&mut self, now: std::time::Instant, idx: usize, on: bool) {
        let attendee = &self.attendees[idx];
        if attendee.role != AttendeeRole::Host {
            return self.reject(
                idx,
                ErrorCode::Forbidden,
                "only the meeting's host can change HD mode",
            );
        }
        let meeting_id = attendee.meeting.clone();
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        if meeting.hd == on {
            self.attendees[idx].send(ServerMessage::HdMode { on });
            return;
        }
        meeting.hd = on;
        tracing::info!(meeting = %meeting_id, on, "HD mode changed");
        let attendees = meeting.attendees.clone();
        for &o in &attendees {
            self.attendees[o].send(ServerMessage::HdMode { on });
        }
        // New tiers apply at once: publishers' ceilings and every subscriber's allocation.
        self.update_publish_targets(now);
        for o in attendees {
            self.reallocate(now, o);
        }
    }
}

/// The `recording` message describing the meeting's current state.
fn recording_message(meeting: &Meeting) -> ServerMessage {
    ServerMessage::Recording {
        on: meeting.recording,
        by: meeting.recording_by,
    }
}
