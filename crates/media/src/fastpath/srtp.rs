//! SRTP with an AEAD profile (RFC 7714), on aws-lc-rs's AES-GCM, in place and without allocating.
//!
//! One implementation for two users: the fast path (forwarded media protected by us rather than by
//! str0m) and `convene-floor` (the benchmark's cost floor), so the floor measures exactly the transform
//! the SFU runs.
//!
//! str0m (aws-lc-rs crypto, dimpl DTLS) negotiates `SRTP_AEAD_AES_256_GCM` with browsers and with our
//! load generator, so that is the profile that matters; AES-128-GCM is here too, because the RFC's test
//! vectors cover both and a peer may pick it. `AES128_CM_SHA1_80` is not implemented: a connection that
//! negotiates it stays on str0m's path.
//!
//! Only the packet transform lives here. The session keys and salts come from the DTLS-SRTP keying
//! material through the SRTP KDF ([`super::kdf`]), which runs once per connection.
//!
//! The IV is built by hand, as RFC 7714 §8.1 specifies: the 12 bytes `00 00 || SSRC || ROC || SEQ`
//! XOR the 12-byte session salt. The AAD is the whole RTP header (with CSRCs and extensions), the
//! ciphertext replaces the payload, and the 16-byte tag follows it. ROC (the rollover counter) and SEQ
//! together are the 48-bit packet index `ROC << 16 | SEQ` (RFC 3711 §3.3.1); the sender counts the ROC
//! per SSRC ([`OutboundStream`]), the receiver estimates it ([`RocTracker`]).

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Bytes of the GCM authentication tag appended to every SRTP packet.
pub const TAG_LEN: usize = 16;
/// Bytes SRTCP adds to an RTCP packet: the tag and the E flag with the SRTCP index.
pub const SRTCP_OVERHEAD: usize = TAG_LEN + 4;
/// The RTCP octets SRTCP leaves in the clear: the first header and its sender SSRC.
const RTCP_CLEAR: usize = 8;

/// Bytes of the session salt of both AEAD profiles.
pub const SALT_LEN: usize = 12;

/// The SRTP protection profiles this transform supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Profile {
    /// Bytes of the master key, and of the session key derived from it (they are equal for both).
    pub fn key_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 16,
            Profile::AeadAes256Gcm => 32,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    #[error("key of {0} bytes does not fit the profile")]
    BadKey(usize),
    #[error("not an RTP packet (too short, wrong version or truncated header)")]
    NotRtp,
    #[error("no room for the authentication tag")]
    NoRoom,
    #[error("authentication failed")]
    Auth,
    #[error("packet of SSRC {packet:#010x} given to the outbound stream of SSRC {stream:#010x}")]
    WrongStream { stream: u32, packet: u32 },
}

/// One direction of one SRTP session: a session key and salt.
pub struct SrtpContext {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("SrtpContext").finish_non_exhaustive()
    }
}

/// Length of the RTP header (fixed part, CSRCs and header extension) at the start of `packet`.
pub fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return Err(SrtpError::NotRtp);
    }
    let csrc = usize::from(packet[0] & 0x0f);
    let mut len = 12 + 4 * csrc;
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(len + 2..len + 4).ok_or(SrtpError::NotRtp)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if len > packet.len() {
        return Err(SrtpError::NotRtp);
    }
    Ok(len)
}

/// SSRC and sequence number of an RTP packet (caller checked it is one).
pub fn ssrc_seq(packet: &[u8]) -> Option<(u32, u16)> {
    let h = packet.get(..12)?;
    Some((
        u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        u16::from_be_bytes([h[2], h[3]]),
    ))
}

