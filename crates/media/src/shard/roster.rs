//! Who is in which meeting: joining, leaving, muting and speaking.

use std::time::Instant;

use convene_core::{
    AttendeeId, AttendeeRole, ClientType, LeaveReason, MediaSource, MeetingEvent, MeetingEventKind,
    MeetingId,
};

use super::Shard;
use super::model::{Attendee, Meeting, SignalTx};
use crate::allocation::speakers::SpeakerSelector;
use crate::allocation::tiers;
use crate::signal::messages::ServerMessage;

/// Who joins, as their join token says.
pub(super) struct Joining {
    pub id: AttendeeId,
    pub meeting: MeetingId,
    pub name: String,
    pub client: ClientType,
    pub role: AttendeeRole,
    pub user: Option<String>,
    pub may_grant_control: bool,
    /// Its media crosses an attendee port (a bridged call), not WebRTC connections.
    pub port: Option<super::port::PortLink>,
}

impl Shard {
    pub(super) fn join(&mut self, now: Instant, joining: Joining, signal: SignalTx) {
        let Joining {
            id,
            meeting: meeting_id,
            name,
            client,
            role,
            user,
            may_grant_control,
            port,
        } = joining;
        if self.attendee_by_id.contains_key(&id) {
            return;
        }
        let started = !self.meetings.contains_key(&meeting_id);
        if started {
            self.meetings.insert(
                meeting_id.clone(),
                Meeting {
                    attendees: Vec::new(),
                    speaking: Vec::new(),
                    recording: false,
                    recording_by: None,
                    speakers: SpeakerSelector::new(0),
                    hd: false,
                    remote_control: None,
                    control_requests: Vec::new(),
                },
            );
            self.metrics.meetings.inc();
            self.bus.publish(MeetingEvent::now(
                meeting_id.clone(),
                MeetingEventKind::MeetingStarted,
            ));
        }
        let attendee = Attendee {
            id,
            name: name.clone(),
            client,
            role,
            may_grant_control,
            needs_channel: false,
            meeting: meeting_id.clone(),
            signal,
            audio_muted: false,
            camera_off: false,
            publish_peer: None,
            subscribe_peer: None,
            publications: [None; 3],
            subscriptions: Vec::new(),
            pending_offer: None,
            mids_to_close: Vec::new(),
            subscribe_dirty: false,
            downlink_estimate_kbps: None,
            downlink_cap_kbps: None,
            downlink_remb_kbps: None,
            estimator_aim: None,
            reprobe: Default::default(),
            publish_targets_sent: Vec::new(),
            port,
        };
        let info = attendee.info();
        let idx = self.attendees.insert(attendee);
        self.attendee_by_id.insert(id, idx);
        self.metrics.attendees(client).inc();

        let meeting = self
            .meetings
            .get_mut(&meeting_id)
            .expect("meeting inserted above");
        let others: Vec<usize> = meeting.attendees.clone();
        meeting.attendees.push(idx);
        let (recording, hd_mode) = (meeting.recording, meeting.hd);

        let roster = others.iter().map(|&o| self.attendees[o].info()).collect();
        self.attendees[idx].send(ServerMessage::Joined {
            meeting: meeting_id.to_string(),
            attendee_id: id,
            attendees: roster,
            recording,
            hd_mode,
        });
        for &o in &others {
            self.attendees[o].send(ServerMessage::AttendeeJoined {
                attendee: info.clone(),
            });
        }
        tracing::info!(meeting = %meeting_id, attendee = %id, client = client.as_str(), shard = self.config.index, "attendee joined");
        self.bus.publish(MeetingEvent::now(
            meeting_id,
            MeetingEventKind::AttendeeJoined {
                attendee: id,
                name,
                client,
                role,
                user,
            },
        ));

        // The newcomer receives everything already published.
        let existing: Vec<usize> = others
            .iter()
            .flat_map(|&o| self.attendees[o].publications.into_iter().flatten())
            .filter(|&p| self.publications[p].admitted)
            .collect();
        for publication in existing {
            self.add_subscription(publication, idx);
        }
        self.negotiate_subscriptions(now, idx);
    }

    pub(super) fn mute(&mut self, idx: usize, source: MediaSource, muted: bool) {
        let attendee = &mut self.attendees[idx];
        match source {
            MediaSource::Audio => attendee.audio_muted = muted,
            MediaSource::Camera => attendee.camera_off = muted,
            MediaSource::Screen => return,
        }
        let info = attendee.info();
        let meeting = attendee.meeting.clone();
        for &o in &self.meetings[&meeting].attendees {
            self.attendees[o].send(ServerMessage::AttendeeUpdated {
                attendee: info.clone(),
            });
        }
    }

