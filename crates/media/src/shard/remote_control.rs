//! Remote control: an attendee asks to control the screen another attendee shares; the sharer grants or
//! declines; while granted, what the controller writes on its `convene` data channel is relayed to the
//! sharer's, as a fixed 800 kbps flow (the guide's table) reserved out of the sharer's downlink budget.
//!
//! Only a sharer whose join token allows it (their organisation's `DisableRemoteControl` policy) can be
//! asked; anyone else's request gets a clear `remote_control_unavailable` error, as the guide describes
//! ("Attendees who request shared control ... receive an error message indicating that remote control
//! isn't available"). The relay is off the media hot path: data channel messages are few and small.

use std::time::Instant;

use convene_core::{AttendeeId, MediaSource};
use str0m::channel::ChannelData;

use super::Shard;
use crate::allocation::tiers::REMOTE_CONTROL_KBPS;
use crate::signal::messages::{ErrorCode, ServerMessage};

/// The label of the data channel every subscribe connection carries.
pub const CHANNEL_LABEL: &str = "convene";

/// How much the flow may burst above its rate (bytes): a quarter second of it.
const BURST_BYTES: f64 = REMOTE_CONTROL_KBPS as f64 * 1000.0 / 8.0 / 4.0;

/// One remote control session of a meeting.
pub struct Session {
    pub sharer: usize,
    pub controller: usize,
    /// Token bucket holding the relayed flow to its fixed rate.
    tokens: f64,
    refilled: Instant,
}

impl Session {
    fn new(sharer: usize, controller: usize, now: Instant) -> Self {
        Self {
            sharer,
            controller,
            tokens: BURST_BYTES,
            refilled: now,
        }
    }

