//! Which queued datagrams can leave together, in one segmented send (UDP GSO).
//!
//! A forwarder that fans a video frame out sends each subscriber the frame's packets one after the
//! other: two copies to each of a hundred subscribers for a delta frame in the benchmark's scenario (a),
//! six for a keyframe. Sent one datagram per message, each copy pays the kernel's whole send path
//! (route, socket buffer, the loopback or driver's per-packet work). With `UDP_SEGMENT` (Linux 4.18) a
//! message carries several datagrams to one destination, cut by the kernel (or the NIC) after the send
//! path: measured on loopback with 1100-byte datagrams to 100 receivers, 4.1 -> 1.7 us per datagram in
//! sixes and 4.3 -> 3.1 in pairs (`bench/results/2026-12-07-notes.md`).
//!
//! The kernel's rule: every datagram of a message is the segment size except the last, which may be
//! shorter. [`SegmentPlan::plan`] groups a queue by destination (keeping each destination's order),
//! and cuts each destination's datagrams into runs that follow the rule. It is plain code over
//! positions and lengths, tested here without sockets; [`crate::udp::SendBatch::send_plan`] sends what
//! it planned.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most datagrams in one message. The kernel takes up to 64 (`UDP_MAX_SEGMENTS`); a subscriber's share
/// of one wake-up's fan-out is a frame or two.
pub const MAX_SEGMENTS: usize = 16;
/// Largest datagram sent segmented: a segment and its IPv6 and UDP headers must fit the path's MTU
/// (1500 on Ethernet), or the kernel refuses the whole message. Longer ones go alone.
pub const MAX_SEGMENT_LEN: usize = 1400;

/// The most datagrams a sender holds while a run of packets from one source (a frame's) is fanned
/// out, before it sends them anyway: a six-packet keyframe to a hundred subscribers fits, so each gets
/// it in one message. Measured in the benchmark's scenario (a): holding 256 left a keyframe in parts
/// and its p99 at 2.1-4.1 ms, 1 024 at 2.1-2.8 (`bench/results/2026-12-07-notes.md`). Only a run
/// that long fills the buffers (1.5 MB of them in Convene's outbox).
pub const MAX_HELD: usize = 1024;

/// How long a sender plans without segmenting after the kernel refused a segmented send as such
/// (`EIO`: the device or path cannot segment). Routes and devices change under a running server (a
/// bond fails over, an interface comes back with offloads on), so the refusal is not taken as forever;
/// each retry that fails again costs that flush's segmented messages, refused and resent datagram by
/// datagram.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether a sender segments its sends now: never where the socket cannot
/// ([`crate::udp::supports_segmentation`]), and not for [`RETRY_AFTER`] after the kernel refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmenting {
    supported: bool,
    refused_until: Option<Instant>,
}

impl Segmenting {
    pub fn new(supported: bool) -> Self {
        Self {
            supported,
            refused_until: None,
        }
    }

    /// Plan segmented sends at `now`.
    pub fn on(&self, now: Instant) -> bool {
        self.supported && self.refused_until.is_none_or(|until| now >= until)
    }

    /// The kernel refused a segmented send at `now`: plain sends until [`RETRY_AFTER`] has passed.
    pub fn refused(&mut self, now: Instant) {
        self.refused_until = Some(now + RETRY_AFTER);
    }
}

/// One message: the datagrams at `order[first..first + count]` of the plan (positions in the caller's
/// queue), all to `destination`, each `segment` bytes long but the last, which may be shorter. A
/// message of one datagram is sent as a plain datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub destination: SocketAddr,
    pub first: usize,
    pub count: usize,
    pub segment: usize,
}

/// Scratch space for planning; reused from one flush to the next, so it allocates nothing once it has
/// room for the largest queue ([`SegmentPlan::with_capacity`]).
#[derive(Debug, Default)]
pub struct SegmentPlan {
    /// Queue positions, grouped by destination (in order of each destination's first datagram).
    order: Vec<usize>,
    messages: Vec<Message>,
    group_of: HashMap<SocketAddr, usize>,
    /// Per group: its datagrams so far, then where its run starts in `order`.
    groups: Vec<usize>,
    /// Per queued datagram: its group.
    group: Vec<usize>,
}

