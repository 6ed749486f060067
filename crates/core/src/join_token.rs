//! Join tokens: the admin plane decides who may join a meeting, as whom and in which role, and says so in
//! a short-lived token signed with Ed25519; the media plane (and the gateway) verify it with the public
//! key alone, so admitting an attendee never needs a call back to the admin plane (or its database).
//!
//! Wire form: `v1.<payload>.<signature>`, both parts base64url without padding; the payload is the
//! [`JoinClaims`] as JSON and the signature covers the ASCII bytes `v1.<payload>`. A compact, JWT-like shape
//! that needs no JOSE library: the algorithm is fixed by the version prefix, so there is no `alg`
//! header to confuse.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ids::{AttendeeId, ClientType, MeetingId};

const PREFIX: &str = "v1.";
/// Longest token accepted for parsing (claims are a few hundred bytes).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// What an attendee may do in the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttendeeRole {
    /// The meeting's organizer: host controls (recording, ending the meeting for everyone).
    Host,
    Attendee,
}

/// Everything a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    /// The meeting it admits to.
    pub meeting: MeetingId,
    /// The attendee id the holder joins as (unique per token).
    pub attendee: AttendeeId,
    /// Display name, already validated by the issuer.
    pub name: String,
    pub role: AttendeeRole,
    pub client: ClientType,
    /// The signed-in user behind the attendee, if any (guests have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// May the holder grant another attendee control of their shared screen? Their organisation's
    /// policy (the account setting `DisableRemoteControl`) decides; absent means no.
    #[serde(default)]
    pub remote_control: bool,
    /// Expiry, seconds since the Unix epoch (UTC).
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the join token is malformed")]
    Malformed,
    #[error("the join token's signature is not valid")]
    BadSignature,
    #[error("the join token has expired; ask for a new one")]
    Expired,
}

/// Signs tokens (the admin plane, the gateway).
#[derive(Clone)]
pub struct JoinTokenIssuer {
    key: SigningKey,
}

impl fmt::Debug for JoinTokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinTokenIssuer(..)")
    }
}

impl JoinTokenIssuer {
    /// From the 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The verifier that accepts this issuer's tokens.
    pub fn verifier(&self) -> JoinTokenVerifier {
        JoinTokenVerifier {
            key: self.key.verifying_key(),
        }
    }

    pub fn issue(&self, claims: &JoinClaims) -> String {
        // Serialising plain data with string keys cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// Checks tokens (the media plane).
#[derive(Debug, Clone)]
pub struct JoinTokenVerifier {
    key: VerifyingKey,
}

impl JoinTokenVerifier {
    /// From the issuer's 32-byte public key.
    pub fn from_public_key(bytes: &[u8; 32]) -> Result<Self, TokenError> {
        VerifyingKey::from_bytes(bytes)
            .map(|key| Self { key })
            .map_err(|_| TokenError::Malformed)
    }

    /// The claims of a genuine, unexpired token. `now_unix` is seconds since the epoch.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<JoinClaims, TokenError> {
        self.verify_with_grace(token, now_unix, 0)
    }

    /// Like [`verify`](Self::verify), but a token expired less than `grace_secs` ago still counts: for
    /// acts that follow a meeting (the end-of-meeting survey), long after the join.
    pub fn verify_with_grace(
        &self,
        token: &str,
        now_unix: u64,
        grace_secs: u64,
    ) -> Result<JoinClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES || !token.starts_with(PREFIX) {
            return Err(TokenError::Malformed);
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(TokenError::Malformed)?;
        self.key
            .verify(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| TokenError::Malformed)?;
        let claims: JoinClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.expires_at.saturating_add(grace_secs) <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_at: u64) -> JoinClaims {
        JoinClaims {
            meeting: "1234567890".parse().unwrap(),
            attendee: AttendeeId::from_raw(7),
            name: "Ada Lovelace".into(),
            role: AttendeeRole::Host,
            client: ClientType::Web,
            user: Some("u-1".into()),
            remote_control: true,
            expires_at,
        }
    }

    #[test]
    fn round_trip() {
        let issuer = JoinTokenIssuer::from_seed(&[1; 32]);
        let token = issuer.issue(&claims(1000));
        assert!(token.starts_with("v1."));
        assert_eq!(issuer.verifier().verify(&token, 999), Ok(claims(1000)));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let issuer = JoinTokenIssuer::from_seed(&[1; 32]);
        let token = issuer.issue(&claims(1000));
        assert_eq!(
            issuer.verifier().verify(&token, 1000),
            Err(TokenError::Expired)
        );
        assert!(
            issuer
                .verifier()
                .verify_with_grace(&token, 1500, 600)
                .is_ok()
        );
        assert_eq!(
            issuer.verifier().verify_with_grace(&token, 1600, 600),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn another_key_or_an_edited_payload_is_a_bad_signature() {
        let issuer = JoinTokenIssuer::from_seed(&[1; 32]);
        let other = JoinTokenIssuer::from_seed(&[2; 32]);
        let token = other.issue(&claims(1000));
        assert_eq!(
            issuer.verifier().verify(&token, 0),
            Err(TokenError::BadSignature)
        );
        // Swap in a payload naming another meeting, keeping the genuine signature.
        let genuine = issuer.issue(&claims(1000));
        let mut forged_claims = claims(1000);
        forged_claims.meeting = "9999999999".parse().unwrap();
        let forged_payload = issuer.issue(&forged_claims);
        let (_, sig) = genuine.rsplit_once('.').unwrap();
        let (payload, _) = forged_payload.rsplit_once('.').unwrap();
        assert_eq!(
            issuer.verifier().verify(&format!("{payload}.{sig}"), 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let v = JoinTokenIssuer::from_seed(&[1; 32]).verifier();
        for bad in [
            "",
            "v1.",
            "v1..",
            "v2.e30.AAAA",
            "v1.e30",
            "v1.%%%.%%%",
            "v1.e30.AAAA",
            &"v1.".repeat(2000),
        ] {
            assert!(v.verify(bad, 0).is_err(), "{bad:?}");
        }
    }
}
