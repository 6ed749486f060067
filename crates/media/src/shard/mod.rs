//! The shard: one media worker's whole world, sans IO.
//!
//! A [`Shard`] owns meetings, their attendees, every attendee's two str0m connections (publish and
//! subscribe), and the publications and subscriptions between them. It takes time, datagrams and
//! [`Command`]s in; it gives datagrams ([`Shard::poll_transmit`]), its next deadline
//! ([`Shard::poll_timeout`]) and ended meetings out. Signaling replies go straight into each attendee's
//! channel, and meeting events onto the [`EventBus`]. Nothing here touches a socket or reads a clock,
//! so tests drive many peers through simulated time.
//!
//! Per forwarded packet the shard does no locking and no allocation of its own. On the fast path (the
//! default) a publisher's packet is decrypted in a reused buffer (`fast_ingress.rs`), its payload
//! borrowed from there into each subscriber's datagram, written in reused outbox buffers
//! (`fast_egress.rs`); on str0m's path the payload is str0m's reference-counted buffer, shared by every
//! subscription. The queues below are reused.

mod allocate;
mod controls;
mod fast_egress;
mod fast_ingress;
mod feedback;
mod forwarding;
mod ingress;
mod model;
mod negotiation;
mod peer;
mod port;
mod remote_control;
mod roster;
mod sweep;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{AttendeeId, ClientType, EventBus, LeaveReason, MediaSource, MeetingId};
use slab::Slab;
use str0m::bwe::{Bitrate, BweKind};
use str0m::channel::{ChannelData, ChannelId};
use str0m::media::KeyframeRequest;
use str0m::net::{DatagramRecv, Protocol, Receive, Transmit};
use str0m::rtp::RtpPacket;
use str0m::stats::MediaEgressStats;
use str0m::{Event, IceConnectionState, Input, Output};

use crate::metrics::ShardMetrics;
use crate::signal::messages::PublishTrack;

pub use model::SignalTx;
use model::{Attendee, Meeting, Publication, Subscription};
use peer::{Peer, Role};
pub use port::PortLink;

/// How a shard behaves. Defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub index: usize,
    /// The address put in ICE candidates: the public IP and this shard's UDP port.
    pub candidate_addr: SocketAddr,
    /// Remove an attendee whose connections carried nothing (ICE consent checks included) this long.
    pub consent_timeout: Duration,
    /// Remove an attendee whose connection did not come up in this time.
    pub connect_timeout: Duration,
    /// At most one keyframe request per publication in this interval.
    pub keyframe_request_interval: Duration,
    /// Most cameras forwarded in one meeting; later ones wait (their publishers join audio-only for
    /// video) until a camera stops.
    pub max_video_publishers: usize,
    /// Subscribers' media goes out on the fast path (our RTP, SRTP, congestion control, probing,
    /// retransmissions and sender reports) instead of through str0m (`fast_egress.rs`). On by default.
    pub fast_path: bool,
}

impl ShardConfig {
    pub fn new(index: usize, candidate_addr: SocketAddr) -> Self {
        Self {
            index,
            candidate_addr,
            consent_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(300),
            max_video_publishers: crate::allocation::tiers::MAX_VIDEO_PUBLISHERS,
            fast_path: true,
        }
    }
}

/// What the front end asks of a shard.
#[derive(Debug)]
pub enum Command {
    /// An attendee admitted by a join token.
    Join {
        attendee: AttendeeId,
        meeting: MeetingId,
        name: String,
        client: ClientType,
        role: convene_core::AttendeeRole,
        user: Option<String>,
        /// The join token lets it grant others control of its shared screen.
        may_grant_control: bool,
        signal: SignalTx,
    },
    PublishOffer {
        attendee: AttendeeId,
        sdp: String,
        tracks: Vec<PublishTrack>,
    },
    SubscribeAnswer {
        attendee: AttendeeId,
        sdp: String,
    },
    Mute {
        attendee: AttendeeId,
        source: MediaSource,
        muted: bool,
    },
    /// Start (`on`) or stop recording the attendee's meeting; only a host may.
    Recording {
        attendee: AttendeeId,
        on: bool,
    },
    /// Turn the meeting's HD mode on or off; only a host may.
    HdMode {
        attendee: AttendeeId,
        on: bool,
    },
    /// The attendee caps its downlink (kbps), or lifts the cap (None).
    DownlinkCap {
        attendee: AttendeeId,
        kbps: Option<u32>,
    },
    /// The attendee asks for control of `sharer`'s shared screen.
    RemoteControlRequest {
        attendee: AttendeeId,
        sharer: AttendeeId,
    },
    /// The sharer answers `controller`'s request.
    RemoteControlAnswer {
        attendee: AttendeeId,
        controller: AttendeeId,
        granted: bool,
    },
    /// The attendee ends the remote control session it is part of.
    RemoteControlStop {
        attendee: AttendeeId,
    },
    /// An attendee whose media crosses an attendee port (a call the gateway bridges), admitted by the
    /// gateway's admission. It publishes `publishes` from the start and receives into `port`.
    JoinPort {
        attendee: AttendeeId,
        meeting: MeetingId,
        name: String,
        client: ClientType,
        publishes: Vec<convene_core::port::PortPublication>,
        port: PortLink,
    },
    /// A port attendee asks for a keyframe of `from`'s publication `source`.
    PortKeyframeRequest {
        from: AttendeeId,
        source: MediaSource,
    },
    /// A packet a port attendee sends into its meeting.
    PortMedia {
        attendee: AttendeeId,
        media: convene_core::port::PortMedia,
    },
    Leave {
        attendee: AttendeeId,
    },
    /// Tell everyone the server is going away and drop them.
    Shutdown,
}