impl SegmentPlan {
    /// Room to plan `datagrams` at once without allocating (a sender's whole outbox: [`MAX_HELD`]).
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            order: Vec::with_capacity(datagrams),
            messages: Vec::with_capacity(datagrams),
            group_of: HashMap::with_capacity(datagrams),
            groups: Vec::with_capacity(datagrams),
            group: Vec::with_capacity(datagrams),
        }
    }

    /// Plans a queue of `len` datagrams, `item(i)` giving the i-th one's destination and length. With
    /// `segmenting` off every datagram is a message of its own, in queue order.
    pub fn plan(
        &mut self,
        len: usize,
        item: impl Fn(usize) -> (SocketAddr, usize),
        segmenting: bool,
    ) {
        self.order.clear();
        self.messages.clear();
        if !segmenting {
            for i in 0..len {
                let (destination, bytes) = item(i);
                self.order.push(i);
                self.messages.push(Message {
                    destination,
                    first: i,
                    count: 1,
                    segment: bytes,
                });
            }
            return;
        }
        // A counting sort by destination: stable, two passes, no allocation once grown.
        self.group_of.clear();
        self.groups.clear();
        self.group.clear();
        for i in 0..len {
            let next = self.groups.len();
            let g = *self.group_of.entry(item(i).0).or_insert(next);
            if g == next {
                self.groups.push(0);
            }
            self.groups[g] += 1;
            self.group.push(g);
        }
        let mut start = 0;
        for slot in &mut self.groups {
            let n = *slot;
            *slot = start;
            start += n;
        }
        self.order.resize(len, 0);
        for (i, &g) in self.group.iter().enumerate() {
            self.order[self.groups[g]] = i;
            self.groups[g] += 1;
        }
        // Cut into runs: same destination, each datagram the length of the run's first but the last,
        // which may be shorter and ends the run.
        let mut k = 0;
        while k < len {
            let (destination, segment) = item(self.order[k]);
            let mut count = 1;
            // (An empty datagram never starts a run: the kernel would fold it into the one before.)
            if segment > 0 && segment <= MAX_SEGMENT_LEN {
                while count < MAX_SEGMENTS && k + count < len {
                    let (to, bytes) = item(self.order[k + count]);
                    if to != destination || bytes > segment {
                        break;
                    }
                    count += 1;
                    if bytes < segment {
                        break;
                    }
                }
            }
            self.messages.push(Message {
                destination,
                first: k,
                count,
                segment,
            });
            k += count;
        }
    }

    /// The messages planned, in the order they should be sent.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The queue positions of `message`'s datagrams, in order.
    pub fn datagrams(&self, message: &Message) -> &[usize] {
        &self.order[message.first..message.first + message.count]
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A refusal turns segmenting off for [`RETRY_AFTER`], then it is tried again; a socket that
    /// cannot segment never does.
    #[test]
    fn segmenting_is_retried_a_while_after_the_kernel_refused() {
        let t0 = Instant::now();
        let mut s = Segmenting::new(true);
        assert!(s.on(t0));
        s.refused(t0);
        assert!(!s.on(t0));
        assert!(!s.on(t0 + RETRY_AFTER - Duration::from_millis(1)));
        assert!(s.on(t0 + RETRY_AFTER));
        // Refused again on the retry: another wait from then.
        s.refused(t0 + RETRY_AFTER);
        assert!(!s.on(t0 + RETRY_AFTER + Duration::from_secs(1)));
        assert!(s.on(t0 + 2 * RETRY_AFTER));
        let never = Segmenting::new(false);
        assert!(!never.on(t0));
        assert!(!never.on(t0 + 10 * RETRY_AFTER));
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// (destination port, positions) per message.
    fn planned(queue: &[(u16, usize)], segmenting: bool) -> Vec<(u16, Vec<usize>, usize)> {
        let mut plan = SegmentPlan::default();
        plan.plan(queue.len(), |i| (addr(queue[i].0), queue[i].1), segmenting);
        plan.messages()
            .iter()
            .map(|m| (m.destination.port(), plan.datagrams(m).to_vec(), m.segment))
            .collect()
    }

    #[test]
    fn a_frames_copies_go_to_each_subscriber_together() {
        // Two packets fanned out to three subscribers, packet by packet.
        let queue = [
            (1, 1100),
            (2, 1100),
            (3, 1100),
            (1, 600),
            (2, 600),
            (3, 600),
        ];
        assert_eq!(
            planned(&queue, true),
            vec![
                (1, vec![0, 3], 1100),
                (2, vec![1, 4], 1100),
                (3, vec![2, 5], 1100)
            ]
        );
        // Without segmenting: the queue as it is.
        let plain = planned(&queue, false);
        assert_eq!(plain.len(), 6);
        assert!(plain.iter().enumerate().all(|(i, m)| m.1 == vec![i]));
    }

    #[test]
    fn runs_follow_the_kernels_rule() {
        // Equal, equal, shorter (ends a run), then a longer one starts the next; audio between video.
        let queue = [(1, 900), (1, 900), (1, 500), (1, 1000), (1, 200), (1, 200)];
        assert_eq!(
            planned(&queue, true),
            vec![
                (1, vec![0, 1, 2], 900),
                (1, vec![3, 4], 1000),
                (1, vec![5], 200)
            ]
        );
        // Too long to segment: alone, and the next starts afresh.
        let queue = [(1, 1450), (1, 1450), (1, 700)];
        assert_eq!(
            planned(&queue, true),
            vec![(1, vec![0], 1450), (1, vec![1], 1450), (1, vec![2], 700)]
        );
    }

    #[test]
    fn a_message_holds_at_most_max_segments() {
        let queue: Vec<(u16, usize)> = (0..MAX_SEGMENTS + 3).map(|_| (7, 1000)).collect();
        let plan = planned(&queue, true);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].1.len(), MAX_SEGMENTS);
        assert_eq!(
            plan[1].1,
            (MAX_SEGMENTS..MAX_SEGMENTS + 3).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_datagram_is_planned_once_in_its_destinations_order() {
        // A pseudo-random queue over 5 destinations and a few lengths.
        let mut x = 12345u32;
        let queue: Vec<(u16, usize)> = (0..500)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (
                    1 + (x >> 16) as u16 % 5,
                    [200, 1100, 1100, 1500][(x >> 8) as usize % 4],
                )
            })
            .collect();
        let plan = planned(&queue, true);
        let mut seen: Vec<usize> = plan.iter().flat_map(|m| m.1.clone()).collect();
        for (port, positions, segment) in &plan {
            assert!(positions.len() <= MAX_SEGMENTS);
            for (j, &p) in positions.iter().enumerate() {
                assert_eq!(queue[p].0, *port);
                let last = j + 1 == positions.len();
                assert!(queue[p].1 == *segment || (last && queue[p].1 < *segment));
            }
            assert!(positions.windows(2).all(|w| w[0] < w[1]));
        }
        // Across messages too, each destination's datagrams keep their order.
        for port in 1..=5 {
            let theirs: Vec<usize> = seen
                .iter()
                .copied()
                .filter(|&p| queue[p].0 == port)
                .collect();
            assert!(
                theirs.windows(2).all(|w| w[0] < w[1]),
                "reordered for {port}"
            );
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
    }
}
