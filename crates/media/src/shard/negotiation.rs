//! SDP negotiation of both connections, and the publications and subscriptions it creates.

use std::time::{Duration, Instant};

use convene_core::{MediaSource, MeetingEvent, MeetingEventKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};

use super::Shard;
use super::model::{Publication, Subscription};
use super::peer::{Peer, Role};
use super::remote_control::CHANNEL_LABEL;
use crate::forward::{Rewriter, VideoCodec};
use crate::signal::messages::{ErrorCode, PublishTrack, ServerMessage, SubscribeTrack};

/// Longest `mid` we accept from a client (browsers use 1-3 characters).
const MAX_MID_LEN: usize = 32;
/// Each subscription's retransmission history: packets, age, and the share of its bytes that may be
/// retransmissions before queued resends are dropped (str0m's default share).
const RTX_CACHE_PACKETS: usize = 1024;
/// Two seconds: behind an access link that buffers a second (tests/netem.rs, the deep-queued link; the
/// e2e constrained link) the receiver's NACK arrives over a second after the loss, and the packet must
/// still be there. Much older repairs only add load to a congested link (three seconds made the
/// 2 Mbps -> 300 kbps collapse freeze for four at 50 ms delay). Fixed, not following the round trip:
/// str0m empties the history whenever it is resized, which in e2e runs lost exactly the packets about to
/// be asked for.
const RTX_CACHE_AGE: Duration = Duration::from_millis(2000);
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