/// str0m output the shard acts on after a connection is drained.
// RTP packets dominate the queue; boxing them would allocate per packet, so the enum stays large.
#[allow(clippy::large_enum_variant)]
enum PeerEvent {
    Rtp(RtpPacket),
    KeyframeRequest(KeyframeRequest),
    Connected,
    EgressStats(MediaEgressStats),
    /// The send-side estimate of the connection's capacity (kbps).
    Estimate(u32),
    /// A REMB the receiver sent (kbps): only ever a cap on the estimate, old clients' REMB is noisy.
    Remb(u32),
    ChannelOpen(ChannelId),
    ChannelData(ChannelData),
    Failed,
}

/// Whether [`Shard::run_events`] sends what was written now or leaves it for the end of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Now,
    Later,
}

fn kbps_of(bitrate: Bitrate) -> u32 {
    (bitrate.as_u64() / 1000).min(u64::from(u32::MAX)) as u32
}

/// The layer a subscription's allocation names, if it names one.
fn target_layer(target: Option<crate::allocation::policy::Choice>) -> Option<usize> {
    match target {
        Some(crate::allocation::policy::Choice::Layer(l)) => Some(l),
        _ => None,
    }
}

/// A subscribe offer not answered in this time is replaced by a new one.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Housekeeping (speaking, layer rates, consent) runs this often.
const TICK: Duration = Duration::from_millis(200);
/// How late a soft deadline may run (`Shard::schedule_soft`): sender reports (one a second) and
/// publishers' transport-wide feedback (every 50 ms) tolerate this much.
const SOFT_SLACK: Duration = Duration::from_millis(50);

pub struct Shard {
    config: ShardConfig,
    bus: Arc<dyn EventBus>,
    metrics: ShardMetrics,
    meetings: HashMap<MeetingId, Meeting>,
    attendees: Slab<Attendee>,
    attendee_by_id: HashMap<AttendeeId, usize>,
    peers: Slab<Peer>,
    peer_by_addr: HashMap<SocketAddr, usize>,
    peer_by_ufrag: HashMap<String, usize>,
    publications: Slab<Publication>,
    subscriptions: Slab<Subscription>,
    transmits: VecDeque<Transmit>,
    /// What the fast path wrote, for the worker's next send ([`Shard::fast_outbox`]).
    outbox: crate::fastpath::outbox::Outbox,
    /// Where the fast path decrypts a publisher's packet (a copy of the datagram: the caller's buffer
    /// is shared, and the payload is forwarded from here).
    scratch: Box<[u8]>,
    /// Where an RTX payload is put together (answering a NACK).
    rtx_scratch: Vec<u8>,
    timers: TimerHeap,
    /// Deadlines that may run up to [`SOFT_SLACK`] late (`Shard::schedule_soft`).
    soft_timers: TimerHeap,
    pending: VecDeque<(usize, PeerEvent)>,
    /// Connections written to since their last timeout pass.
    dirty: Vec<usize>,
    /// Reused scratch list of connections whose timers are due.
    due: Vec<usize>,
    ended_meetings: VecDeque<MeetingId>,
    next_publication_serial: u64,
    next_tick: Instant,
    next_rate_update: Instant,
    /// The tick's visit of every fast-path connection (probe starts), a chunk per wake-up.
    probe_sweep: sweep::Sweep,
    /// The per-second reallocation of every subscriber, a chunk per wake-up; the publishers' targets
    /// follow when it is done.
    reallocation_sweep: sweep::Sweep,
    /// A reallocation sweep runs; the publishers' targets follow it.
    publish_targets_due: bool,
    /// A sweep has items left: the worker comes back at once for the next chunk.
    sweeping_since: Option<Instant>,
}

