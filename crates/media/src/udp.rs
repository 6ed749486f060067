//! Batched UDP: one `recvmmsg(2)` or `sendmmsg(2)` system call per batch of datagrams.
//!
//! A media worker receives and sends tens of thousands of small datagrams a second, to hundreds of
//! destinations; one system call each (and one wake-up of the kernel's UDP path per call) was a
//! fifth to a third of its time at load (`bench/results/2026-12-06-notes.md`). `recvmmsg` fills up to
//! [`BATCH`] buffers per call, `sendmmsg` sends up to [`BATCH`] datagrams to as many destinations, or
//! ([`SendBatch::send_plan`]) up to [`BATCH`] messages each carrying one destination's datagrams as a
//! segmented send (UDP GSO, planned by [`crate::gso`]).
//!
//! Why by hand over `libc`: `quinn-udp` batches sends only to one destination per call (GSO without
//! `sendmmsg`), and `nix`'s
//! `sendmmsg` returns its count only through an iterator that reads address slots a send never wrote,
//! and its `recvmmsg` does not reset the address lengths between calls. What is left is two system
//! calls and the `sockaddr` conversions, in one small module whose `unsafe` blocks each say what they
//! rely on. Nothing here allocates after construction.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram received; a longer one is reported as truncated.
pub const MAX_DATAGRAM: usize = 2048;

/// Receive buffers for [`BATCH`] datagrams and what the last [`RecvBatch::recv`] put in them.
pub struct RecvBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    /// Per slot of the last call: length and source; `None` when truncated or of an address family
    /// other than IPv4/IPv6.
    received: [Option<(usize, SocketAddr)>; BATCH],
    /// Control-message space per slot: the kernel's receive time ([`enable_arrival_times`]).
    controls: Box<[ControlBuf; BATCH]>,
    /// Per slot of the last call: when the kernel received it (wall clock), if the socket says.
    arrived: [Option<Duration>; BATCH],
    count: usize,
    truncated: usize,
}

/// Room for one `SCM_TIMESTAMPNS` control message (`CMSG_SPACE(16)` = 32 bytes on 64-bit Linux) and
/// then some, aligned as `cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct ControlBuf([u8; 64]);

