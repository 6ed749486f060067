//! Password hashing with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, one lane: OWASP's
//! recommended minimum). Hashing is deliberately slow, so callers run it on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (bounds the hashing work a request can cause).
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")]
    Length,
    #[error("hashing failed: {0}")]
    Hash(String),
}

pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(PasswordError::Length)
    }
}

/// The PHC string (`$argon2id$v=19$...`) for a new password.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    check_policy(password)?;
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (a malformed stored hash never matches).
pub fn verify(password: &str, stored: &str) -> bool {
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horsf", &a));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn policy_bounds_length() {
        assert_eq!(hash("short"), Err(PasswordError::Length));
        assert!(check_policy(&"x".repeat(MAX_PASSWORD_CHARS)).is_ok());
        assert_eq!(
            check_policy(&"x".repeat(MAX_PASSWORD_CHARS + 1)),
            Err(PasswordError::Length)
        );
    }
}
