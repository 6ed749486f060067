//! `convene-floor`: the least CPU any SFU must spend per forwarded packet, measured on this machine.
//!
//! A forwarded SRTP packet costs at least one decryption (shared by all receivers), one encryption per
//! receiver with that receiver's key, and one trip through the kernel's UDP send path. [`Floor`] does
//! exactly that and nothing else; [`driver`] feeds it SRTP at a chosen rate and fan-out and measures what
//! comes out (and the floor process's CPU), so the benchmark can state Convene's cost as a multiple of
//! the floor's. It is not an SFU: no ICE, no DTLS (keys are pre-shared, [`keys`]), no RTCP.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod driver;
pub mod forwarder;
/// The SRTP transform is the SFU's own (its fast path's), so the floor measures the code Convene runs.
pub use convene_media::fastpath::srtp;

pub use forwarder::Floor;

/// Pre-shared session keys: both ends compute them from the SSRC (sender -> floor) or the receiver id
/// (floor -> receiver). Distinct keys per receiver keep the per-receiver encryption honest (one key
/// schedule each, as with DTLS-SRTP); that they are predictable does not matter on a benchmark loopback.
pub mod keys {
    use crate::srtp::{Profile, SALT_LEN};

    fn fill(seed: u64) -> ([u8; 32], [u8; SALT_LEN]) {
        // splitmix64: a tiny, well-known mixing function, enough to make keys differ.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&next().to_le_bytes());
        }
        let mut salt = [0u8; SALT_LEN];
        salt[..8].copy_from_slice(&next().to_le_bytes());
        salt[8..].copy_from_slice(&next().to_le_bytes()[..4]);
        (key, salt)
    }

    /// Key (first `profile.key_len()` bytes) and salt of the stream with this SSRC.
    pub fn stream_key(profile: Profile, ssrc: u32) -> ([u8; 32], [u8; SALT_LEN]) {
        fill(u64::from(ssrc) | (profile.key_len() as u64) << 40)
    }

    /// Key and salt of the floor's session towards receiver `id`.
    pub fn receiver_key(profile: Profile, id: u32) -> ([u8; 32], [u8; SALT_LEN]) {
        fill(u64::from(id) | 1 << 32 | (profile.key_len() as u64) << 40)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_differ_per_stream_receiver_and_profile() {
            let a = stream_key(Profile::AeadAes256Gcm, 1);
            assert_eq!(a, stream_key(Profile::AeadAes256Gcm, 1));
            assert_ne!(a, stream_key(Profile::AeadAes256Gcm, 2));
            assert_ne!(a, receiver_key(Profile::AeadAes256Gcm, 1));
            assert_ne!(a, stream_key(Profile::AeadAes128Gcm, 1));
        }
    }
}