    /// May `bytes` more pass now?
    fn admit(&mut self, now: Instant, bytes: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let rate = f64::from(REMOTE_CONTROL_KBPS) * 1000.0 / 8.0;
        self.tokens = (self.tokens + elapsed * rate).min(BURST_BYTES);
        if bytes as f64 > self.tokens {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

impl Shard {
    /// The attendee at `idx` asks for control of `sharer`'s screen.
    pub(super) fn request_remote_control(&mut self, idx: usize, sharer: AttendeeId) {
        let unavailable = |why: &str| format!("remote control isn't available: {why}");
        let Some(&sharer_idx) = self.attendee_by_id.get(&sharer) else {
            return self.reject(
                idx,
                ErrorCode::RemoteControlUnavailable,
                unavailable("that attendee is not in the meeting"),
            );
        };
        let requester = &self.attendees[idx];
        let target = &self.attendees[sharer_idx];
        if sharer_idx == idx || target.meeting != requester.meeting {
            return self.reject(
                idx,
                ErrorCode::RemoteControlUnavailable,
                unavailable("that attendee is not in the meeting"),
            );
        }
        if target.publications[MediaSource::Screen.index()].is_none() {
            return self.reject(
                idx,
                ErrorCode::RemoteControlUnavailable,
                unavailable("that attendee is not sharing a screen"),
            );
        }
        if !target.may_grant_control {
            return self.reject(
                idx,
                ErrorCode::RemoteControlUnavailable,
                unavailable("the sharer's organisation does not allow shared control"),
            );
        }
        let (name, requester_id) = (requester.name.clone(), requester.id);
        let Some(meeting) = self.meetings.get_mut(&requester.meeting) else {
            return;
        };
        if meeting.remote_control.is_some() {
            return self.reject(
                idx,
                ErrorCode::RemoteControlUnavailable,
                unavailable("the shared screen is already under someone's control"),
            );
        }
        if !meeting.control_requests.contains(&(idx, sharer_idx)) {
            meeting.control_requests.push((idx, sharer_idx));
        }
        self.attendees[sharer_idx].send(ServerMessage::RemoteControlRequest {
            attendee_id: requester_id,
            name,
        });
    }

    /// The sharer at `idx` answers `controller`'s request.
    pub(super) fn answer_remote_control(
        &mut self,
        now: Instant,
        idx: usize,
        controller: AttendeeId,
        granted: bool,
    ) {
        let Some(&controller_idx) = self.attendee_by_id.get(&controller) else {
            return self.reject(idx, ErrorCode::InvalidField, "no such request");
        };
        let meeting_id = self.attendees[idx].meeting.clone();
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        let Some(at) = meeting
            .control_requests
            .iter()
            .position(|&r| r == (controller_idx, idx))
        else {
            return self.reject(idx, ErrorCode::InvalidField, "no such request");
        };
        meeting.control_requests.remove(at);
        let sharer_id = self.attendees[idx].id;
        if !granted {
            self.attendees[controller_idx].send(ServerMessage::RemoteControlDeclined {
                attendee_id: sharer_id,
            });
            return;
        }
        if meeting.remote_control.is_some()
            || self.attendees[idx].publications[MediaSource::Screen.index()].is_none()
        {
            // Someone else got control first, or the share ended meanwhile.
            return self.reject(
                controller_idx,
                ErrorCode::RemoteControlUnavailable,
                "remote control isn't available: the shared screen is no longer free",
            );
        }
        meeting.remote_control = Some(Session::new(idx, controller_idx, now));
        meeting.control_requests.clear();
        tracing::info!(meeting = %meeting_id, sharer = %sharer_id, controller = %controller, "remote control started");
        self.announce_remote_control(&meeting_id, true, idx, controller_idx);
        // Both ends need their subscribe connection's data channel.
        for a in [idx, controller_idx] {
            let attendee = &mut self.attendees[a];
            if attendee.subscribe_peer.is_none() {
                attendee.needs_channel = true;
                attendee.subscribe_dirty = true;
                self.negotiate_subscriptions(now, a);
            }
        }
        self.reallocate(now, idx);
    }

    /// The attendee at `idx` (sharer or controller) ends its session, or leaves, or stops sharing.
    pub(super) fn stop_remote_control_of(&mut self, now: Instant, idx: usize) {
        let meeting_id = self.attendees[idx].meeting.clone();
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        meeting
            .control_requests
            .retain(|&(c, s)| c != idx && s != idx);
        let Some(session) = meeting
            .remote_control
            .take_if(|s| s.sharer == idx || s.controller == idx)
        else {
            return;
        };
        tracing::info!(meeting = %meeting_id, "remote control ended");
        self.announce_remote_control(&meeting_id, false, session.sharer, session.controller);
        if self.attendees.contains(session.sharer) {
            self.reallocate(now, session.sharer);
        }
    }

    fn announce_remote_control(
        &self,
        meeting_id: &convene_core::MeetingId,
        active: bool,
        sharer: usize,
        controller: usize,
    ) {
        let message = ServerMessage::RemoteControl {
            active,
            sharer_id: self.attendees[sharer].id,
            controller_id: self.attendees[controller].id,
        };
        for &a in &self.meetings[meeting_id].attendees {
            self.attendees[a].send(message.clone());
        }
    }

    /// Downlink the attendee's remote control flow holds (kbps): the fixed flow while it is a sharer
    /// under control, else nothing.
    pub(super) fn remote_control_reserved_kbps(&self, attendee: usize) -> u32 {
        let a = &self.attendees[attendee];
        let active = self
            .meetings
            .get(&a.meeting)
            .and_then(|m| m.remote_control.as_ref())
            .is_some_and(|s| s.sharer == attendee);
        if active { REMOTE_CONTROL_KBPS } else { 0 }
    }

    /// A data channel message arrived on a subscribe connection: relay it if it is a controller's.
    pub(super) fn on_channel_data(&mut self, now: Instant, peer_idx: usize, data: ChannelData) {
        let attendee = self.peers[peer_idx].attendee;
        let meeting_id = self.attendees[attendee].meeting.clone();
        let Some(session) = self
            .meetings
            .get_mut(&meeting_id)
            .and_then(|m| m.remote_control.as_mut())
            .filter(|s| s.controller == attendee)
        else {
            self.metrics.dropped("not_controlling");
            return;
        };
        if !session.admit(now, data.data.len()) {
            self.metrics.dropped("remote_control_rate");
            return;
        }
        let sharer = session.sharer;
        let Some(peer) = self.attendees[sharer].subscribe_peer else {
            self.metrics.dropped("not_controlling");
            return;
        };
        let Some((channel, true)) = self.peers[peer].channel else {
            self.metrics.dropped("channel_closed");
            return;
        };
        let written = self.peers[peer]
            .rtc
            .channel(channel)
            .map(|mut c| c.write(data.binary, &data.data));
        if !matches!(written, Some(Ok(true))) {
            self.metrics.dropped("channel_closed");
        }
        self.drain(peer, now);
    }

    /// Our data channel on a subscribe connection opened.
    pub(super) fn on_channel_open(&mut self, peer_idx: usize, id: str0m::channel::ChannelId) {
        let peer = &mut self.peers[peer_idx];
        if let Some((ours, open)) = peer.channel.as_mut()
            && *ours == id
        {
            *open = true;
        }
    }
}
