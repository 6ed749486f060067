//! Datagrams the fast path has written, waiting for the worker's next `sendmmsg`: fixed-size buffers
//! reused from one flush to the next, so a forwarded packet costs no heap allocation once the outbox has
//! grown to the largest burst it has carried (a keyframe fanned out to every subscriber).

use std::net::SocketAddr;

/// Room for any datagram the fast path writes: a browser's RTP payload (at most ~1200 bytes), our
/// header and extensions, the SRTP tag.
pub const SLOT: usize = 1500;

/// A queued datagram: destination, length, and the index of the buffer it is in.
pub type Queued = (SocketAddr, usize, usize);

/// See the module docs.
#[derive(Debug, Default)]
pub struct Outbox {
    bufs: Vec<[u8; SLOT]>,
    /// Queued datagrams in order: destination, length, and the buffer it is in (the i-th is in
    /// `bufs[i]`; the index rides along so a batched send can look each one up on its own).
    queue: Vec<Queued>,
}

impl Outbox {
    /// The buffer the next datagram is written into; [`commit`](Self::commit) queues it, otherwise the
    /// next call hands out the same buffer again.
    pub fn next_buf(&mut self) -> &mut [u8; SLOT] {
        let i = self.queue.len();
        if i == self.bufs.len() {
            self.bufs.push([0; SLOT]);
        }
        &mut self.bufs[i]
    }

    /// Queues the `len` bytes just written into [`next_buf`](Self::next_buf), for `destination`.
    pub fn commit(&mut self, destination: SocketAddr, len: usize) {
        debug_assert!(len <= SLOT && self.queue.len() < self.bufs.len());
        let slot = self.queue.len();
        self.queue.push((destination, len.min(SLOT), slot));
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The queued datagrams, oldest first.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.queue
            .iter()
            .zip(&self.bufs)
            .map(|(&(destination, len, _), buf)| (destination, &buf[..len]))
    }

    /// The queue and the buffers, for a batched send: item `(destination, len, slot)` is
    /// `bufs[slot][..len]`.
    pub fn parts(&self) -> (&[Queued], &[[u8; SLOT]]) {
        (&self.queue, &self.bufs)
    }

    /// Everything queued was sent (or given up on): the buffers are free again.
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_after_a_clear() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut outbox = Outbox::default();
        for i in 0..3u8 {
            let buf = outbox.next_buf();
            buf[0] = i;
            outbox.commit(to, 1);
        }
        // Written but not committed: not queued, and its buffer comes back.
        outbox.next_buf()[0] = 99;
        let got: Vec<u8> = outbox.datagrams().map(|(_, d)| d[0]).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(outbox.next_buf()[0], 99);
        let first = outbox.parts().1[0].as_ptr();
        outbox.clear();
        assert!(outbox.is_empty());
        outbox.next_buf();
        outbox.commit(to, 5);
        assert_eq!(
            outbox.parts().1[0].as_ptr(),
            first,
            "the same buffer, not a new one"
        );
        assert_eq!(outbox.len(), 1);
    }
}