    /// Take an attendee out of its meeting, telling the others; ends the meeting if it was the last.
    pub(super) fn remove_attendee(&mut self, now: Instant, idx: usize, reason: LeaveReason) {
        self.stop_remote_control_of(now, idx);
        // Its publications first: that renegotiates everyone who received them.
        for source in MediaSource::ALL {
            if let Some(publication) = self.attendees[idx].publications[source.index()] {
                self.remove_publication(now, publication);
            }
        }
        for sub in std::mem::take(&mut self.attendees[idx].subscriptions) {
            let publication = self.subscriptions[sub].publication;
            self.publications[publication]
                .subscriptions
                .retain(|&s| s != sub);
            self.subscriptions.remove(sub);
        }
        let attendee = self.attendees.remove(idx);
        self.attendee_by_id.remove(&attendee.id);
        for peer_idx in [attendee.publish_peer, attendee.subscribe_peer]
            .into_iter()
            .flatten()
        {
            self.remove_peer(peer_idx);
        }
        self.metrics.attendees(attendee.client).dec();
        tracing::info!(meeting = %attendee.meeting, attendee = %attendee.id, reason = reason.as_str(), "attendee left");

        let meeting_id = attendee.meeting.clone();
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        meeting.attendees.retain(|&a| a != idx);
        meeting.speaking.retain(|&a| a != attendee.id);
        meeting.speakers.remove(attendee.id);
        for &o in &meeting.attendees {
            self.attendees[o].send(ServerMessage::AttendeeLeft {
                attendee_id: attendee.id,
                reason: reason.as_str().to_owned(),
            });
        }
        self.bus.publish(MeetingEvent::now(
            meeting_id.clone(),
            MeetingEventKind::AttendeeLeft {
                attendee: attendee.id,
                reason,
            },
        ));
        if meeting.attendees.is_empty() {
            if let Some(meeting) = self.meetings.remove(&meeting_id) {
                self.stop_recording_at_end(&meeting_id, &meeting);
            }
            self.metrics.meeting_allocation.forget(meeting_id.as_str());
            self.metrics.meetings.dec();
            self.bus.publish(MeetingEvent::now(
                meeting_id.clone(),
                MeetingEventKind::MeetingEnded,
            ));
            self.ended_meetings.push_back(meeting_id);
        }
        // Dropping `attendee` drops its signal sender: the front end sees the channel close.
    }

    /// The server is stopping: tell every attendee, end every meeting, drop everything. No roster
    /// updates or renegotiations: everyone is leaving at once.
    pub(super) fn shutdown_all(&mut self) {
        for (_, attendee) in &self.attendees {
            attendee.send(ServerMessage::error(
                crate::signal::messages::ErrorCode::Unavailable,
                "the server is shutting down",
            ));
            self.metrics.attendees(attendee.client).dec();
            self.bus.publish(MeetingEvent::now(
                attendee.meeting.clone(),
                MeetingEventKind::AttendeeLeft {
                    attendee: attendee.id,
                    reason: LeaveReason::Shutdown,
                },
            ));
        }
        for (id, meeting) in std::mem::take(&mut self.meetings) {
            self.stop_recording_at_end(&id, &meeting);
            self.metrics.meeting_allocation.forget(id.as_str());
            self.metrics.meetings.dec();
            self.bus.publish(MeetingEvent::now(
                id.clone(),
                MeetingEventKind::MeetingEnded,
            ));
            self.ended_meetings.push_back(id);
        }
        for (_, p) in &self.publications {
            self.metrics.tracks(p.source).dec();
        }
        // Dropping the attendees drops their signal senders: every front end sees its channel close.
        self.attendees.clear();
        self.attendee_by_id.clear();
        self.publications.clear();
        self.subscriptions.clear();
        self.peers.clear();
        self.peer_by_addr.clear();
        self.peer_by_ufrag.clear();
        self.pending.clear();
        self.dirty.clear();
    }

    /// Announce changes in who is speaking, per meeting; and in large meetings, choose whose voices are
    /// forwarded (the loudest few).
    pub(super) fn update_speaking(&mut self, now: Instant) {
        for meeting in self.meetings.values_mut() {
            let slots = tiers::forwarded_speakers(meeting.attendees.len());
            let large = slots < meeting.attendees.len().saturating_sub(1);
            meeting.speakers.set_slots(slots, now);
            for &a in &meeting.attendees {
                let attendee = &self.attendees[a];
                if let Some(p) = attendee.publications[MediaSource::Audio.index()] {
                    let publication = &mut self.publications[p];
                    if publication.level_packets > 0 && !attendee.audio_muted {
                        let mean =
                            f64::from(publication.level_sum) / f64::from(publication.level_packets);
                        meeting.speakers.observe_window(
                            attendee.id,
                            mean,
                            publication.level_packets,
                            now,
                        );
                    }
                    publication.level_sum = 0;
                    publication.level_packets = 0;
                }
            }
            meeting.speakers.update(now);
            for &a in &meeting.attendees {
                let attendee = &self.attendees[a];
                if let Some(p) = attendee.publications[MediaSource::Audio.index()] {
                    let audible = !large || meeting.speakers.is_selected(attendee.id);
                    let publication = &mut self.publications[p];
                    if audible && !publication.audible {
                        // Back after a gap: each subscription restarts as a new source, so its
                        // sequence numbers stay continuous (the gap is not read as loss).
                        for &sub in &publication.subscriptions {
                            self.subscriptions[sub].layer = None;
                        }
                    }
                    publication.audible = audible;
                }
            }
            let mut speaking: Vec<AttendeeId> = Vec::new();
            for &a in &meeting.attendees {
                let attendee = &self.attendees[a];
                let Some(p) = attendee.publications[MediaSource::Audio.index()] else {
                    continue;
                };
                if !attendee.audio_muted
                    && self.publications[p].speaking_until.is_some_and(|t| t > now)
                {
                    speaking.push(attendee.id);
                }
            }
            speaking.sort();
            if speaking != meeting.speaking {
                for &a in &meeting.attendees {
                    self.attendees[a].send(ServerMessage::Speaking {
                        attendee_ids: speaking.clone(),
                    });
                }
                meeting.speaking = speaking;
            }
        }
    }
}