/// Asks the kernel to stamp every datagram `fd` receives with the wall-clock time it arrived
/// (`SO_TIMESTAMPNS`), which [`RecvBatch::arrived`] then reports: how long a datagram waited in the
/// socket and in the worker before its copies left ([`delay_until_now`]). The stamp is taken where
/// the kernel receives the packet (for loopback, as the sender sends it), so the delay includes the
/// queue in front of the worker.
pub fn enable_arrival_times(fd: RawFd) -> io::Result<()> {
    set_socket_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// Sets an integer option of `level` (`SOL_SOCKET`, `SOL_UDP`, ...) on `fd`.
pub(crate) fn set_socket_option(
    fd: RawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a plain int option, its true size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The wall clock now, as [`RecvBatch::arrived`] reports arrivals.
pub fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// How long ago (`now`, from [`wall_clock`]) a datagram arrived; zero if the clock stepped back.
pub fn delay_until_now(arrived: Duration, now: Duration) -> Duration {
    now.saturating_sub(arrived)
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        // SAFETY: `sockaddr_storage` is plain bytes, for which all zeroes is a valid value.
        let names = Box::new(unsafe {
            MaybeUninit::<[libc::sockaddr_storage; BATCH]>::zeroed().assume_init()
        });
        Self {
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            names,
            received: [None; BATCH],
            controls: Box::new([ControlBuf([0; 64]); BATCH]),
            arrived: [None; BATCH],
            count: 0,
            truncated: 0,
        }
    }

    /// One `recvmmsg` on `fd`: up to [`BATCH`] datagrams, their count returned. On a non-blocking
    /// socket with nothing queued this is `Err(WouldBlock)`; with `wait_for_one` a blocking socket
    /// waits (up to its read timeout) for the first datagram only and takes what else is queued.
    pub fn recv(&mut self, fd: RawFd, wait_for_one: bool) -> io::Result<usize> {
        self.count = 0;
        self.truncated = 0;
        // SAFETY: all-zero `iovec`s and `mmsghdr`s are valid (null pointers, zero lengths); every one
        // handed to the kernel is filled in below.
        let mut iov: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        let mut hdr: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = MAX_DATAGRAM;
            let h = &mut hdr[i].msg_hdr;
            h.msg_name = (&raw mut self.names[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[i].0.as_mut_ptr().cast();
            h.msg_controllen = size_of::<ControlBuf>() as _;
        }
        let flags = if wait_for_one {
            libc::MSG_WAITFORONE
        } else {
            0
        };
        // SAFETY: each header points at its own live buffer, address slot and iovec, with their true
        // sizes; `hdr` has BATCH entries; the kernel writes only within those.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdr.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdr.iter().enumerate().take(n) {
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let source = socket_addr(&self.names[i], h.msg_hdr.msg_namelen);
            if truncated {
                self.truncated += 1;
            }
            self.received[i] = source
                .filter(|_| !truncated)
                .map(|source| (h.msg_len as usize, source));
            self.arrived[i] = arrival_time(&h.msg_hdr);
        }
        self.count = n;
        Ok(n)
    }

    /// Datagram `i` of the last call, with its source; `None` past the count, and for a datagram
    /// that was truncated or came from an address family other than IPv4/IPv6.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.count {
            return None;
        }
        let (len, source) = self.received[i]?;
        Some((source, &self.bufs[i][..len]))
    }

    /// As [`get`](Self::get), writable (to decrypt in place).
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        if i >= self.count {
            return None;
        }
        let (len, source) = self.received[i]?;
        Some((source, &mut self.bufs[i][..len]))
    }

    /// Datagrams of the last call that were longer than [`MAX_DATAGRAM`] (and so dropped).
    pub fn truncated(&self) -> usize {
        self.truncated
    }

    /// When the kernel received datagram `i` of the last call (wall clock, as [`wall_clock`]);
    /// `None` unless its socket has [`enable_arrival_times`].
    pub fn arrived(&self, i: usize) -> Option<Duration> {
        if i >= self.count {
            return None;
        }
        self.arrived[i]
    }
}

/// The `SCM_TIMESTAMPNS` control message of a received message header, if any.
fn arrival_time(h: &libc::msghdr) -> Option<Duration> {
    // SAFETY: the kernel set `msg_control`/`msg_controllen` to our buffer and what it wrote there;
    // the CMSG_* macros stay within `msg_controllen`, and a `timespec` is read (unaligned) only from
    // a message whose length says it holds one.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(h);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET
                && c.cmsg_type == libc::SCM_TIMESTAMPNS
                && c.cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::timespec>() as u32) as usize
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(h, cmsg);
        }
    }
    None
}

/// Destination slots for one `sendmmsg` call, and for segmented sends ([`SendBatch::send_plan`]) the
/// datagrams' iovecs and each message's `UDP_SEGMENT` control message.
pub struct SendBatch {
    names: Box<[libc::sockaddr_storage; BATCH]>,
    controls: Box<[SegmentControl; BATCH]>,
}

/// `UDP_SEGMENT` (include/uapi/linux/udp.h; not in the `libc` crate for glibc targets).
const UDP_SEGMENT: libc::c_int = 103;
/// Datagrams in one segmented `sendmmsg` call, over all its messages.
const SEGMENT_IOVS: usize = BATCH * 4;
const _: () = assert!(
    crate::gso::MAX_SEGMENTS <= SEGMENT_IOVS,
    "a message must fit a call's iovecs"
);

/// Room for one `UDP_SEGMENT` control message (`CMSG_SPACE(2)` = 24 bytes on 64-bit Linux), aligned
/// as `cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct SegmentControl([u8; 24]);
const _: () = assert!(size_of::<SegmentControl>() >= size_of::<libc::cmsghdr>() + 8);

