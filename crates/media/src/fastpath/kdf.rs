//! SRTP session keys from DTLS-SRTP keying material.
//!
//! A DTLS-SRTP handshake exports one block of keying material (RFC 5764 §4.2):
//! `client_write_master_key | server_write_master_key | client_write_master_salt |
//! server_write_master_salt`. The DTLS client protects what it sends with the client halves, the server
//! with the server halves. From each master key and salt the SRTP key derivation function (RFC 3711
//! §4.3) makes the session keys the packet transform uses; RFC 7714 §11 keeps that KDF for the AEAD
//! profiles, with the AES-CM PRF of the master key's size (AES-256 for `AEAD_AES_256_GCM`, as RFC 6188
//! defines it). This runs once per connection, never per packet.
//!
//! Only the RTP keys are derived (labels 0 and 2): RTCP stays with str0m.

use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;

use super::srtp::{Profile, SALT_LEN, SrtpContext, SrtpError};

/// RFC 3711 §4.3.1 labels of the RTP session keys.
pub const LABEL_RTP_ENCRYPTION: u8 = 0x00;
/// The RTP authentication key; the AEAD profiles have none (the tag is GCM's), but AES-CM does.
pub const LABEL_RTP_AUTHENTICATION: u8 = 0x01;
pub const LABEL_RTP_SALT: u8 = 0x02;
pub const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
pub const LABEL_RTCP_SALT: u8 = 0x05;

/// The KDF's salt width (112 bits, RFC 3711 §4.3.3).
const PRF_SALT_LEN: usize = 14;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KdfError {
    #[error("master key of {0} bytes: the AES-CM PRF takes 16 or 32")]
    MasterKey(usize),
    #[error("master salt of {0} bytes: the KDF takes at most 14")]
    MasterSalt(usize),
    #[error("keying material of {got} bytes where the profile exports {want}")]
    KeyingMaterial { got: usize, want: usize },
    #[error("the AES-CM PRF failed")]
    Prf,
}

/// The AES-CM PRF of RFC 3711 §4.3.3: fills `out` with session key material for `label`.
///
/// With a key derivation rate of 0 (RFC 5764 §4.1.2 fixes it at 0 for DTLS-SRTP; the AEAD profiles
/// of RFC 7714 are used the same way), `r = index DIV kdr` is 0 and the 56-bit
/// `key_id = label || r` XORs only the label into byte 7 of the 112-bit salt. The PRF input is
/// `x * 2^16`, i.e. the salt in the first 14 of 16 bytes, and the output is the AES counter-mode
/// keystream from there (the low 16 bits count blocks).
///
/// A 12-byte (AEAD) master salt fills the first 12 bytes and the rest stays zero. That is how libsrtp
/// (so every browser) and str0m read RFC 7714 §11; the RFC's own text was read otherwise by some (RFC
/// 7714 errata; libsrtp issues 179 and 184), but interoperation is what counts, and
/// `tests/fastpath_keys.rs` checks it against str0m.
pub fn aes_cm_prf(
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), KdfError> {
    let algorithm = match master_key.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => return Err(KdfError::MasterKey(n)),
    };
    if master_salt.len() > PRF_SALT_LEN {
        return Err(KdfError::MasterSalt(master_salt.len()));
    }
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    let key = UnboundCipherKey::new(algorithm, master_key).map_err(|_| KdfError::Prf)?;
    let key = EncryptingKey::ctr(key).map_err(|_| KdfError::Prf)?;
    // The keystream is the encryption of zeros.
    out.fill(0);
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| KdfError::Prf)?;
    Ok(())
}