impl Shard {
    pub fn new(
        config: ShardConfig,
        bus: Arc<dyn EventBus>,
        metrics: ShardMetrics,
        now: Instant,
    ) -> Self {
        Self {
            config,
            bus,
            metrics,
            meetings: HashMap::new(),
            attendees: Slab::new(),
            attendee_by_id: HashMap::new(),
            peers: Slab::new(),
            peer_by_addr: HashMap::new(),
            peer_by_ufrag: HashMap::new(),
            publications: Slab::new(),
            subscriptions: Slab::new(),
            transmits: VecDeque::with_capacity(256),
            outbox: Default::default(),
            // The workers receive at most this much.
            scratch: vec![0; crate::udp::MAX_DATAGRAM].into_boxed_slice(),
            rtx_scratch: Vec::with_capacity(crate::udp::MAX_DATAGRAM),
            timers: BinaryHeap::new(),
            soft_timers: BinaryHeap::new(),
            pending: VecDeque::with_capacity(256),
            dirty: Vec::with_capacity(64),
            due: Vec::with_capacity(64),
            ended_meetings: VecDeque::new(),
            next_publication_serial: 1,
            next_tick: now + TICK,
            next_rate_update: now + Duration::from_secs(1),
            probe_sweep: Default::default(),
            reallocation_sweep: Default::default(),
            publish_targets_due: false,
            sweeping_since: None,
        }
    }

    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// Attendees on this shard (for placement).
    pub fn attendee_count(&self) -> usize {
        self.attendees.len()
    }

    pub fn meeting_count(&self) -> usize {
        self.meetings.len()
    }

    /// Connections whose media the fast path sends, the packets it sent and the transport-wide feedback
    /// reports it folded in (for tests and diagnostics).
    pub fn fast_egress_counts(&self) -> (usize, u64, u64) {
        self.peers
            .iter()
            .filter_map(|(_, p)| p.fast.as_deref())
            .fold((0, 0, 0), |(n, packets, feedbacks), f| {
                (n + 1, packets + f.packets, feedbacks + f.feedbacks)
            })
    }

    /// Publish connections whose media the fast path receives, the packets it took and the
    /// transport-wide feedback reports and NACKs it sent (for tests and diagnostics).
    pub fn fast_ingress_counts(&self) -> (usize, u64, u64, u64) {
        self.peers
            .iter()
            .filter_map(|(_, p)| p.fast_in.as_deref())
            .fold((0, 0, 0, 0), |(n, packets, feedbacks, nacks), f| {
                (
                    n + 1,
                    packets + f.packets,
                    feedbacks + f.feedbacks,
                    nacks + f.nacks,
                )
            })
    }

    /// Connections that are up, and how many of them have their SRTP keys captured for the fast path
    /// (which builds its egress from them): lets the tests check the capture inside the shard.
    pub fn fastpath_keys_captured(&self) -> (usize, usize) {
        let up = self.peers.iter().filter(|(_, p)| p.connected);
        up.fold((0, 0), |(up, keyed), (_, p)| {
            (up + 1, keyed + usize::from(p.srtp_keys.is_filled()))
        })
    }

