//! Applying the bandwidth allocation ([`crate::allocation::policy`]) to one subscriber: gather what it
//! could receive (each publication's layers with their measured rates), decide under its downlink
//! budget, and set each subscription's target layer. The forwarding loop then switches to the target on
//! its next keyframe, which is asked for here.
//!
//! Runs when the subscriber's estimate or cap changes and once a second with the layer rates, never per
//! packet, so it may allocate.

use std::time::Instant;

use convene_core::MediaSource;
use str0m::bwe::Bitrate;

use super::Shard;
use crate::allocation::policy::{self, Choice, Kind, Offer};
use crate::allocation::reprobe;
use crate::signal::messages::{ServerMessage, TrackTarget};

/// A layer that has not carried a packet for this long is not offered.
const LAYER_STALE: std::time::Duration = std::time::Duration::from_millis(1500);
/// A simulcast layer nobody has received for this long leaves its publisher's `active_rids` (the
/// publisher may switch it off). Not at once: a subscriber's estimate wobbling around the layer would turn
/// it off and on, each time costing the publisher a keyframe and the subscriber a wait for it.
const LAYER_OFF_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl Shard {
    /// The subscriber's budget: its send-side estimate, capped by its own setting and by REMB. None until
    /// there is anything to go on.
    fn downlink_budget(&self, attendee: usize) -> Option<u32> {
        let a = &self.attendees[attendee];
        let caps = [a.downlink_cap_kbps, a.downlink_remb_kbps];
        let budget = match a.downlink_estimate_kbps {
            Some(e) => Some(caps.into_iter().flatten().fold(e, u32::min)),
            None => caps.into_iter().flatten().min(),
        }?;
        // A remote control flow to this attendee is fixed; media gets what is left.
        Some(budget.saturating_sub(self.remote_control_reserved_kbps(attendee)))
    }

    pub(super) fn reallocate(&mut self, now: Instant, attendee: usize) {
        let Some(budget) = self.downlink_budget(attendee) else {
            // Nothing to go on (a cap was lifted before any estimate): back to the default.
            for i in 0..self.attendees[attendee].subscriptions.len() {
                let s = self.attendees[attendee].subscriptions[i];
                self.subscriptions[s].target = None;
            }
            return;
        };
        let subscriber = &self.attendees[attendee];
        let Some(meeting) = self.meetings.get(&subscriber.meeting) else {
            return;
        };
        let facts = policy::Meeting {
            attendees: meeting.attendees.len(),
            hd: meeting.hd,
        };
        // Per subscription: its layers' rates (kbps, ascending) and which publication layer each is.
        let mut rates: Vec<Vec<u32>> = Vec::new();
        let mut order: Vec<Vec<usize>> = Vec::new();
        let mut meta: Vec<(usize, Kind, bool)> = Vec::new();
        for &s in &subscriber.subscriptions {
            let publication = &self.publications[self.subscriptions[s].publication];
            let mut layers: Vec<(u32, usize)> = publication
                .layers
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    let arriving =
                        l.rate > 0 && now.saturating_duration_since(l.last_packet) < LAYER_STALE;
                    // A layer we switched off is still on offer, at the rate it had: also while its
                    // last packets trickle in, when its measured rate is falling toward nothing.
                    let rate = if l.switched_off {
                        l.nominal
                    } else if arriving {
                        l.rate
                    } else {
                        0
                    };
                    (rate > 0).then(|| (((rate * 8) / 1000).min(u64::from(u32::MAX)) as u32, i))
                })
                .collect();
            if layers.is_empty() {
                // Nothing measured yet: the forwarding default (best arriving layer) applies.
                continue;
            }
            layers.sort_unstable();
            let kind = match publication.source {
                MediaSource::Audio => Kind::Audio,
                MediaSource::Camera => Kind::Camera,
                MediaSource::Screen => Kind::Screen,
            };
            let publisher = &self.attendees[publication.attendee];
            let speaking = publisher.publications[MediaSource::Audio.index()]
                .and_then(|p| self.publications[p].speaking_until)
                .is_some_and(|t| t > now);
            rates.push(layers.iter().map(|(r, _)| *r).collect());
            order.push(layers.iter().map(|(_, i)| *i).collect());
            meta.push((s, kind, speaking));
        }
        let offers: Vec<Offer<'_>> = meta
            .iter()
            .zip(&rates)
            .enumerate()
            .map(|(k, (&(_, kind, speaking), layers))| Offer {
                id: k,
                kind,
                layers,
                speaking,
                audible: self.publications[self.subscriptions[meta[k].0].publication].audible,
            })
            .collect();
        let previous = |k: usize| -> Option<Choice> {
            let (s, _, _) = meta[k];
            match self.subscriptions[s].target? {
                Choice::Paused => Some(Choice::Paused),
                Choice::Layer(l) => order[k].iter().position(|&i| i == l).map(Choice::Layer),
            }
        };
        let mut decisions = Vec::with_capacity(offers.len());
        policy::allocate(facts, budget, &offers, previous, &mut decisions);
        let aim = policy::estimator_targets(facts, &offers, &decisions);
        let mut keyframes = Vec::new();
        for (k, choice) in decisions {
            let (s, kind, _) = meta[k];
            let target = match choice {
                Choice::Layer(j) => Choice::Layer(order[k][j]),
                Choice::Paused => Choice::Paused,
            };
            let sub = &mut self.subscriptions[s];
            if sub.target != Some(target) {
                tracing::debug!(subscription = s, ?target, budget, "allocation changed");
                self.metrics.allocation_changes.inc();
                self.metrics
                    .meeting_allocation
                    .changed(self.attendees[attendee].meeting.as_str());
                if let Choice::Layer(l) = target
                    && kind != Kind::Audio
                    && sub.layer != Some(l)
                {
                    keyframes.push((sub.publication, l));
                }
                sub.target = Some(target);
            }
        }
        for (publication, layer) in keyframes {
            self.request_keyframe(now, publication, Some(layer));
        }
        self.aim_estimator(now, attendee, aim);
    }

    /// Point the subscriber's send-side estimator at what the allocation could use (see
    /// `policy::estimator_targets`): without a wanted rate above the estimate str0m never probes, and an
    /// estimate that fell with the link would never climb back once the link recovers.
    fn aim_estimator(&mut self, now: Instant, attendee: usize, aim: policy::EstimatorTargets) {
        let a = &mut self.attendees[attendee];
        let rates = (aim.sustain, aim.wanted);
        if a.estimator_aim == Some(rates) {
            return;
        }
        a.estimator_aim = Some(rates);
        let Some(peer) = a.subscribe_peer else {
            return;
        };
        if let Some(fast) = self.peers[peer].fast.as_mut() {
            // The fast path's estimator probes toward what is wanted by itself.
            fast.set_wanted(now, aim.wanted);
            return;
        }
        self.peers[peer].rtc.bwe().set_bitrate(
            Bitrate::kbps(u64::from(aim.sustain)),
            Bitrate::kbps(u64::from(aim.wanted)),
        );
        self.drain(peer, now);
    }

    /// Every tick: make the estimator of each subscriber whose estimate falls short of what its allocation
    /// wants probe again, now and then (`allocation::reprobe`).
    pub(super) fn reprobe_estimators(&mut self, now: Instant) {
        let mut actions = Vec::new();
        for (idx, a) in self.attendees.iter_mut() {
            let (Some(peer), Some(estimate), Some((sustain, wanted))) =
                (a.subscribe_peer, a.downlink_estimate_kbps, a.estimator_aim)
            else {
                continue;
            };
            if self.peers[peer].fast_path {
                // Its own estimator probes; nothing to nudge.
                continue;
            }
            let capped = [a.downlink_cap_kbps, a.downlink_remb_kbps]
                .into_iter()
                .flatten()
                .any(|limit| limit < estimate);
            if let Some(action) = a.reprobe.on_tick(now, estimate, wanted, capped) {
                actions.push((idx, peer, sustain, wanted, action));
            }
        }
        for (attendee, peer, sustain, wanted, action) in actions {
            let (minimum, desired) = match action {
                reprobe::Action::Dip(estimate) => {
                    tracing::debug!(attendee, estimate, wanted, "re-probing the downlink");
                    self.metrics.reprobes.inc();
                    (sustain.min(estimate), estimate)
                }
                reprobe::Action::Restore => (sustain, wanted),
            };
            self.peers[peer].rtc.bwe().set_bitrate(
                Bitrate::kbps(u64::from(minimum)),
                Bitrate::kbps(u64::from(desired)),
            );
            self.drain(peer, now);
        }
    }

    /// Tell each publisher what its video tracks should send: the meeting's tier, and only the simulcast
    /// layers somebody received in the last [`LAYER_OFF_AFTER`] (the lowest always stays on, so a
    /// newcomer can start at once; with nobody subscribed, all of them do).
    pub(super) fn update_publish_targets(&mut self, now: Instant) {
        // (publication, layer, in use now, listed)
        let mut listing: Vec<(usize, usize, bool, bool)> = Vec::new();
        for (_, meeting) in self.meetings.iter() {
            // Alone in a meeting, keep the 1:1 tier: whoever joins next sees video at once.
            let facts = policy::Meeting {
                attendees: meeting.attendees.len().max(2),
                hd: meeting.hd,
            };
            for &a in &meeting.attendees {
                let mut targets = Vec::new();
                for p in self.attendees[a].publications.into_iter().flatten() {
                    let publication = &self.publications[p];
                    let kind = match publication.source {
                        MediaSource::Audio => continue,
                        MediaSource::Camera => Kind::Camera,
                        MediaSource::Screen => Kind::Screen,
                    };
                    let active_rids = if publication.layers.iter().any(|l| l.rid.is_some()) {
                        let in_use = publication
                            .subscriptions
                            .iter()
                            .filter_map(|&s| {
                                let sub = &self.subscriptions[s];
                                match sub.target {
                                    Some(Choice::Layer(l)) => Some(l),
                                    Some(Choice::Paused) => None,
                                    None => sub.layer.or(publication.best_layer),
                                }
                            })
                            .map(|l| publication.layers.get(l).map_or(0, |x| x.nominal))
                            .max()
                            .unwrap_or(0);
                        // Nominal rates: a layer the publisher stopped keeps its place in the order.
                        let lowest = publication
                            .layers
                            .iter()
                            .map(|l| l.nominal)
                            .min()
                            .unwrap_or(0);
                        let mut rids: Vec<String> = Vec::new();
                        for (i, l) in publication.layers.iter().enumerate() {
                            // Nobody subscribed yet (alone in the meeting): every layer stays on, so
                            // whoever joins next starts at the quality their link allows at once.
                            let in_use_now = publication.subscriptions.is_empty()
                                || l.nominal <= in_use.max(lowest);
                            let listed = in_use_now
                                || l.last_in_use.is_some_and(|t| {
                                    now.saturating_duration_since(t) < LAYER_OFF_AFTER
                                });
                            if let Some(rid) = l.rid.as_ref() {
                                listing.push((p, i, in_use_now, listed));
                                if listed {
                                    rids.push(rid.to_string());
                                }
                            }
                        }
                        rids.sort();
                        Some(rids)
                    } else {
                        None
                    };
                    let max_kbps = if !publication.admitted {
                        // A camera over the meeting's camera limit sends nothing until admitted.
                        0
                    } else if kind == Kind::Screen && active_rids.is_none() {
                        policy::screen_target(publication.subscriptions.iter().filter_map(|&s| {
                            self.room_after_audio(self.subscriptions[s].subscriber)
                        }))
                    } else {
                        policy::publisher_target(facts, kind)
                    };
                    targets.push(TrackTarget {
                        mid: publication.mid.to_string(),
                        max_kbps,
                        active_rids,
                    });
                }
                let attendee = &mut self.attendees[a];
                if targets != attendee.publish_targets_sent && !targets.is_empty() {
                    tracing::debug!(attendee = a, ?targets, "publish targets changed");
                    attendee.send(ServerMessage::PublishTargets {
                        tracks: targets.clone(),
                    });
                    attendee.publish_targets_sent = targets;
                }
            }
        }
        for (p, i, in_use_now, listed) in listing {
            let layer = &mut self.publications[p].layers[i];
            layer.switched_off = !listed;
            if in_use_now {
                layer.last_in_use = Some(now);
            }
        }
    }

    /// What a subscriber's budget leaves after the audio it receives (None: no budget known yet).
    fn room_after_audio(&self, attendee: usize) -> Option<u32> {
        let budget = self.downlink_budget(attendee)?;
        let audio: u64 = self.attendees[attendee]
            .subscriptions
            .iter()
            .map(|&s| &self.subscriptions[s])
            .filter(|sub| matches!(sub.target, Some(Choice::Layer(_))))
            .map(|sub| &self.publications[sub.publication])
            .filter(|p| p.source == MediaSource::Audio)
            .map(|p| p.layers.first().map_or(0, |l| l.rate * 8 / 1000))
            .sum();
        Some(budget.saturating_sub(audio.min(u64::from(u32::MAX)) as u32))
    }

    /// Publish each meeting's allocation state (paused streams, lowest downlink budget).
    pub(super) fn report_allocation(&self) {
        for (id, meeting) in &self.meetings {
            let mut paused = 0;
            let mut lowest: Option<u32> = None;
            for &a in &meeting.attendees {
                paused += self.attendees[a]
                    .subscriptions
                    .iter()
                    .filter(|&&s| self.subscriptions[s].target == Some(Choice::Paused))
                    .count();
                if let Some(b) = self.downlink_budget(a) {
                    lowest = Some(lowest.map_or(b, |l| l.min(b)));
                }
            }
            self.metrics
                .meeting_allocation
                .set(id.as_str(), paused, lowest);
        }
    }

    /// Starts re-running every subscriber's allocation (the layer rates changed), a chunk per wake-up
    /// (`Shard::continue_sweeps`).
    pub(super) fn start_reallocation_sweep(&mut self) {
        let attendees = &self.attendees;
        self.reallocation_sweep.start(
            attendees
                .iter()
                .filter(|(_, a)| {
                    a.downlink_estimate_kbps.is_some()
                        || a.downlink_cap_kbps.is_some()
                        || a.downlink_remb_kbps.is_some()
                })
                .map(|(i, _)| i),
        );
        self.publish_targets_due = true;
    }
}
