//! One media port, two sockets: RTCP lands on the second, everything else on the first.
//!
//! Media wants the worker awake the moment it arrives; RTCP does not. Subscribers send transport-wide
//! feedback every 50-100 ms each, so a worker with a hundred of them was woken 600-700 times a second
//! for reports that could wait a few milliseconds (scenario (a) of the benchmark, where the floor,
//! receiving no feedback, wakes once per media packet). With the two kinds on separate sockets the
//! worker reads RTCP when it is awake anyway, and at most [`crate::worker`]'s delay later. Measured
//! with the worker thread's own CPU clock, interleaved runs (bench/results/2026-12-06-notes.md,
//! "Session 11"): wake-ups 640-670 -> 156-173 a second, the server's CPU per forwarded packet 5-10 %
//! lower at the same rate.
//!
//! The split is the kernel's: both sockets bind the same address in one `SO_REUSEPORT` group, and a
//! classic BPF program attached to the group (`SO_ATTACH_REUSEPORT_CBPF`, Linux 4.5+) picks the socket
//! for each datagram from its first two bytes, by RFC 5761 §4's rule for telling RTCP from RTP on one
//! port (RFC 7983's first-byte ranges put STUN, DTLS and the rest in the media socket). No signaling,
//! SDP or port changes: peers still see one address.
//!
//! By hand over a crate: this is two `setsockopt` calls and an eight-instruction filter; the BPF crates
//! compile eBPF, which needs privileges this does not.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

/// The media port's sockets. `rtcp` is `None` where the kernel could not split (then all datagrams
/// arrive on `media`, as with one socket).
#[derive(Debug)]
pub struct SteeredPort {
    pub media: UdpSocket,
    pub rtcp: Option<UdpSocket>,
}

/// Index of the RTCP socket in the group: the second bound.
const RTCP_INDEX: u32 = 1;

/// The filter, run on each datagram's UDP payload; it returns the index of the socket (in bind order)
/// that gets it. RTCP: version 2 (first byte 128..=191) and packet type 192..=223 (RFC 5761 §4: with
/// RTP payload types 64-95 unused, which RFC 5761 requires of a muxed session). Anything else, and a
/// datagram too short to tell (the load fails and the filter returns 0), goes to the media socket.
fn filter() -> [libc::sock_filter; 8] {
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_B_ABS, 0, 0, 0),     // 0: A = byte 0
        op(JGE, 0, 5, 0x80),       // 1: version < 2 (STUN, DTLS, ...) -> 7 media
        op(JGE, 4, 0, 0xc0),       // 2: version 3 -> 7 media
        op(LD_B_ABS, 0, 0, 1),     // 3: A = byte 1
        op(JGE, 0, 2, 192),        // 4: below RTCP's range -> 7 media (RTP)
        op(JGT, 1, 0, 223),        // 5: above it -> 7 media (RTP with marker)
        op(RET, 0, 0, RTCP_INDEX), // 6: RTCP
        op(RET, 0, 0, 0),          // 7: media
    ]
}

/// Binds `addr` as a [`SteeredPort`]. Fails (as one plain bind would) when the port is taken; falls
/// back to one plain socket when the kernel refuses `SO_REUSEPORT`, the group or the filter.
///
/// Known limit: between the probing bind and the group's, another process of the same user binding
/// the same port with `SO_REUSEPORT` could join the group and receive some of its datagrams (the kernel
/// lets no other user in). Convene's own ports come from `--media-ports`, which two servers on one host
/// should not share.
pub fn bind(addr: SocketAddr) -> io::Result<SteeredPort> {
    // SO_REUSEPORT would let this bind join another process's group on the port (same user only)
    // instead of failing; a plain bind first keeps "port in use" an error.
    drop(UdpSocket::bind(addr)?);
    let media = match reuse_port_socket(addr) {
        Ok(media) => media,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "SO_REUSEPORT refused; RTCP wakes the worker");
            return Ok(SteeredPort {
                media: UdpSocket::bind(addr)?,
                rtcp: None,
            });
        }
    };
    let rtcp = match second_socket(addr, &media) {
        Ok(rtcp) => Some(rtcp),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "RTCP steering unavailable; RTCP wakes the worker");
            None
        }
    };
    Ok(SteeredPort {
        media: media.into(),
        rtcp,
    })
}