/// RFC 7714 §8.1 IV: `00 00 || SSRC || ROC || SEQ` XOR salt.
pub fn iv(salt: &[u8; SALT_LEN], ssrc: u32, roc: u32, seq: u16) -> [u8; SALT_LEN] {
    let mut iv = [0u8; SALT_LEN];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// The SRTCP IV (RFC 7714 §9.1): `00 00 || SSRC || 00 00 || 0 + SRTCP index`, XOR the salt.
fn rtcp_iv(salt: &[u8; SALT_LEN], ssrc: u32, index: u32) -> [u8; SALT_LEN] {
    let mut iv = [0u8; SALT_LEN];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

impl SrtpContext {
    pub fn new(profile: Profile, key: &[u8], salt: [u8; SALT_LEN]) -> Result<Self, SrtpError> {
        if key.len() != profile.key_len() {
            return Err(SrtpError::BadKey(key.len()));
        }
        let algorithm = match profile {
            Profile::AeadAes128Gcm => &AES_128_GCM,
            Profile::AeadAes256Gcm => &AES_256_GCM,
        };
        let key = UnboundKey::new(algorithm, key).map_err(|_| SrtpError::BadKey(key.len()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// Encrypts the RTP packet in `buf[..len]` in place and appends the tag; returns the SRTP length.
    /// `buf` must have [`TAG_LEN`] bytes of room after `len`. The caller supplies the ROC; see
    /// [`SrtpContext::protect_in_place`] for the variant that counts it.
    pub fn protect(&self, buf: &mut [u8], len: usize, roc: u32) -> Result<usize, SrtpError> {
        let header_len = Self::check_room(buf, len)?;
        let (ssrc, seq) = ssrc_seq(buf).ok_or(SrtpError::NotRtp)?;
        self.seal(buf, len, header_len, ssrc, roc, seq)
    }

    /// Encrypts the RTP packet in `buf[..len]` of `stream` in place and appends the tag, with the
    /// stream's rollover counter; returns the SRTP length. Allocation-free: the fast path's per-packet
    /// call. Nothing about the stream changes when the packet is refused.
    pub fn protect_in_place(
        &self,
        stream: &mut OutboundStream,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let header_len = Self::check_room(buf, len)?;
        let (ssrc, seq) = ssrc_seq(buf).ok_or(SrtpError::NotRtp)?;
        if ssrc != stream.ssrc {
            return Err(SrtpError::WrongStream {
                stream: stream.ssrc,
                packet: ssrc,
            });
        }
        let roc = stream.roc.roc_for(seq);
        self.seal(buf, len, header_len, ssrc, roc, seq)
    }

    /// The RTP header length of `buf[..len]`, once it is known the tag fits after it.
    fn check_room(buf: &[u8], len: usize) -> Result<usize, SrtpError> {
        if buf.len() < len + TAG_LEN {
            return Err(SrtpError::NoRoom);
        }
        rtp_header_len(&buf[..len])
    }

    fn seal(
        &self,
        buf: &mut [u8],
        len: usize,
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let nonce = Nonce::assume_unique_for_key(iv(&self.salt, ssrc, roc, seq));
        let (header, rest) = buf.split_at_mut(header_len);
        let payload_len = len - header_len;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), &mut rest[..payload_len])
            .map_err(|_| SrtpError::Auth)?;
        rest[payload_len..payload_len + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + TAG_LEN)
    }

    /// Protects the RTCP (compound) packet in `buf[..len]` in place as SRTCP (RFC 7714 §9, §17): the
    /// first 8 octets (header and sender SSRC) stay clear, the rest is encrypted, then come the tag
    /// and the E flag with the 31-bit SRTCP `index` (which the caller counts per sender SSRC).
    /// `buf` needs [`SRTCP_OVERHEAD`] bytes of room after `len`; returns the SRTCP length.
    pub fn protect_rtcp(&self, buf: &mut [u8], len: usize, index: u32) -> Result<usize, SrtpError> {
        if len < RTCP_CLEAR || buf.len() < len + SRTCP_OVERHEAD {
            return Err(SrtpError::NoRoom);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let e_index = (1u32 << 31) | (index & 0x7fff_ffff);
        let mut aad = [0u8; RTCP_CLEAR + 4];
        aad[..RTCP_CLEAR].copy_from_slice(&buf[..RTCP_CLEAR]);
        aad[RTCP_CLEAR..].copy_from_slice(&e_index.to_be_bytes());
        let nonce = Nonce::assume_unique_for_key(rtcp_iv(&self.salt, ssrc, index));
        let (_, rest) = buf.split_at_mut(RTCP_CLEAR);
        let body = len - RTCP_CLEAR;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut rest[..body])
            .map_err(|_| SrtpError::Auth)?;
        rest[body..body + TAG_LEN].copy_from_slice(tag.as_ref());
        rest[body + TAG_LEN..body + TAG_LEN + 4].copy_from_slice(&e_index.to_be_bytes());
        Ok(len + SRTCP_OVERHEAD)
    }

    /// The inverse of [`protect_rtcp`](Self::protect_rtcp): authenticates and decrypts in place;
    /// returns the RTCP length and the SRTCP index.
    pub fn unprotect_rtcp(&self, buf: &mut [u8]) -> Result<(usize, u32), SrtpError> {
        if buf.len() < RTCP_CLEAR + SRTCP_OVERHEAD {
            return Err(SrtpError::NotRtp);
        }
        let total = buf.len();
        let e_index = u32::from_be_bytes([
            buf[total - 4],
            buf[total - 3],
            buf[total - 2],
            buf[total - 1],
        ]);
        let index = e_index & 0x7fff_ffff;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let mut aad = [0u8; RTCP_CLEAR + 4];
        aad[..RTCP_CLEAR].copy_from_slice(&buf[..RTCP_CLEAR]);
        aad[RTCP_CLEAR..].copy_from_slice(&e_index.to_be_bytes());
        let nonce = Nonce::assume_unique_for_key(rtcp_iv(&self.salt, ssrc, index));
        let (_, rest) = buf.split_at_mut(RTCP_CLEAR);
        let sealed = rest.len() - 4;
        self.key
            .open_in_place(nonce, Aad::from(aad), &mut rest[..sealed])
            .map_err(|_| SrtpError::Auth)?;
        Ok((total - SRTCP_OVERHEAD, index))
    }

    /// Authenticates and decrypts the SRTP packet in `buf` in place; returns the RTP length.
    pub fn unprotect(&self, buf: &mut [u8], roc: u32) -> Result<usize, SrtpError> {
        let header_len = rtp_header_len(buf)?;
        if buf.len() < header_len + TAG_LEN {
            return Err(SrtpError::NotRtp);
        }
        let (ssrc, seq) = ssrc_seq(buf).ok_or(SrtpError::NotRtp)?;
        let nonce = Nonce::assume_unique_for_key(iv(&self.salt, ssrc, roc, seq));
        let total = buf.len();
        let (header, rest) = buf.split_at_mut(header_len);
        self.key
            .open_in_place(nonce, Aad::from(&*header), rest)
            .map_err(|_| SrtpError::Auth)?;
        Ok(total - TAG_LEN)
    }
}

/// The sending side of one RTP stream (one SSRC) in an SRTP session: its rollover counter.
///
/// The sender's ROC is the number of times the stream's sequence number wrapped (RFC 3711 §3.3.1).
/// Forwarded packets keep their arrival order through our sequence rewriting, so a packet that arrived
/// late leaves with a sequence number below the highest sent; the ROC is therefore counted with the
/// same estimate the receiver makes ([`RocTracker`]), which agrees with the receiver as long as
/// reordering stays under half the sequence space.
#[derive(Debug, Clone, Copy)]
pub struct OutboundStream {
    ssrc: u32,
    roc: RocTracker,
}

impl OutboundStream {
    /// A stream whose first packet is sent with ROC 0.
    pub fn new(ssrc: u32) -> Self {
        Self::continuing(ssrc, 0)
    }

    /// A stream whose next packet is sent with this ROC: taking over a stream that someone else (str0m)
    /// started, whose receiver already counts wraps from there.
    pub fn continuing(ssrc: u32, roc: u32) -> Self {
        Self {
            ssrc,
            roc: RocTracker::starting_at(roc),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The ROC of the newest packet sent (or of the next one, before any).
    pub fn roc(&self) -> u32 {
        self.roc.roc
    }
}

/// Tracks the rollover counter of one incoming SSRC (RFC 3711 §3.3.1 estimate).
#[derive(Debug, Clone, Copy, Default)]
pub struct RocTracker {
    started: bool,
    highest: u16,
    roc: u32,
}

impl RocTracker {
    /// A tracker whose first packet gets this ROC.
    pub fn starting_at(roc: u32) -> Self {
        Self {
            started: false,
            highest: 0,
            roc,
        }
    }

    /// The ROC to use for `seq`, and remember it if the packet is the newest.
    pub fn roc_for(&mut self, seq: u16) -> u32 {
        if !self.started {
            self.started = true;
            self.highest = seq;
            return self.roc;
        }
        let s_l = self.highest;
        // Appendix A of RFC 3711: guess v in {ROC-1, ROC, ROC+1}.
        let v = if s_l < 32_768 {
            if seq > s_l && seq - s_l > 32_768 {
                self.roc.wrapping_sub(1)
            } else {
                self.roc
            }
        } else if s_l - 32_768 > seq {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        };
        if v == self.roc.wrapping_add(1) || (v == self.roc && seq > s_l) {
            self.roc = v;
            self.highest = seq;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        clean
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    // RFC 7714 §16: the session salt ("Quid pro quo") and the RTP packet every vector encrypts
    // (header 8040f17b 8041f8d3 5501a0b2, payload "Gallia est omnis divisa in partes tres").
    const SALT: &str = "517569642070726f2071756f";
    const PLAIN: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                         20646976 69736120 696e2070 61727465 73207472 6573";

    fn salt() -> [u8; SALT_LEN] {
        hex(SALT).try_into().unwrap()
    }

    fn check_vector(profile: Profile, key: &str, protected: &str) {
        let ctx = SrtpContext::new(profile, &hex(key), salt()).unwrap();
        let plain = hex(PLAIN);
        let want = hex(protected);
        let mut buf = [0u8; 256];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = ctx.protect(&mut buf, plain.len(), 0).unwrap();
        assert_eq!(&buf[..n], &want[..], "{profile:?} encrypt");

        let mut wire = want.clone();
        let n = ctx.unprotect(&mut wire, 0).unwrap();
        assert_eq!(&wire[..n], &plain[..], "{profile:?} decrypt");

        // One flipped bit anywhere (header included: it is the AAD) fails authentication.
        for i in [1, 13, want.len() - 1] {
            let mut bad = want.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                ctx.unprotect(&mut bad, 0),
                Err(SrtpError::Auth),
                "bit at {i}"
            );
        }
        // So does the wrong ROC (it is in the IV).
        let mut wire = want;
        assert_eq!(ctx.unprotect(&mut wire, 1), Err(SrtpError::Auth));
    }

    /// SRTCP: the first 8 octets stay clear, the E flag and index trail the tag, the round trip
    /// restores the packet, and a changed index (or byte) fails authentication.
    #[test]
    fn srtcp_round_trip_and_tamper() {
        let ctx = SrtpContext::new(Profile::AeadAes256Gcm, &[3; 32], salt()).unwrap();
        let rtcp: Vec<u8> = (0..28u8).map(|i| i.wrapping_mul(7)).collect();
        let mut buf = rtcp.clone();
        buf.resize(28 + SRTCP_OVERHEAD, 0);
        assert_eq!(ctx.protect_rtcp(&mut buf, 28, 5).unwrap(), 48);
        assert_eq!(&buf[..8], &rtcp[..8]);
        assert_ne!(&buf[8..28], &rtcp[8..]);
        assert_eq!(&buf[44..48], &(0x8000_0005u32).to_be_bytes());
        let mut copy = buf.clone();
        assert_eq!(ctx.unprotect_rtcp(&mut copy).unwrap(), (28, 5));
        assert_eq!(&copy[..28], &rtcp[..]);
        let mut wrong_index = buf.clone();
        wrong_index[47] = 6;
        assert_eq!(ctx.unprotect_rtcp(&mut wrong_index), Err(SrtpError::Auth));
        let mut flipped = buf;
        flipped[10] ^= 1;
        assert_eq!(ctx.unprotect_rtcp(&mut flipped), Err(SrtpError::Auth));
        assert_eq!(
            ctx.protect_rtcp(&mut [0u8; 30], 28, 0),
            Err(SrtpError::NoRoom)
        );
    }

    #[test]
    fn rfc7714_iv() {
        assert_eq!(
            iv(&salt(), 0x5501_a0b2, 0, 0xf17b).to_vec(),
            hex("51753c6580c2726f20718414")
        );
    }

    #[test]
    fn rfc7714_16_1_aead_aes_128_gcm() {
        check_vector(
            Profile::AeadAes128Gcm,
            "000102030405060708090a0b0c0d0e0f",
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
             0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        );
    }

    #[test]
    fn rfc7714_16_2_aead_aes_256_gcm() {
        check_vector(
            Profile::AeadAes256Gcm,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
             9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        );
    }

    #[test]
    fn headers_with_csrcs_and_extensions() {
        // V=2, X=1, CC=1; one CSRC; a one-word extension; 3 bytes of payload.
        let mut p = vec![0x91, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9, 9];
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(rtp_header_len(&p), Ok(24));
        let ctx = SrtpContext::new(Profile::AeadAes256Gcm, &[7; 32], [1; 12]).unwrap();
        let mut buf = p.clone();
        buf.resize(p.len() + TAG_LEN, 0);
        let n = ctx.protect(&mut buf, p.len(), 5).unwrap();
        assert_eq!(&buf[..24], &p[..24], "header stays clear");
        let n = ctx.unprotect(&mut buf[..n], 5).unwrap();
        assert_eq!(&buf[..n], &p[..]);

        assert_eq!(rtp_header_len(&p[..20]), Err(SrtpError::NotRtp));
        assert_eq!(rtp_header_len(&[0x40; 12]), Err(SrtpError::NotRtp));
        let mut short = [0u8; 12];
        assert_eq!(ctx.protect(&mut short, 12, 0), Err(SrtpError::NoRoom));
        assert!(SrtpContext::new(Profile::AeadAes128Gcm, &[0; 32], [0; 12]).is_err());
    }

    #[test]
    fn roc_follows_wraps_and_tolerates_reordering() {
        let mut r = RocTracker::default();
        assert_eq!(r.roc_for(65_530), 0);
        assert_eq!(r.roc_for(65_535), 0);
        assert_eq!(r.roc_for(2), 1, "wrapped");
        assert_eq!(r.roc_for(65_534), 0, "late packet from before the wrap");
        assert_eq!(r.roc_for(3), 1);
        assert_eq!(r.roc_for(30_000), 1);
        // More than half the sequence space ahead reads as a late packet of the previous cycle (RFC 3711).
        assert_eq!(r.roc_for(64_000), 0);
    }

    #[test]
    fn outbound_stream_counts_wraps_and_checks_the_ssrc() {
        let ctx = SrtpContext::new(Profile::AeadAes256Gcm, &[3; 32], [4; 12]).unwrap();
        let packet = |seq: u16| {
            let mut p = vec![0x80, 0x60];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 1, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3]);
            p.resize(p.len() + TAG_LEN, 0);
            p
        };
        let mut stream = OutboundStream::continuing(0xcafe_babe, 7);
        let mut sent = Vec::new();
        for seq in [65_534u16, 65_535, 0, 65_533, 1] {
            let mut buf = packet(seq);
            let n = ctx
                .protect_in_place(&mut stream, &mut buf, 15)
                .expect("protects");
            sent.push((seq, buf[..n].to_vec()));
        }
        assert_eq!(stream.roc(), 8, "one wrap");
        // The receiver's estimate decrypts every packet, the late one from before the wrap included.
        let mut rx = RocTracker::starting_at(7);
        for (seq, mut wire) in sent {
            let roc = rx.roc_for(seq);
            let want = if (1..65_000).contains(&seq) || seq == 0 {
                8
            } else {
                7
            };
            assert_eq!(roc, want, "seq {seq}");
            let n = ctx.unprotect(&mut wire, roc).expect("decrypts");
            assert_eq!(&wire[12..n], &[1, 2, 3]);
        }

        // A packet of another SSRC, or without room for the tag, is refused and changes nothing.
        let mut other = packet(2);
        other[11] = 0xbf;
        assert_eq!(
            ctx.protect_in_place(&mut stream, &mut other, 15),
            Err(SrtpError::WrongStream {
                stream: 0xcafe_babe,
                packet: 0xcafe_babf
            })
        );
        let mut short = packet(40_000);
        assert_eq!(
            ctx.protect_in_place(&mut stream, &mut short[..20], 15),
            Err(SrtpError::NoRoom)
        );
        assert_eq!(stream.roc(), 8);
    }

    #[test]
    fn protect_in_place_matches_the_rfc_vector() {
        // RFC 7714 §16.2 through the outbound stream: ROC 0, SSRC 5501a0b2.
        let ctx = SrtpContext::new(
            Profile::AeadAes256Gcm,
            &hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            salt(),
        )
        .unwrap();
        let plain = hex(PLAIN);
        let mut buf = [0u8; 256];
        buf[..plain.len()].copy_from_slice(&plain);
        let mut stream = OutboundStream::new(0x5501_a0b2);
        let n = ctx
            .protect_in_place(&mut stream, &mut buf, plain.len())
            .unwrap();
        let want = hex(
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
             9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        );
        assert_eq!(&buf[..n], &want[..]);
    }
}