/// The RTP session key and salt of one direction of one connection.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    profile: Profile,
    key: [u8; 32],
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("SessionKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SessionKey {
    /// RTP session key and salt from one master key and salt (RFC 3711 §4.3, RFC 7714 §11).
    pub fn derive(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, KdfError> {
        Self::derive_labelled(
            profile,
            master_key,
            master_salt,
            LABEL_RTP_ENCRYPTION,
            LABEL_RTP_SALT,
        )
    }

    /// The RTCP session key and salt (SRTCP) from the same master key and salt.
    pub fn derive_rtcp(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, KdfError> {
        Self::derive_labelled(
            profile,
            master_key,
            master_salt,
            LABEL_RTCP_ENCRYPTION,
            LABEL_RTCP_SALT,
        )
    }

    fn derive_labelled(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
        key_label: u8,
        salt_label: u8,
    ) -> Result<Self, KdfError> {
        let key_len = profile.key_len();
        if master_key.len() != key_len {
            return Err(KdfError::MasterKey(master_key.len()));
        }
        if master_salt.len() != SALT_LEN {
            return Err(KdfError::MasterSalt(master_salt.len()));
        }
        let mut key = [0u8; 32];
        aes_cm_prf(master_key, master_salt, key_label, &mut key[..key_len])?;
        let mut salt = [0u8; SALT_LEN];
        aes_cm_prf(master_key, master_salt, salt_label, &mut salt)?;
        Ok(Self { profile, key, salt })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The session encryption key (16 or 32 bytes, by profile).
    pub fn key(&self) -> &[u8] {
        &self.key[..self.profile.key_len()]
    }

    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// A packet transform keyed with this session key.
    pub fn context(&self) -> Result<SrtpContext, SrtpError> {
        SrtpContext::new(self.profile, self.key(), self.salt)
    }
}

/// Both directions of one connection's SRTP, seen from our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// What we protect outgoing RTP with.
    pub local: SessionKey,
    /// What the peer protects its RTP with: what we unprotect incoming RTP with.
    pub remote: SessionKey,
    /// What we protect outgoing RTCP with (the fast path's sender reports and feedback).
    pub local_rtcp: SessionKey,
    /// What the peer protects its RTCP with (the fast path reads subscribers' feedback).
    pub remote_rtcp: SessionKey,
}

impl SrtpKeys {
    /// Splits the DTLS exporter output (RFC 5764 §4.2) and derives both directions' session keys.
    /// `dtls_client`: whether our side was the DTLS client (str0m's "active"); the client's writes use
    /// the client halves.
    pub fn derive(profile: Profile, material: &[u8], dtls_client: bool) -> Result<Self, KdfError> {
        let key_len = profile.key_len();
        let want = 2 * (key_len + SALT_LEN);
        if material.len() != want {
            return Err(KdfError::KeyingMaterial {
                got: material.len(),
                want,
            });
        }
        let (client_key, rest) = material.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_salt, server_salt) = rest.split_at(SALT_LEN);
        let client = SessionKey::derive(profile, client_key, client_salt)?;
        let server = SessionKey::derive(profile, server_key, server_salt)?;
        let (local, remote, (local_key, local_salt), (remote_key, remote_salt)) = if dtls_client {
            (
                client,
                server,
                (client_key, client_salt),
                (server_key, server_salt),
            )
        } else {
            (
                server,
                client,
                (server_key, server_salt),
                (client_key, client_salt),
            )
        };
        Ok(Self {
            local,
            remote,
            local_rtcp: SessionKey::derive_rtcp(profile, local_key, local_salt)?,
            remote_rtcp: SessionKey::derive_rtcp(profile, remote_key, remote_salt)?,
        })
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

    fn prf(key: &str, salt: &str, label: u8, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        aes_cm_prf(&hex(key), &hex(salt), label, &mut out).unwrap();
        out
    }

    #[test]
    fn rfc3711_appendix_b3_aes_128() {
        let (key, salt) = (
            "E1F97A0D3E018BE0D64FA32C06DE4139",
            "0EC675AD498AFEEBB6960B3AABE6",
        );
        assert_eq!(
            prf(key, salt, LABEL_RTP_ENCRYPTION, 16),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            prf(key, salt, LABEL_RTP_SALT, 14),
            hex("30CBBC08863D8C85D49DB34A9AE1")
        );
        // The 94-byte authentication key of B.3 runs the counter over six blocks.
        assert_eq!(
            prf(key, salt, LABEL_RTP_AUTHENTICATION, 94),
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    #[test]
    fn rfc6188_7_2_aes_256() {
        let (key, salt) = (
            "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6",
            "3b04803de51ee7c96423ab5b78d2",
        );
        assert_eq!(
            prf(key, salt, LABEL_RTP_ENCRYPTION, 32),
            hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
        );
        assert_eq!(
            prf(key, salt, LABEL_RTP_SALT, 14),
            hex("fa31791685ca444a9e07c6c64e93")
        );
        assert_eq!(
            prf(key, salt, LABEL_RTP_AUTHENTICATION, 20),
            hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")
        );
    }

    #[test]
    fn a_twelve_byte_salt_is_the_fourteen_byte_one_with_zeros_after_it() {
        let key = "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6";
        for label in [LABEL_RTP_ENCRYPTION, LABEL_RTP_SALT] {
            assert_eq!(
                prf(key, "3b04803de51ee7c96423ab5b", label, 32),
                prf(key, "3b04803de51ee7c96423ab5b0000", label, 32)
            );
        }
        let session = SessionKey::derive(
            Profile::AeadAes256Gcm,
            &hex(key),
            &hex("3b04803de51ee7c96423ab5b"),
        )
        .unwrap();
        assert_eq!(
            session.key(),
            &prf(key, "3b04803de51ee7c96423ab5b", 0, 32)[..]
        );
        assert_eq!(
            &session.salt()[..],
            &prf(key, "3b04803de51ee7c96423ab5b", 2, 12)[..]
        );
    }

    #[test]
    fn material_splits_by_rfc5764_and_role() {
        for profile in [Profile::AeadAes128Gcm, Profile::AeadAes256Gcm] {
            let k = profile.key_len();
            // Each of the four parts is filled with its own byte.
            let mut material = vec![1u8; k];
            material.extend(vec![2u8; k]);
            material.extend([3u8; SALT_LEN]);
            material.extend([4u8; SALT_LEN]);
            let client_write = SessionKey::derive(profile, &vec![1; k], &[3; SALT_LEN]).unwrap();
            let server_write = SessionKey::derive(profile, &vec![2; k], &[4; SALT_LEN]).unwrap();

            let client = SrtpKeys::derive(profile, &material, true).unwrap();
            assert_eq!(client.local, client_write);
            assert_eq!(client.remote, server_write);
            let server = SrtpKeys::derive(profile, &material, false).unwrap();
            assert_eq!(server.local, client.remote);
            assert_eq!(server.remote, client.local);
            assert_eq!(client.local.key().len(), k);

            assert_eq!(
                SrtpKeys::derive(profile, &material[1..], true),
                Err(KdfError::KeyingMaterial {
                    got: material.len() - 1,
                    want: material.len()
                })
            );
        }
        assert_eq!(
            aes_cm_prf(&[0; 24], &[0; 14], 0, &mut [0; 16]),
            Err(KdfError::MasterKey(24))
        );
        assert_eq!(
            aes_cm_prf(&[0; 16], &[0; 15], 0, &mut [0; 16]),
            Err(KdfError::MasterSalt(15))
        );
        assert!(
            format!(
                "{:?}",
                SessionKey::derive(Profile::AeadAes128Gcm, &[7; 16], &[7; 12]).unwrap()
            )
            .contains("AeadAes128Gcm")
        );
    }
}