/// Whether the kernel cuts segmented sends on `fd` (`UDP_SEGMENT`, Linux 4.18): asked by setting the
/// socket's default segment size to 0 (none), which changes nothing.
pub fn supports_segmentation(fd: RawFd) -> bool {
    set_socket_option(fd, libc::SOL_UDP, UDP_SEGMENT, 0).is_ok()
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    pub fn new() -> Self {
        // SAFETY: as in `RecvBatch::new`.
        let names = Box::new(unsafe {
            MaybeUninit::<[libc::sockaddr_storage; BATCH]>::zeroed().assume_init()
        });
        Self {
            names,
            controls: Box::new([SegmentControl([0; 24]); BATCH]),
        }
    }

    /// Sends every item (`parts` gives its destination and bytes), [`BATCH`] per system call, and
    /// returns how many the kernel took. An item the kernel refuses (a full send buffer, an
    /// unreachable destination) goes to `failed` with the error and is skipped; the rest still go.
    pub fn send<'a, T>(
        &mut self,
        fd: RawFd,
        items: &'a [T],
        parts: impl Fn(&'a T) -> (SocketAddr, &'a [u8]),
        mut failed: impl FnMut(&T, io::Error),
    ) -> usize {
        let mut sent = 0;
        let mut offset = 0;
        while offset < items.len() {
            let chunk = &items[offset..items.len().min(offset + BATCH)];
            // SAFETY: as in `RecvBatch::recv`.
            let mut iov: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
            let mut hdr: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
            for (i, item) in chunk.iter().enumerate() {
                let (destination, bytes) = parts(item);
                let namelen = write_sockaddr(&mut self.names[i], destination);
                // The kernel only reads through `iov_base` on a send; the cast to `*mut` is the
                // C signature's.
                iov[i].iov_base = bytes.as_ptr().cast_mut().cast();
                iov[i].iov_len = bytes.len();
                let h = &mut hdr[i].msg_hdr;
                h.msg_name = (&raw mut self.names[i]).cast();
                h.msg_namelen = namelen;
                h.msg_iov = &raw mut iov[i];
                h.msg_iovlen = 1;
            }
            // SAFETY: the first `chunk.len()` headers point at live bytes (borrowed from `items` for
            // this call), filled address slots and iovecs, with their true lengths.
            let error = match unsafe { sendmmsg(fd, &mut hdr[..chunk.len()]) } {
                Ok(n) => {
                    sent += n;
                    offset += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            // `sendmmsg` reports an error only for the first datagram of a call (a later failure
            // ends the call early and shows on the next one): skip just that one.
            failed(&chunk[0], error);
            offset += 1;
        }
        sent
    }
}

impl SendBatch {
    /// Sends what `plan` planned ([`crate::gso`]): up to [`BATCH`] messages per `sendmmsg`, a message of
    /// several datagrams as one segmented send. `datagram(i)` gives the bytes at queue position `i`.
    /// After each call `sent` gets the messages the kernel took; a message it refused goes to `failed`
    /// with the error (the rest still go). A segmented message the kernel refuses as such (`EIO`: a
    /// device or path that cannot segment, which also clears `segmenting` so the caller plans without
    /// it for a while, [`crate::gso::Segmenting`]; `EMSGSIZE`/`EINVAL`: a segment over the destination's
    /// path MTU) is sent again datagram by datagram, each reported as a message of one.
    pub fn send_plan<'a>(
        &mut self,
        fd: RawFd,
        plan: &crate::gso::SegmentPlan,
        datagram: impl Fn(usize) -> &'a [u8],
        segmenting: &mut bool,
        mut sent: impl FnMut(&[crate::gso::Message]),
        mut failed: impl FnMut(&crate::gso::Message, io::Error),
    ) {
        let messages = plan.messages();
        let mut offset = 0;
        while offset < messages.len() {
            // SAFETY: as in `RecvBatch::recv`.
            let mut hdr: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
            // On the stack (2 KiB): iovecs hold pointers, which a worker's state may not (it moves
            // to its thread).
            let mut iov: [libc::iovec; SEGMENT_IOVS] =
                unsafe { MaybeUninit::zeroed().assume_init() };
            let mut iovs = 0;
            let mut count = 0;
            for m in &messages[offset..] {
                if count == BATCH || iovs + m.count > SEGMENT_IOVS {
                    break;
                }
                let namelen = write_sockaddr(&mut self.names[count], m.destination);
                for (j, &position) in plan.datagrams(m).iter().enumerate() {
                    let bytes = datagram(position);
                    iov[iovs + j].iov_base = bytes.as_ptr().cast_mut().cast();
                    iov[iovs + j].iov_len = bytes.len();
                }
                let h = &mut hdr[count].msg_hdr;
                h.msg_name = (&raw mut self.names[count]).cast();
                h.msg_namelen = namelen;
                h.msg_iov = &raw mut iov[iovs];
                h.msg_iovlen = m.count;
                if m.count > 1 {
                    write_segment_control(&mut self.controls[count], m.segment as u16);
                    h.msg_control = (&raw mut self.controls[count]).cast();
                    h.msg_controllen = size_of::<SegmentControl>();
                }
                iovs += m.count;
                count += 1;
            }
            // SAFETY: the first `count` headers point at filled address slots, iovecs over live
            // bytes (borrowed for this call) and, for segmented messages, a filled control message.
            let error = match unsafe { sendmmsg(fd, &mut hdr[..count]) } {
                Ok(n) => {
                    sent(&messages[offset..offset + n]);
                    offset += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            let first = &messages[offset];
            offset += 1;
            // Refused as a segmented send: its datagrams go one by one. EIO: the device or path
            // cannot segment at all (then none for a while); EMSGSIZE (EINVAL before Linux 5.12):
            // a segment does not fit this destination's path MTU, which fragmenting still crosses.
            let errno = error.raw_os_error();
            if first.count > 1 && matches!(errno, Some(libc::EIO | libc::EMSGSIZE | libc::EINVAL)) {
                if errno == Some(libc::EIO) {
                    tracing::warn!(%error, destination = %first.destination, "segmented send refused; sending datagrams one by one for a while");
                    *segmenting = false;
                } else {
                    tracing::debug!(%error, destination = %first.destination, "segmented send refused; sent one by one");
                }
                for j in 0..first.count {
                    // A message of its own: reported (and counted) datagram by datagram.
                    let alone = crate::gso::Message {
                        count: 1,
                        first: first.first + j,
                        ..*first
                    };
                    let bytes = datagram(plan.datagrams(first)[j]);
                    let mut refused = None;
                    self.send(
                        fd,
                        &[(first.destination, bytes)],
                        |&(d, b)| (d, b),
                        |_, e| refused = Some(e),
                    );
                    match refused {
                        None => sent(std::slice::from_ref(&alone)),
                        Some(e) => failed(&alone, e),
                    }
                }
                continue;
            }
            // As in `send`: the error concerns the call's first message.
            failed(first, error);
        }
    }
}

/// One `sendmmsg(2)` of `headers`: how many messages the kernel took (at least one), or why none.
///
/// # Safety
/// Every header must point at a filled address, iovecs over live bytes with their true lengths and,
/// if it has one, a filled control message.
unsafe fn sendmmsg(fd: RawFd, headers: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the caller's promise, and `headers.len()` headers are there.
    let n = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), headers.len() as libc::c_uint, 0) };
    match n {
        n if n > 0 => Ok(n as usize),
        0 => Err(io::Error::other("sendmmsg sent nothing")),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Writes a `UDP_SEGMENT` control message of `segment` bytes into `control`.
fn write_segment_control(control: &mut SegmentControl, segment: u16) {
    let header = libc::cmsghdr {
        // SAFETY: `CMSG_LEN` only computes a length.
        cmsg_len: unsafe { libc::CMSG_LEN(size_of::<u16>() as u32) } as usize,
        cmsg_level: libc::SOL_UDP,
        cmsg_type: UDP_SEGMENT,
    };
    let bytes = &mut control.0;
    // SAFETY: `SegmentControl` is 8-aligned and holds a `cmsghdr` (16 bytes) followed by its data;
    // both writes stay within its 24 bytes.
    unsafe {
        bytes.as_mut_ptr().cast::<libc::cmsghdr>().write(header);
        bytes
            .as_mut_ptr()
            .add(size_of::<libc::cmsghdr>())
            .cast::<u16>()
            .write_unaligned(segment);
    }
}

/// Writes `addr` as a C socket address into `slot` and returns its length.
fn write_sockaddr(slot: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for every socket address type.
            unsafe {
                (slot as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe {
                (slot as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The socket address the kernel wrote into `slot` (`len` bytes), if it is IPv4 or IPv6.
fn socket_addr(slot: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match slot.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a `sockaddr_in` here, and it fits.
            let sin =
                unsafe { &*(slot as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 =
                unsafe { &*(slot as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn pair(bind: &str) -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind(bind).expect("bind a");
        let b = UdpSocket::bind(bind).expect("bind b");
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        (a, b)
    }

    /// More datagrams than one call carries, to several destinations, all arrive intact and in order,
    /// with their source; the receiver needs two calls for a batch and a half.
    fn round_trip(bind: &str) {
        let (a, b) = pair(bind);
        let c = UdpSocket::bind(bind).expect("bind c");
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let to_b = b.local_addr().expect("addr");
        let to_c = c.local_addr().expect("addr");
        let items: Vec<(SocketAddr, Vec<u8>)> = (0..BATCH + BATCH / 2)
            .map(|i| {
                let to = if i % 3 == 0 { to_c } else { to_b };
                (to, vec![i as u8; 10 + i * 7])
            })
            .collect();
        let mut send = SendBatch::new();
        let sent = send.send(
            a.as_raw_fd(),
            &items,
            |(to, bytes)| (*to, bytes.as_slice()),
            |_, e| panic!("send failed: {e}"),
        );
        assert_eq!(sent, items.len());

        for (socket, to) in [(&b, to_b), (&c, to_c)] {
            let expected: Vec<&Vec<u8>> = items
                .iter()
                .filter(|(t, _)| *t == to)
                .map(|(_, b)| b)
                .collect();
            let mut got = Vec::new();
            let mut recv = RecvBatch::new();
            while got.len() < expected.len() {
                let n = recv.recv(socket.as_raw_fd(), true).expect("recv");
                assert!(n <= BATCH);
                for i in 0..n {
                    let (from, bytes) = recv.get(i).expect("datagram");
                    assert_eq!(from, a.local_addr().expect("addr"));
                    got.push(bytes.to_vec());
                }
                assert!(recv.get(n).is_none());
            }
            assert_eq!(got.iter().collect::<Vec<_>>(), expected);
        }
    }

    /// A fan-out planned for segmenting (two packets to each of three receivers, then more messages
    /// than one call and more datagrams than its iovecs carry) arrives datagram by datagram, intact
    /// and in each receiver's order; with segmenting off the same plan arrives the same.
    fn segmented_round_trip(segmenting: bool) {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| {
                let r = UdpSocket::bind("127.0.0.1:0").expect("bind");
                r.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                r
            })
            .collect();
        let to: Vec<SocketAddr> = receivers
            .iter()
            .map(|r| r.local_addr().expect("addr"))
            .collect();
        // Packet-major, as a fan-out queues them: every size class of the planner's rule.
        let mut items: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        for packet in 0..(SEGMENT_IOVS / 3 + 8) {
            let len = match packet % 4 {
                0 | 1 => 1100,
                2 => 300,
                _ => 1450,
            };
            for (r, &dest) in to.iter().enumerate() {
                items.push((dest, vec![(packet * 3 + r) as u8; len]));
            }
        }
        let mut plan = crate::gso::SegmentPlan::default();
        plan.plan(items.len(), |i| (items[i].0, items[i].1.len()), segmenting);
        if segmenting {
            assert!(
                plan.messages().iter().any(|m| m.count > 1),
                "nothing to segment"
            );
        }
        let mut send = SendBatch::new();
        let mut on = segmenting;
        let mut messages = 0;
        send.send_plan(
            a.as_raw_fd(),
            &plan,
            |i| items[i].1.as_slice(),
            &mut on,
            |m| messages += m.len(),
            |m, e| panic!("send to {} failed: {e}", m.destination),
        );
        assert_eq!(messages, plan.messages().len());
        assert_eq!(on, segmenting, "the kernel refused to segment on loopback");
        let mut recv = RecvBatch::new();
        for (r, socket) in receivers.iter().enumerate() {
            let expected: Vec<&Vec<u8>> = items
                .iter()
                .filter(|(d, _)| *d == to[r])
                .map(|(_, b)| b)
                .collect();
            let mut got = Vec::new();
            while got.len() < expected.len() {
                let n = recv.recv(socket.as_raw_fd(), true).expect("recv");
                for i in 0..n {
                    got.push(recv.get(i).expect("datagram").1.to_vec());
                }
            }
            assert_eq!(got.iter().collect::<Vec<_>>(), expected, "receiver {r}");
        }
    }

    #[test]
    fn segmented_sends_arrive_as_the_datagrams_they_carry() {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        if !supports_segmentation(probe.as_raw_fd()) {
            eprintln!("no UDP_SEGMENT in this kernel; skipped");
            return;
        }
        segmented_round_trip(true);
    }

    /// Sets the loopback interface of the calling thread's network namespace up with `mtu`.
    fn loopback_up_with_mtu(mtu: i32) -> io::Result<()> {
        // SAFETY: an `ifreq` for "lo" on a throwaway socket; each ioctl writes only within it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut req: libc::ifreq = MaybeUninit::zeroed().assume_init();
            for (i, b) in b"lo".iter().enumerate() {
                req.ifr_name[i] = *b as libc::c_char;
            }
            req.ifr_ifru.ifru_mtu = mtu;
            let mut ok = libc::ioctl(fd, libc::SIOCSIFMTU, &raw mut req) == 0;
            req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            ok &= libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw mut req) == 0;
            let error = io::Error::last_os_error();
            libc::close(fd);
            if ok { Ok(()) } else { Err(error) }
        }
    }

    /// A path whose MTU a segment does not fit (a loopback of 1 280 bytes, in a network namespace of
    /// the test's own): the kernel refuses the segmented send, its datagrams go one by one (and are
    /// fragmented, as without segmenting), each reported as sent, and segmenting stays on for the rest.
    #[test]
    fn a_segment_over_the_path_mtu_is_sent_datagram_by_datagram() {
        let outcome = std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread's network namespace (a thread of its own).
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            loopback_up_with_mtu(1280).ok()?;
            let a = UdpSocket::bind("127.0.0.1:0").ok()?;
            if !supports_segmentation(a.as_raw_fd()) {
                return None;
            }
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            b.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let to = b.local_addr().expect("addr");
            let items: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 1300]).collect();
            let mut plan = crate::gso::SegmentPlan::default();
            plan.plan(items.len(), |i| (to, items[i].len()), true);
            assert_eq!(plan.messages().len(), 1, "one message of three");
            let mut on = true;
            let mut reported = Vec::new();
            SendBatch::new().send_plan(
                a.as_raw_fd(),
                &plan,
                |i| items[i].as_slice(),
                &mut on,
                |m| reported.extend(m.iter().map(|m| m.count)),
                |m, e| panic!("send to {} failed: {e}", m.destination),
            );
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            for _ in 0..items.len() {
                let n = b.recv(&mut buf).expect("a datagram");
                got.push(buf[..n].to_vec());
            }
            Some((on, reported, got == items))
        })
        .join()
        .expect("test thread");
        let Some((still_on, reported, intact)) = outcome else {
            eprintln!("no network namespace or UDP_SEGMENT here (needs root); skipped");
            return;
        };
        assert_eq!(reported, vec![1, 1, 1], "reported datagram by datagram");
        assert!(intact, "the datagrams did not arrive whole and in order");
        assert!(still_on, "one destination's path MTU turned segmenting off");
    }

    #[test]
    fn a_plan_without_segmenting_sends_one_datagram_per_message() {
        segmented_round_trip(false);
    }

    #[test]
    fn datagrams_cross_in_batches_over_ipv4() {
        round_trip("127.0.0.1:0");
    }

    #[test]
    fn datagrams_cross_in_batches_over_ipv6() {
        if UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        }
        round_trip("[::1]:0");
    }

    /// With arrival times on, each datagram carries the wall-clock time the kernel received it:
    /// not before it was sent, not after it was read. Without them, none.
    #[test]
    fn the_kernel_dates_each_datagram_only_where_asked() {
        let (a, b) = pair("127.0.0.1:0");
        let (_, plain) = pair("127.0.0.1:0");
        enable_arrival_times(b.as_raw_fd()).expect("SO_TIMESTAMPNS");
        let before = wall_clock();
        for to in [&b, &plain] {
            for i in 0..3u8 {
                a.send_to(&[i; 20], to.local_addr().expect("addr"))
                    .expect("send");
            }
        }
        let mut recv = RecvBatch::new();
        let mut dated = 0;
        while dated < 3 {
            let n = recv.recv(b.as_raw_fd(), true).expect("recv");
            let read = wall_clock();
            for i in 0..n {
                let at = recv.arrived(i).expect("an arrival time");
                // The kernel's clock and ours are the same clock; allow for its tick granularity.
                assert!(
                    at + Duration::from_millis(1) >= before,
                    "{at:?} < {before:?}"
                );
                assert!(at <= read, "{at:?} > {read:?}");
                assert_eq!(delay_until_now(at, read), read - at);
                dated += 1;
            }
            assert!(recv.arrived(n).is_none(), "past the count");
        }
        let n = recv.recv(plain.as_raw_fd(), true).expect("recv");
        assert!(n > 0);
        assert!((0..n).all(|i| recv.arrived(i).is_none()));
        assert_eq!(
            delay_until_now(before, before - Duration::from_secs(1)),
            Duration::ZERO,
            "a clock stepped back is no delay"
        );
    }

    #[test]
    fn an_empty_non_blocking_socket_would_block() {
        let (_, b) = pair("127.0.0.1:0");
        b.set_nonblocking(true).expect("nonblocking");
        let err = RecvBatch::new()
            .recv(b.as_raw_fd(), false)
            .expect_err("nothing queued");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// A datagram longer than the buffers is dropped and counted, and the ones around it still come.
    #[test]
    fn an_oversized_datagram_is_counted_and_skipped() {
        let (a, b) = pair("127.0.0.1:0");
        let to = b.local_addr().expect("addr");
        for bytes in [vec![1u8; 100], vec![2u8; MAX_DATAGRAM + 1], vec![3u8; 100]] {
            a.send_to(&bytes, to).expect("send");
        }
        let mut recv = RecvBatch::new();
        let mut got = Vec::new();
        let mut truncated = 0;
        while got.len() + truncated < 3 {
            let n = recv.recv(b.as_raw_fd(), true).expect("recv");
            truncated += recv.truncated();
            got.extend((0..n).filter_map(|i| recv.get(i).map(|(_, d)| d[0])));
        }
        assert_eq!(got, vec![1, 3]);
        assert_eq!(truncated, 1);
    }

    /// A refused datagram (here: to port 0, which the kernel rejects) is reported and skipped; the
    /// ones after it are still sent.
    #[test]
    fn a_refused_datagram_does_not_stop_the_batch() {
        let (a, b) = pair("127.0.0.1:0");
        let good = b.local_addr().expect("addr");
        let bad: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let items = [(good, 1u8), (bad, 2), (good, 3)];
        let mut refused = Vec::new();
        let sent = SendBatch::new().send(
            a.as_raw_fd(),
            &items,
            |(to, byte)| (*to, std::slice::from_ref(byte)),
            |(_, byte), _| refused.push(*byte),
        );
        assert_eq!(sent, 2);
        assert_eq!(refused, vec![2]);
        let mut recv = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            let n = recv.recv(b.as_raw_fd(), true).expect("recv");
            got.extend((0..n).filter_map(|i| recv.get(i).map(|(_, d)| d[0])));
        }
        assert_eq!(got, vec![1, 3]);
    }
}