    pub fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Join {
                attendee,
                meeting,
                name,
                client,
                role,
                user,
                may_grant_control,
                signal,
            } => self.join(
                now,
                roster::Joining {
                    id: attendee,
                    meeting,
                    name,
                    client,
                    role,
                    user,
                    may_grant_control,
                    port: None,
                },
                signal,
            ),
            Command::JoinPort {
                attendee,
                meeting,
                name,
                client,
                publishes,
                port,
            } => self.join_port(
                now,
                roster::Joining {
                    id: attendee,
                    meeting,
                    name,
                    client,
                    role: convene_core::AttendeeRole::Attendee,
                    user: None,
                    may_grant_control: false,
                    port: Some(port),
                },
                &publishes,
            ),
            Command::PortKeyframeRequest { from, source } => {
                let publication = self
                    .attendee_by_id
                    .get(&from)
                    .and_then(|&idx| self.attendees[idx].publications[source.index()]);
                if let Some(p) = publication {
                    self.request_keyframe(now, p, None);
                }
            }
            Command::PortMedia { attendee, media } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.on_port_media(now, idx, media);
                }
            }
            Command::PublishOffer {
                attendee,
                sdp,
                tracks,
            } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.publish_offer(now, idx, &sdp, &tracks);
                }
            }
            Command::SubscribeAnswer { attendee, sdp } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.subscribe_answer(now, idx, &sdp);
                }
            }
            Command::Mute {
                attendee,
                source,
                muted,
            } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.mute(idx, source, muted);
                }
            }
            Command::Recording { attendee, on } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.set_recording(idx, on);
                }
            }
            Command::HdMode { attendee, on } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.set_hd_mode(now, idx, on);
                }
            }
            Command::DownlinkCap { attendee, kbps } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.attendees[idx].downlink_cap_kbps = kbps;
                    self.reallocate(now, idx);
                }
            }
            Command::RemoteControlRequest { attendee, sharer } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.request_remote_control(idx, sharer);
                }
            }
            Command::RemoteControlAnswer {
                attendee,
                controller,
                granted,
            } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.answer_remote_control(now, idx, controller, granted);
                }
            }
            Command::RemoteControlStop { attendee } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.stop_remote_control_of(now, idx);
                }
            }
            Command::Leave { attendee } => {
                if let Some(&idx) = self.attendee_by_id.get(&attendee) {
                    self.remove_attendee(now, idx, LeaveReason::Left);
                }
            }
            Command::Shutdown => {
                self.shutdown_all();
                self.metrics.flush();
            }
        }
        self.process_pending(now);
    }

    /// Starts fetching what [`Shard::handle_datagram`] will touch for this datagram, if that is a
    /// subscriber's feedback (`fastpath::prefetch`). The worker calls it for every datagram of a
    /// received batch of more than one before handling the first, so the batch's cache misses
    /// overlap; media needs none (its fan-out prefetches for itself).
    pub fn prefetch_datagram(&self, source: SocketAddr, data: &[u8]) {
        if !fast_ingress::is_srtcp(data) {
            return;
        }
        if let Some(&idx) = self.peer_by_addr.get(&source)
            && let Some(fast) = self.peers.get(idx).and_then(|p| p.fast.as_deref())
        {
            fast.prefetch_for_feedback();
        }
    }

    /// One datagram arrived on this shard's socket.
    ///
    /// What it makes the shard forward is written to the subscribers' connections but goes out only at
    /// [`Shard::end_batch`] (or the next [`Shard::handle_timeout`]): str0m releases written packets on a
    /// timeout pass, which runs all of a connection's timers (ICE, DTLS, SCTP, RTCP, the estimator and
    /// the pacer), so one pass per connection per batch of datagrams costs far less than one per
    /// datagram when packets arrive faster than the worker wakes up.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.metrics.datagrams_in.inc();
        self.metrics.bytes_in.inc_by(data.len() as u64);
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.metrics.dropped("unrecognized");
            return;
        };
        // ICE checks name their connection (USERNAME carries our ufrag); that wins over the source
        // address, so two connections behind one client socket, or a NAT rebinding, still land right.
        // Everything else is found by the address its ICE checks came from.
        let is_stun = data.first().is_some_and(|&b| b < 4);
        let by_ufrag = if is_stun {
            self.peer_for_stun(data)
        } else {
            None
        };
        let Some(peer_idx) = by_ufrag.or_else(|| self.peer_by_addr.get(&source).copied()) else {
            self.metrics.dropped("unknown_source");
            return;
        };
        if self.peers[peer_idx].fast.is_some() && fast_ingress::is_srtcp(data) {
            // A subscriber's feedback on what the fast path sends it: str0m never sees it.
            self.peers[peer_idx].last_rx = now;
            self.on_fast_rtcp(now, peer_idx, data);
            return;
        }
        if self.peers[peer_idx].fast_in.is_some() && fast_ingress::is_srtp(data) {
            // A publisher's media on the fast path: str0m never sees it.
            self.peers[peer_idx].last_rx = now;
            self.on_fast_rtp(now, peer_idx, data);
            return;
        }
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let peer = &mut self.peers[peer_idx];
        if !peer.rtc.accepts(&input) {
            self.metrics.dropped("not_accepted");
            return;
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(error = %e, %source, "datagram rejected");
            self.metrics.dropped("rejected");
        }
        peer.last_rx = now;
        if !peer.addrs.contains(&source) {
            peer.addrs.push(source);
            if let Some(previous) = self.peer_by_addr.insert(source, peer_idx)
                && let Some(old) = self.peers.get_mut(previous)
            {
                old.addrs.retain(|a| *a != source);
            }
        }
        self.drain(peer_idx, now);
        self.run_events(now, Flush::Later);
    }

    /// The end of a batch of datagrams: sends what they made the shard forward. A caller that calls
    /// [`Shard::handle_timeout`] right after need not call this.
    pub fn end_batch(&mut self, now: Instant) {
        self.process_pending(now);
    }

    /// Time passed: run whatever is due, and end the current batch of datagrams (as
    /// [`Shard::end_batch`]) with one timeout pass per connection written to.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Collect what is due first, then run each connection once: a connection that asks to be
        // woken "now" again must not spin this loop.
        let mut due = std::mem::take(&mut self.due);
        take_due(
            &mut self.timers,
            &mut self.peers,
            now,
            |p| &mut p.scheduled,
            &mut due,
        );
        for &idx in &due {
            let Some(peer) = self.peers.get_mut(idx) else {
                continue;
            };
            // A connection woken only for its probe padding keeps str0m out of it.
            if let Some(at) = peer.str0m_waits_until(now) {
                self.schedule(idx, at);
            } else {
                peer.dirty = false;
                if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(error = %e, "timeout handling failed");
                }
                self.drain(idx, now);
            }
            self.poll_fast_path(now, idx);
        }
        due.clear();
        // Soft deadlines passed: their work rides on this wake-up, whatever caused it.
        take_due(
            &mut self.soft_timers,
            &mut self.peers,
            now,
            |p| &mut p.soft_scheduled,
            &mut due,
        );
        for &idx in &due {
            self.poll_fast_path(now, idx);
        }
        due.clear();
        self.due = due;
        self.process_pending(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
            self.process_pending(now);
        } else if self.sweeping_since.is_some() {
            self.continue_sweeps(now);
            self.process_pending(now);
        }
        self.drop_stale_timers();
    }

    /// Pops timer entries that no longer wake anyone from the top of the heap: a connection
    /// rescheduled sooner leaves its later entry behind (the heap cannot remove it), and one that ran
    /// or left leaves its entry too. Left at the top, such an entry would wake the worker for nothing
    /// ([`Shard::poll_timeout`] reads the top).
    fn drop_stale_timers(&mut self) {
        drop_stale(&mut self.timers, &self.peers, |p| p.scheduled);
        drop_stale(&mut self.soft_timers, &self.peers, |p| p.soft_scheduled);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.metrics.datagrams_out.inc();
        self.metrics.bytes_out.inc_by(t.contents.len() as u64);
        Some(t)
    }

    /// The datagrams the fast path wrote, besides str0m's ([`Shard::poll_transmit`]); the caller sends
    /// them (all from this shard's socket) and then calls [`Shard::clear_fast_outbox`].
    pub fn fast_outbox(&self) -> &crate::fastpath::outbox::Outbox {
        &self.outbox
    }

    /// The fast path's datagrams were sent: count them and free their buffers.
    pub fn clear_fast_outbox(&mut self) {
        for (_, datagram) in self.outbox.datagrams() {
            self.metrics.datagrams_out.inc();
            self.metrics.bytes_out.inc_by(datagram.len() as u64);
        }
        self.outbox.clear();
    }

    /// When [`Shard::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Instant {
        let hard = self.timers.peek().map(|&Reverse((at, _))| at);
        let soft = self
            .soft_timers
            .peek()
            .map(|&Reverse((at, _))| at + SOFT_SLACK);
        [hard, soft, self.sweeping_since]
            .into_iter()
            .flatten()
            .fold(self.next_tick, Instant::min)
    }

    /// Housekeeping is spread over wake-ups ([`sweep`]) and has items left: the worker comes back at
    /// once ([`Shard::poll_timeout`] is now) for the next chunk.
    pub fn sweep_in_progress(&self) -> bool {
        self.sweeping_since.is_some()
    }

    /// Moves the packet counters counted since the last tick into the registry now (the shard does so
    /// every tick by itself): for a test that reads them right after sending.
    pub fn flush_metrics(&self) {
        self.metrics.flush();
    }

    /// A meeting that ended on this shard (its last attendee left); for placement bookkeeping.
    pub fn poll_ended_meeting(&mut self) -> Option<MeetingId> {
        self.ended_meetings.pop_front()
    }

    /// First contact from a new address must be an ICE check carrying our ufrag.
    fn peer_for_stun(&self, data: &[u8]) -> Option<usize> {
        let msg = str0m::ice::StunMessage::parse(data).ok()?;
        let (local, _remote) = msg.split_username()?;
        self.peer_by_ufrag.get(local).copied()
    }

    /// Wakes connection `idx` at `at` (or earlier, if it is due earlier already).
    pub(super) fn schedule(&mut self, idx: usize, at: Instant) {
        push_timer(&mut self.timers, &mut self.peers, idx, at, |p| {
            &mut p.scheduled
        });
    }

    /// Wakes connection `idx` at `at` or up to [`SOFT_SLACK`] later: the work runs on the first wake-up
    /// at or after `at`, and only wakes the worker itself if nothing else does within the slack. For
    /// periodic reports whose exact instant does not matter; with datagrams arriving every few
    /// milliseconds they cost no wake-up of their own (measured: timer-only wake-ups were a sixth to a
    /// fifth of all, most of them sender reports and feedback; bench/results/2026-12-06-notes.md).
    pub(super) fn schedule_soft(&mut self, idx: usize, at: Instant) {
        push_timer(&mut self.soft_timers, &mut self.peers, idx, at, |p| {
            &mut p.soft_scheduled
        });
    }

    /// Drain one connection's output after a mutation (str0m's contract), queueing what matters.
    fn drain(&mut self, idx: usize, now: Instant) {
        let Some(peer) = self.peers.get_mut(idx) else {
            return;
        };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    let at = at.max(now);
                    peer.str0m_due = Some(at);
                    if peer.scheduled.is_none_or(|s| at < s) {
                        peer.scheduled = Some(at);
                        self.timers.push(Reverse((at, idx)));
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    if peer.role == Role::Subscribe && peer.is_rtx(&t.contents) {
                        self.metrics.rtx_sent.inc();
                    }
                    // str0m follows the pair ICE nominated; the fast path sends where it does.
                    if let Some(fast) = peer.fast.as_mut() {
                        fast.destination = t.destination;
                    }
                    if let Some(fast_in) = peer.fast_in.as_mut() {
                        fast_in.destination = t.destination;
                    }
                    self.transmits.push_back(t)
                }
                Ok(Output::Event(event)) => match event {
                    Event::RtpPacket(p) => self.pending.push_back((idx, PeerEvent::Rtp(p))),
                    Event::KeyframeRequest(r) => {
                        self.pending.push_back((idx, PeerEvent::KeyframeRequest(r)))
                    }
                    Event::Connected => self.pending.push_back((idx, PeerEvent::Connected)),
                    Event::MediaEgressStats(s) => {
                        self.pending.push_back((idx, PeerEvent::EgressStats(s)))
                    }
                    Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => self
                        .pending
                        .push_back((idx, PeerEvent::Estimate(kbps_of(estimate)))),
                    Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => self
                        .pending
                        .push_back((idx, PeerEvent::Remb(kbps_of(estimate)))),
                    Event::ChannelOpen(id, _) => {
                        self.pending.push_back((idx, PeerEvent::ChannelOpen(id)))
                    }
                    Event::ChannelData(data) => {
                        self.pending.push_back((idx, PeerEvent::ChannelData(data)))
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        // ICE-lite: the client may come back from another address; consent decides.
                        tracing::debug!(peer = idx, "ICE disconnected");
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::warn!(error = %e, peer = idx, "connection failed");
                    self.pending.push_back((idx, PeerEvent::Failed));
                    break;
                }
            }
        }
    }

    fn process_pending(&mut self, now: Instant) {
        self.run_events(now, Flush::Now);
    }

    /// Handles queued connection events; with [`Flush::Now`] also gives every connection written to a
    /// timeout pass, so what was written goes out.
    fn run_events(&mut self, now: Instant, flush: Flush) {
        loop {
            let mut failed = Vec::new();
            while let Some((idx, event)) = self.pending.pop_front() {
                if !self.peers.contains(idx) {
                    continue;
                }
                match event {
                    PeerEvent::Rtp(packet) => self.on_rtp(now, idx, packet),
                    PeerEvent::KeyframeRequest(req) => self.on_keyframe_request(now, idx, req),
                    PeerEvent::Connected => self.on_connected(now, idx),
                    PeerEvent::EgressStats(stats) => self.on_egress_stats(idx, &stats),
                    PeerEvent::Estimate(kbps) => self.on_downlink_estimate(now, idx, kbps),
                    PeerEvent::Remb(kbps) => self.on_downlink_remb(now, idx, kbps),
                    PeerEvent::ChannelOpen(id) => self.on_channel_open(idx, id),
                    PeerEvent::ChannelData(data) => self.on_channel_data(now, idx, data),
                    PeerEvent::Failed => failed.push(self.peers[idx].attendee),
                }
            }
            if flush == Flush::Now {
                self.flush_dirty(now);
            }
            if failed.is_empty() && self.pending.is_empty() {
                break;
            }
            // Removing an attendee drains the others' connections, which may queue more events:
            // loop until nothing is left, so no stale event outlives a slab slot's reuse.
            for attendee in failed {
                if self.attendees.contains(attendee) {
                    self.remove_attendee(now, attendee, LeaveReason::Error);
                }
            }
        }
    }

    /// The send-side estimate of subscribe connection `idx` (kbps): the allocation spends it.
    fn on_downlink_estimate(&mut self, now: Instant, idx: usize, kbps: u32) {
        let attendee = self.peers[idx].attendee;
        tracing::trace!(attendee, kbps, "downlink estimate");
        self.attendees[attendee].downlink_estimate_kbps = Some(kbps);
        self.reallocate(now, attendee);
    }

    /// A REMB on subscribe connection `idx` (kbps): a cap on the estimate.
    fn on_downlink_remb(&mut self, now: Instant, idx: usize, kbps: u32) {
        let attendee = self.peers[idx].attendee;
        self.attendees[attendee].downlink_remb_kbps = Some(kbps);
        self.reallocate(now, attendee);
    }

    /// Remember a connection that got media written, for one timeout pass at the end of the batch.
    pub(super) fn mark_dirty(&mut self, idx: usize) {
        let peer = &mut self.peers[idx];
        if !peer.dirty {
            peer.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// str0m sends written packets on its next timeout pass: give each written-to connection one.
    fn flush_dirty(&mut self, now: Instant) {
        while let Some(idx) = self.dirty.pop() {
            let Some(peer) = self.peers.get_mut(idx) else {
                continue;
            };
            if !peer.dirty {
                continue;
            }
            peer.dirty = false;
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(error = %e, "timeout handling failed");
            }
            self.drain(idx, now);
        }
    }

    fn on_connected(&mut self, now: Instant, idx: usize) {
        let peer = &mut self.peers[idx];
        peer.connected = true;
        let (attendee, role) = (peer.attendee, peer.role);
        tracing::debug!(peer = idx, ?role, "connected");
        if peer.fast_path && role == Role::Publish && peer.fast_in.is_none() {
            self.start_fast_ingress(idx);
        }
        let peer = &mut self.peers[idx];
        if peer.fast_path && role == Role::Subscribe && peer.fast.is_none() {
            // DTLS is done, so its keys have landed; str0m's last datagram went to the nominated pair.
            let destination = peer.addrs.last().copied();
            match (peer.srtp_keys.get(), destination) {
                (Some(keys), Some(destination)) => {
                    match fast_egress::FastEgress::new(
                        now,
                        &keys,
                        destination,
                        peer::INITIAL_DOWNLINK_KBPS as u32,
                    ) {
                        Ok(fast) => peer.fast = Some(Box::new(fast)),
                        Err(e) => {
                            tracing::warn!(peer = idx, error = %e, "fast path unavailable; str0m sends")
                        }
                    }
                }
                _ => tracing::warn!(peer = idx, "connected without keys or address; str0m sends"),
            }
        }
        if role == Role::Subscribe {
            // A subscriber that just came up needs a keyframe of everything it receives.
            let subs = self.attendees[attendee].subscriptions.clone();
            for sub in subs {
                let publication = self.subscriptions[sub].publication;
                let layer = target_layer(self.subscriptions[sub].target);
                self.request_keyframe(now, publication, layer);
            }
        }
    }

    fn on_egress_stats(&mut self, idx: usize, stats: &MediaEgressStats) {
        let attendee = self.peers[idx].attendee;
        let Some(&sub_idx) = self.attendees[attendee]
            .subscriptions
            .iter()
            .find(|&&s| self.subscriptions[s].mid == Some(stats.mid))
        else {
            return;
        };
        let sub = &mut self.subscriptions[sub_idx];
        self.metrics
            .nacks
            .inc_by(stats.nacks.saturating_sub(sub.nacks_seen));
        self.metrics
            .plis
            .inc_by(stats.plis.saturating_sub(sub.plis_seen));
        sub.nacks_seen = sub.nacks_seen.max(stats.nacks);
        sub.plis_seen = sub.plis_seen.max(stats.plis);
    }

    /// Housekeeping: speaking sets, layer rates, consent freshness.
    fn tick(&mut self, now: Instant) {
        self.metrics.flush();
        self.update_speaking(now);
        self.reprobe_estimators(now);
        // Fast-path estimators start their probe clusters here (a cluster's later packets follow on
        // the connection's own timer), a chunk of connections per wake-up; what the last tick's
        // sweeps left (only if the worker never came back in 200 ms) is done first.
        while self.sweeping_since.is_some() {
            self.continue_sweeps(now);
        }
        let peers = &self.peers;
        self.probe_sweep.start(
            peers
                .iter()
                .filter(|(_, p)| p.fast.is_some() || p.fast_in.is_some())
                .map(|(idx, _)| idx),
        );
        self.continue_sweeps(now);
        // A subscribe offer nobody answers would block every later change for that attendee.
        let stale: Vec<usize> = self
            .attendees
            .iter()
            .filter(|(_, a)| {
                a.pending_offer
                    .as_ref()
                    .is_some_and(|(_, at)| now.saturating_duration_since(*at) > OFFER_TIMEOUT)
            })
            .map(|(i, _)| i)
            .collect();
        for idx in stale {
            tracing::warn!(attendee = %self.attendees[idx].id, "subscribe offer unanswered; offering again");
            self.reoffer_unapplied(now, idx);
        }
        if now >= self.next_rate_update {
            let elapsed = (now - self.next_rate_update + Duration::from_secs(1))
                .as_secs_f64()
                .max(0.001);
            self.next_rate_update = now + Duration::from_secs(1);
            self.update_layer_rates(now, elapsed);
            self.start_reallocation_sweep();
            self.continue_sweeps(now);
        }
        let mut expired = Vec::new();
        for (idx, attendee) in &self.attendees {
            for peer_idx in [attendee.publish_peer, attendee.subscribe_peer]
                .into_iter()
                .flatten()
            {
                let peer = &self.peers[peer_idx];
                let silent = if peer.connected {
                    now.saturating_duration_since(peer.last_rx) > self.config.consent_timeout
                } else {
                    now.saturating_duration_since(peer.created) > self.config.connect_timeout
                };
                let reason = if !peer.rtc.is_alive() {
                    Some(LeaveReason::Error)
                } else if silent {
                    Some(LeaveReason::Timeout)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    expired.push((idx, reason));
                    break;
                }
            }
        }
        for (idx, reason) in expired {
            tracing::info!(attendee = %self.attendees[idx].id, reason = reason.as_str(), "removing attendee");
            self.remove_attendee(now, idx, reason);
        }
    }
}