fn reuse_port_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    set_int(&socket, libc::SO_REUSEPORT, 1)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn second_socket(addr: SocketAddr, media: &Socket) -> io::Result<UdpSocket> {
    let rtcp = reuse_port_socket(addr)?;
    let program = filter();
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies the filter.
    let rc = unsafe {
        libc::setsockopt(
            media.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rtcp.into())
}

fn set_int(socket: &Socket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    crate::udp::set_socket_option(socket.as_raw_fd(), libc::SOL_SOCKET, option, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn port() -> (SteeredPort, SocketAddr) {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        (bind(addr).expect("steered bind"), addr)
    }

    /// Which socket of the pair got `datagram` (each read with a timeout: a lost datagram fails).
    fn lands_on(port: &SteeredPort, addr: SocketAddr, datagram: &[u8]) -> &'static str {
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sender.send_to(datagram, addr).expect("send");
        let rtcp = port.rtcp.as_ref().expect("the kernel splits the port");
        let mut buf = [0u8; 64];
        for socket in [&port.media, rtcp] {
            socket.set_nonblocking(true).expect("nonblocking");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            for (socket, name) in [(&port.media, "media"), (rtcp, "rtcp")] {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    assert_eq!(&buf[..n], datagram);
                    return name;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("{datagram:?} arrived nowhere");
    }

    #[test]
    fn rtcp_goes_to_its_own_socket_and_the_rest_to_media() {
        let (port, addr) = port();
        let rtp = |b0: u8, b1: u8| [b0, b1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        // RTCP: SR, RR, RTPFB (transport-wide feedback, NACK), PSFB (PLI), with report counts.
        for pt in [200, 201, 205, 206] {
            assert_eq!(lands_on(&port, addr, &rtp(0x81, pt)), "rtcp", "type {pt}");
        }
        // RTCP's range edges (RFC 5761 §4): 192 and 223 are RTCP, 191 and 224 are RTP.
        assert_eq!(lands_on(&port, addr, &rtp(0x80, 192)), "rtcp");
        assert_eq!(lands_on(&port, addr, &rtp(0x80, 223)), "rtcp");
        assert_eq!(lands_on(&port, addr, &rtp(0x80, 191)), "media");
        assert_eq!(lands_on(&port, addr, &rtp(0x80, 224)), "media");
        // RTP: Opus (111), VP8 with the marker bit (0x80 | 96), a padding-only RTX packet.
        assert_eq!(lands_on(&port, addr, &rtp(0x80, 111)), "media");
        assert_eq!(lands_on(&port, addr, &rtp(0x90, 0x80 | 96)), "media");
        assert_eq!(lands_on(&port, addr, &rtp(0xa0, 97)), "media");
        // STUN (first byte 0-3), DTLS (20-63), version 3 and 1-byte datagrams: media.
        assert_eq!(lands_on(&port, addr, &[0x00, 0x01, 0, 0]), "media");
        assert_eq!(lands_on(&port, addr, &[22, 0xfe, 0xfd]), "media");
        assert_eq!(lands_on(&port, addr, &rtp(0xc0, 200)), "media");
        assert_eq!(lands_on(&port, addr, &[0x80]), "media");
    }

    /// A port another socket holds stays an error, as a plain bind would make it.
    #[test]
    fn a_taken_port_is_refused() {
        let (port, addr) = port();
        assert!(bind(addr).is_err(), "bound {addr} twice");
        let plain = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(bind(plain.local_addr().expect("addr")).is_err());
        drop(port);
    }
}
