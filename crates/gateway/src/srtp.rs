//! SDES-SRTP (RFC 4568 keys, RFC 3711 packets) of one m-line of a call: the device's key decrypts
//! what it sends, ours encrypts what we send. The transform is webrtc-rs's `webrtc-srtp` (AES-CM with
//! HMAC-SHA1, the suites room systems offer); this module only pairs the two directions and turns its
//! errors into a drop the caller counts.

use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::sdp::{SrtpNegotiated, SrtpSuite};

/// Master key length of the AES-128 suites; the salt is the rest of the 30 bytes.
const KEY_LEN: usize = 16;
/// Packets remembered against replays (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;

#[derive(Debug, thiserror::Error)]
#[error("SRTP context: {0}")]
pub struct SrtpError(String);

/// Both directions of one m-line.
pub struct SrtpPair {
    inbound: Context,
    outbound: Context,
    /// The keys these contexts were made from, to notice a re-INVITE that changes them.
    keys: ([u8; 30], [u8; 30]),
}

fn profile(suite: SrtpSuite) -> ProtectionProfile {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn context(key: &[u8; 30], suite: SrtpSuite) -> Result<Context, SrtpError> {
    Context::new(
        &key[..KEY_LEN],
        &key[KEY_LEN..],
        profile(suite),
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
    )
    .map_err(|e| SrtpError(e.to_string()))
}

impl SrtpPair {
    pub fn new(n: &SrtpNegotiated) -> Result<Self, SrtpError> {
        Ok(Self {
            inbound: context(&n.remote_key, n.suite)?,
            outbound: context(&n.local_key, n.suite)?,
            keys: (n.remote_key, n.local_key),
        })
    }

    /// Whether `n` still describes these contexts (a re-INVITE may bring new keys).
    pub fn matches(&self, n: &SrtpNegotiated) -> bool {
        self.keys == (n.remote_key, n.local_key)
    }

    /// The device's SRTP packet in the clear; None if it does not authenticate (or is a replay).
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.inbound.decrypt_rtp(packet).ok().map(|b| b.to_vec())
    }

    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.inbound.decrypt_rtcp(packet).ok().map(|b| b.to_vec())
    }

    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.outbound.encrypt_rtp(packet).ok().map(|b| b.to_vec())
    }

    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.outbound.encrypt_rtcp(packet).ok().map(|b| b.to_vec())
    }
}

/// A packet from the device in the clear: unprotected when the line has SRTP, as it came otherwise.
/// None if SRTP is agreed and the packet does not authenticate.
pub fn unprotect<'a>(
    srtp: Option<&mut SrtpPair>,
    packet: &'a [u8],
    rtcp: bool,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    use std::borrow::Cow;
    match srtp {
        None => Some(Cow::Borrowed(packet)),
        Some(s) if rtcp => s.unprotect_rtcp(packet).map(Cow::Owned),
        Some(s) => s.unprotect_rtp(packet).map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(remote: u8, local: u8, suite: SrtpSuite) -> SrtpNegotiated {
        SrtpNegotiated {
            tag: 1,
            suite,
            remote_key: [remote; 30],
            local_key: [local; 30],
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![
            0x80,
            0,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
            160,
            1,
            2,
            3,
            4,
        ];
        p.extend_from_slice(b"twenty bytes of audio");
        p
    }

    #[test]
    fn both_ends_of_a_call_read_each_other_and_reject_forgeries() {
        for suite in [
            SrtpSuite::AesCm128HmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32,
        ] {
            // The device's view is ours mirrored.
            let mut us = SrtpPair::new(&negotiated(7, 9, suite)).unwrap();
            let mut device = SrtpPair::new(&negotiated(9, 7, suite)).unwrap();
            let sent = device.protect_rtp(&rtp(1)).unwrap();
            assert_ne!(&sent[12..], &rtp(1)[12..], "the payload is encrypted");
            assert_eq!(us.unprotect_rtp(&sent).unwrap(), rtp(1));
            let back = us.protect_rtp(&rtp(2)).unwrap();
            assert_eq!(device.unprotect_rtp(&back).unwrap(), rtp(2));

            // A flipped bit, a replay, a truncated packet and plain RTP are all refused.
            let mut forged = device.protect_rtp(&rtp(3)).unwrap();
            forged[14] ^= 1;
            assert!(us.unprotect_rtp(&forged).is_none());
            assert!(us.unprotect_rtp(&sent).is_none(), "replayed");
            assert!(us.unprotect_rtp(&sent[..10]).is_none());
            assert!(us.unprotect_rtp(&rtp(4)).is_none());

            // RTCP (a PLI) both ways.
            let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
            let sent = us.protect_rtcp(&pli).unwrap();
            assert_eq!(device.unprotect_rtcp(&sent).unwrap(), pli);
        }
    }

    #[test]
    fn new_keys_are_noticed() {
        let pair = SrtpPair::new(&negotiated(1, 2, SrtpSuite::AesCm128HmacSha1_80)).unwrap();
        assert!(pair.matches(&negotiated(1, 2, SrtpSuite::AesCm128HmacSha1_80)));
        assert!(!pair.matches(&negotiated(3, 2, SrtpSuite::AesCm128HmacSha1_80)));
    }
}