impl Shard {
    /// One chunk of each sweep in progress ([`sweep`]); when the reallocation is done, the publishers'
    /// targets and the allocation's metrics follow, as they did after a reallocation in one go.
    fn continue_sweeps(&mut self, now: Instant) {
        for _ in 0..SWEEP_CHUNK {
            let Some(idx) = self.probe_sweep.next_item() else {
                break;
            };
            self.poll_fast_path(now, idx);
        }
        for _ in 0..SWEEP_CHUNK {
            let Some(attendee) = self.reallocation_sweep.next_item() else {
                break;
            };
            // One that left meanwhile (or whose slot a newcomer took: reallocating it is harmless).
            if self.attendees.contains(attendee) {
                self.reallocate(now, attendee);
            }
        }
        if self.publish_targets_due && self.reallocation_sweep.is_done() {
            self.publish_targets_due = false;
            self.update_publish_targets(now);
            self.report_allocation();
        }
        self.sweeping_since =
            (!self.probe_sweep.is_done() || self.publish_targets_due).then_some(now);
    }
}

/// Items of a [`sweep::Sweep`] per wake-up: a few tens of microseconds of work each.
const SWEEP_CHUNK: usize = 64;

/// A shard's timer heap: (when, peer) entries, the live one per peer being the one its slot holds.
type TimerHeap = BinaryHeap<Reverse<(Instant, usize)>>;