impl Shard {
    /// The attendee (re)negotiates its publish connection; `tracks` is everything it publishes now.
    pub(super) fn publish_offer(
        &mut self,
        now: Instant,
        idx: usize,
        sdp: &str,
        tracks: &[PublishTrack],
    ) {
        let mut wanted: Vec<(Mid, MediaSource)> = Vec::with_capacity(tracks.len());
        for track in tracks {
            let source = match track.source.parse::<MediaSource>() {
                Ok(s) => s,
                Err(e) => return self.reject(idx, ErrorCode::InvalidField, e.to_string()),
            };
            if track.mid.is_empty() || track.mid.len() > MAX_MID_LEN {
                return self.reject(
                    idx,
                    ErrorCode::InvalidField,
                    format!("bad mid {:?}", track.mid),
                );
            }
            let mid = Mid::from(track.mid.as_str());
            if wanted.iter().any(|&(m, s)| m == mid || s == source) {
                return self.reject(
                    idx,
                    ErrorCode::InvalidField,
                    "each mid and each source may be listed once",
                );
            }
            wanted.push((mid, source));
        }
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                return self.reject(idx, ErrorCode::BadSdp, format!("offer does not parse: {e}"));
            }
        };
        if !sdp.contains("a=fingerprint:") {
            return self.reject(
                idx,
                ErrorCode::BadSdp,
                "offer has no a=fingerprint (DTLS-SRTP is required)",
            );
        }
        // Every listed m-line must exist in the offer, carry the right kind and be sent to us; the
        // offer is refused whole (and not applied) otherwise.
        for &(mid, source) in &wanted {
            let line = offer.media_lines.iter().find(|m| m.mid() == mid);
            let ok = line.is_some_and(|m| {
                let video = m.rtp_params().first().map(|p| p.spec().codec.is_video());
                !m.disabled
                    && video == Some(source.is_video())
                    && matches!(m.direction(), Direction::SendOnly | Direction::SendRecv)
            });
            if !ok {
                return self.reject(
                    idx,
                    ErrorCode::InvalidField,
                    format!(
                        "mid {mid} is not an {} m-line the client sends",
                        if source.is_video() { "video" } else { "audio" }
                    ),
                );
            }
        }

        let (peer_idx, created) = match self.attendees[idx].publish_peer {
            Some(p) => (p, false),
            None => (self.add_peer(now, idx, Role::Publish), true),
        };
        let answer = match self.peers[peer_idx].rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                if created {
                    self.remove_peer(peer_idx);
                    self.attendees[idx].publish_peer = None;
                } else {
                    self.drain(peer_idx, now);
                }
                return self.reject(idx, ErrorCode::BadSdp, format!("offer not usable: {e}"));
            }
        };
        self.attendees[idx].publish_peer = Some(peer_idx);
        self.drain(peer_idx, now);
        self.rekey_ufrag(peer_idx);

        self.attendees[idx].send(ServerMessage::PublishAnswer {
            sdp: answer.to_sdp_string(),
        });

        for source in MediaSource::ALL {
            let current = self.attendees[idx].publications[source.index()];
            let want = wanted.iter().find(|&&(_, s)| s == source).map(|&(m, _)| m);
            let current_mid = current.map(|p| self.publications[p].mid);
            if current_mid == want {
                continue;
            }
            if let Some(p) = current {
                self.remove_publication(now, p);
            }
            if let Some(mid) = want {
                self.add_publication(now, idx, source, mid);
            }
        }
        // A renegotiation may add m-lines whose extensions the fast path has not read yet.
        self.refresh_ingress_ext_ids(peer_idx);
    }

    pub(super) fn add_publication(
        &mut self,
        now: Instant,
        idx: usize,
        source: MediaSource,
        mid: Mid,
    ) {
        let attendee = &self.attendees[idx];
        let attendee_id = attendee.id;
        let meeting = attendee.meeting.clone();
        let serial = self.next_publication_serial;
        self.next_publication_serial += 1;
        let admitted = source != MediaSource::Camera
            || self.cameras_admitted(&meeting) < self.config.max_video_publishers;
        let p = self.publications.insert(Publication {
            serial,
            attendee: idx,
            attendee_id,
            source,
            mid,
            layers: Vec::with_capacity(3),
            best_layer: None,
            subscriptions: Vec::new(),
            last_keyframe_request: None,
            params: None,
            video_codec: None::<VideoCodec>,
            speaking_until: None,
            audible: true,
            admitted,
            level_sum: 0,
            level_packets: 0,
            port_seq: None,
        });
        self.attendees[idx].publications[source.index()] = Some(p);
        self.metrics.tracks(source).inc();
        tracing::info!(attendee = %attendee_id, source = source.as_str(), %mid, "publication added");
        if source == MediaSource::Screen {
            self.bus.publish(MeetingEvent::now(
                meeting.clone(),
                MeetingEventKind::ScreenShareStarted {
                    attendee: attendee_id,
                },
            ));
        }
        if !admitted {
            tracing::info!(attendee = %attendee_id, %meeting, "camera limit reached: camera waits for a free slot");
            return;
        }
        self.subscribe_others(now, p);
    }

    /// Every other attendee of the publication's meeting subscribes to it.
    fn subscribe_others(&mut self, now: Instant, p: usize) {
        let owner = self.publications[p].attendee;
        let meeting = self.attendees[owner].meeting.clone();
        let others: Vec<usize> = self.meetings[&meeting]
            .attendees
            .iter()
            .copied()
            .filter(|&o| o != owner)
            .collect();
        for other in others {
            self.add_subscription(p, other);
            self.negotiate_subscriptions(now, other);
        }
    }

    /// Cameras of the meeting that are forwarded.
    fn cameras_admitted(&self, meeting: &convene_core::MeetingId) -> usize {
        self.meetings.get(meeting).map_or(0, |m| {
            m.attendees
                .iter()
                .filter_map(|&a| self.attendees[a].publications[MediaSource::Camera.index()])
                .filter(|&p| self.publications[p].admitted)
                .count()
        })
    }

    /// A camera slot may have freed up: admit the longest-waiting camera of the meeting.
    fn admit_waiting_camera(&mut self, now: Instant, meeting: &convene_core::MeetingId) {
        if self.cameras_admitted(meeting) >= self.config.max_video_publishers {
            return;
        }
        let Some(m) = self.meetings.get(meeting) else {
            return;
        };
        let waiting = m
            .attendees
            .iter()
            .filter_map(|&a| self.attendees[a].publications[MediaSource::Camera.index()])
            .filter(|&p| !self.publications[p].admitted)
            .min_by_key(|&p| self.publications[p].serial);
        if let Some(p) = waiting {
            self.publications[p].admitted = true;
            tracing::info!(attendee = %self.publications[p].attendee_id, %meeting, "camera admitted to a free slot");
            self.subscribe_others(now, p);
        }
    }

    pub(super) fn remove_publication(&mut self, now: Instant, p: usize) {
        let (source, owner) = (self.publications[p].source, self.publications[p].attendee);
        if source == MediaSource::Screen {
            // Nothing left to control.
            self.stop_remote_control_of(now, owner);
        }
        let publication = self.publications.remove(p);
        let freed_camera = publication.source == MediaSource::Camera && publication.admitted;
        let attendee = &mut self.attendees[publication.attendee];
        attendee.publications[publication.source.index()] = None;
        let meeting = attendee.meeting.clone();
        if let Some(peer) = attendee.publish_peer.and_then(|i| self.peers.get_mut(i)) {
            peer.ssrc_routes.retain(|&(_, route, _)| route != p);
            if let Some(fast_in) = peer.fast_in.as_mut() {
                // Its streams route afresh (a browser reuses a stopped track's SSRC for the next).
                fast_in.forget_publication(p);
            }
        }
        self.metrics.tracks(publication.source).dec();
        for sub in publication.subscriptions {
            let s = self.subscriptions.remove(sub);
            let subscriber = &mut self.attendees[s.subscriber];
            subscriber.subscriptions.retain(|&x| x != sub);
            if let Some(mid) = s.mid {
                subscriber.mids_to_close.push(mid);
            }
            subscriber.subscribe_dirty = true;
            self.negotiate_subscriptions(now, s.subscriber);
        }
        if publication.source == MediaSource::Screen {
            self.bus.publish(MeetingEvent::now(
                meeting.clone(),
                MeetingEventKind::ScreenShareStopped {
                    attendee: publication.attendee_id,
                },
            ));
        }
        if freed_camera {
            self.admit_waiting_camera(now, &meeting);
        }
    }

    pub(super) fn add_subscription(&mut self, publication: usize, subscriber: usize) {
        // A port has nothing to negotiate: it receives from the first packet, and only what it takes.
        let port = self.attendees[subscriber].port.as_ref();
        if port.is_some_and(|port| {
            !port.takes_video && self.publications[publication].source.is_video()
        }) {
            return;
        }
        let s = self.subscriptions.insert(Subscription {
            publication,
            subscriber,
            mid: None,
            negotiated: port.is_some(),
            layer: None,
            target: None,
            rewriter: Rewriter::new(),
            pt_map: None,
            tx_ssrc: None,
            fast: None,
            nacks_seen: 0,
            plis_seen: 0,
        });
        self.publications[publication].subscriptions.push(s);
        let attendee = &mut self.attendees[subscriber];
        attendee.subscriptions.push(s);
        attendee.subscribe_dirty = true;
    }

    /// Offer the subscribe connection's changes, unless an offer is already out.
    pub(super) fn negotiate_subscriptions(&mut self, now: Instant, idx: usize) {
        let attendee = &mut self.attendees[idx];
        if attendee.port.is_some() {
            attendee.subscribe_dirty = false;
            return;
        }
        let attendee = &self.attendees[idx];
        if attendee.pending_offer.is_some() || !attendee.subscribe_dirty {
            return;
        }
        let unassigned: Vec<usize> = attendee
            .subscriptions
            .iter()
            .copied()
            .filter(|&s| self.subscriptions[s].mid.is_none())
            .collect();
        if attendee.subscribe_peer.is_none() && unassigned.is_empty() && !attendee.needs_channel {
            self.attendees[idx].subscribe_dirty = false;
            return;
        }
        let peer_idx = match attendee.subscribe_peer {
            Some(p) => p,
            None => {
                let p = self.add_peer(now, idx, Role::Subscribe);
                self.attendees[idx].subscribe_peer = Some(p);
                p
            }
        };
        let attendee = &mut self.attendees[idx];
        let peer = &mut self.peers[peer_idx];
        let mut api = peer.rtc.sdp_api();
        if peer.channel.is_none() {
            // Every subscribe connection carries one data channel from its first offer: remote control
            // events arrive and leave on it, and later features (chat) can share it.
            peer.channel = Some((api.add_channel(CHANNEL_LABEL.to_owned()), false));
        }
        for s in unassigned {
            let publication = &self.publications[self.subscriptions[s].publication];
            let kind = if publication.source.is_video() {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            let stream = publication.attendee_id.to_string();
            let track = format!(
                "{}-{}-{}",
                publication.attendee_id,
                publication.source.as_str(),
                publication.serial
            );
            let mid = api.add_media(kind, Direction::SendOnly, Some(stream), Some(track), None);
            self.subscriptions[s].mid = Some(mid);
        }
        for mid in attendee.mids_to_close.drain(..) {
            api.set_direction(mid, Direction::Inactive);
        }
        attendee.subscribe_dirty = false;
        if let Some((offer, pending)) = api.apply() {
            attendee.pending_offer = Some((pending, now));
            let tracks = attendee
                .subscriptions
                .iter()
                .filter_map(|&s| {
                    let sub = &self.subscriptions[s];
                    let publication = &self.publications[sub.publication];
                    Some(SubscribeTrack {
                        mid: sub.mid?.to_string(),
                        attendee_id: publication.attendee_id,
                        source: publication.source,
                    })
                })
                .collect();
            attendee.send(ServerMessage::SubscribeOffer {
                sdp: offer.to_sdp_string(),
                tracks,
            });
        }
        self.drain(peer_idx, now);
    }

    pub(super) fn subscribe_answer(&mut self, now: Instant, idx: usize, sdp: &str) {
        let Some((pending, offered_at)) = self.attendees[idx].pending_offer.take() else {
            return self.reject(
                idx,
                ErrorCode::NoOfferOutstanding,
                "no subscribe_offer is waiting for an answer",
            );
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                // Keep the offer: the client may answer again, correctly.
                self.attendees[idx].pending_offer = Some((pending, offered_at));
                return self.reject(
                    idx,
                    ErrorCode::BadSdp,
                    format!("answer does not parse: {e}"),
                );
            }
        };
        let Some(peer_idx) = self.attendees[idx].subscribe_peer else {
            return;
        };
        let applied = self.peers[peer_idx]
            .rtc
            .sdp_api()
            .accept_answer(pending, answer);
        self.drain(peer_idx, now);
        if let Err(e) = applied {
            self.reject(idx, ErrorCode::BadSdp, format!("answer not usable: {e}"));
            self.reoffer_unapplied(now, idx);
            return;
        }
        self.rekey_ufrag(peer_idx);
        let connected = self.peers[peer_idx].connected;
        let subs = self.attendees[idx].subscriptions.clone();
        for s in subs {
            let sub = &mut self.subscriptions[s];
            let Some(mid) = sub.mid else { continue };
            if sub.negotiated {
                continue;
            }
            let publication = sub.publication;
            sub.tx_ssrc = self.peers[peer_idx]
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|tx| {
                    tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, RTX_RATIO_CAP);
                    tx.ssrc()
                });
            sub.negotiated = sub.tx_ssrc.is_some();
            if sub.negotiated && connected {
                let layer = super::target_layer(sub.target);
                self.request_keyframe(now, publication, layer);
            }
        }
        self.negotiate_subscriptions(now, idx);
    }

    /// An offer that will never be applied (its answer was refused, or never came): the m-lines it
    /// added do not exist, so their subscriptions go into the next offer again.
    pub(super) fn reoffer_unapplied(&mut self, now: Instant, idx: usize) {
        self.attendees[idx].pending_offer = None;
        let Some(peer_idx) = self.attendees[idx].subscribe_peer else {
            return;
        };
        for &s in &self.attendees[idx].subscriptions {
            let sub = &mut self.subscriptions[s];
            if let Some(mid) = sub.mid
                && self.peers[peer_idx].rtc.media(mid).is_none()
            {
                sub.mid = None;
                sub.negotiated = false;
            }
        }
        self.attendees[idx].subscribe_dirty = true;
        self.negotiate_subscriptions(now, idx);
    }

    /// An ICE restart in a renegotiation gives the connection new local credentials; follow them.
    fn rekey_ufrag(&mut self, peer_idx: usize) {
        let peer = &mut self.peers[peer_idx];
        let current = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if current != peer.ufrag {
            self.peer_by_ufrag.remove(&peer.ufrag);
            self.peer_by_ufrag.insert(current.clone(), peer_idx);
            peer.ufrag = current;
        }
    }

    fn add_peer(&mut self, now: Instant, attendee: usize, role: Role) -> usize {
        let peer = Peer::new(
            now,
            self.config.candidate_addr,
            attendee,
            role,
            self.config.fast_path,
        );
        let ufrag = peer.ufrag.clone();
        let idx = self.peers.insert(peer);
        self.peer_by_ufrag.insert(ufrag, idx);
        idx
    }

    pub(super) fn remove_peer(&mut self, idx: usize) {
        let peer = self.peers.remove(idx);
        for addr in &peer.addrs {
            self.peer_by_addr.remove(addr);
        }
        self.peer_by_ufrag.remove(&peer.ufrag);
    }

    pub(super) fn reject(&mut self, idx: usize, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(attendee = %self.attendees[idx].id, ?code, %message, "request rejected");
        self.metrics.signal_errors.inc();
        self.attendees[idx].send(ServerMessage::error(code, message));
    }
}