/// Wakes peer `idx` at `at` through `heap`, unless its slot (`slot(peer)`) already holds an earlier
/// instant there.
fn push_timer(
    heap: &mut TimerHeap,
    peers: &mut Slab<Peer>,
    idx: usize,
    at: Instant,
    slot: fn(&mut Peer) -> &mut Option<Instant>,
) {
    let Some(peer) = peers.get_mut(idx) else {
        return;
    };
    let scheduled = slot(peer);
    if scheduled.is_none_or(|s| at < s) {
        *scheduled = Some(at);
        heap.push(Reverse((at, idx)));
    }
}

/// Pops the entries of `heap` due by `now` and pushes their peers onto `due`, clearing the slot
/// (`slot(peer)`) of each peer whose slot still says it is due.
fn take_due(
    heap: &mut TimerHeap,
    peers: &mut Slab<Peer>,
    now: Instant,
    slot: fn(&mut Peer) -> &mut Option<Instant>,
    due: &mut Vec<usize>,
) {
    while let Some(&Reverse((at, idx))) = heap.peek() {
        if at > now {
            break;
        }
        heap.pop();
        if let Some(peer) = peers.get_mut(idx) {
            let scheduled = slot(peer);
            if scheduled.is_some_and(|s| s <= now) {
                *scheduled = None;
                due.push(idx);
            }
        }
    }
}

/// Pops entries from the top of `heap` that no longer wake anyone: their peer left, or its slot
/// (`slot(peer)`) holds another instant (it was rescheduled sooner, or ran).
fn drop_stale(heap: &mut TimerHeap, peers: &Slab<Peer>, slot: fn(&Peer) -> Option<Instant>) {
    while let Some(&Reverse((at, idx))) = heap.peek() {
        if peers.get(idx).is_some_and(|peer| slot(peer) == Some(at)) {
            break;
        }
        heap.pop();
    }
}
