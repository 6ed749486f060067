//! Principals (the deployment's administrators) and their access keys: creation and first-start
//! bootstrap.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use serde::Serialize;
use time::OffsetDateTime;

use crate::secrets::{MasterKey, create_private};
use crate::store::principals::StoredPrincipal;
use crate::store::{Store, StoreError};

/// Access key pair, printed and written exactly as the AWS CLI's credential JSON spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error("a principal named {0:?} exists already")]
    Exists(String),
    #[error("principal names are 1-64 characters of A-Z a-z 0-9 + = , . @ _ -")]
    BadName,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    // Both alphabets have a power-of-two size, so the modulo is unbiased.
    bytes
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

/// A fresh key pair in AWS's shapes: a 20-character key id and a 40-character secret.
pub fn new_credentials() -> Credentials {
    Credentials {
        access_key_id: format!("AKCV{}", random_string(KEY_ALPHABET, 16)),
        secret_access_key: random_string(SECRET_ALPHABET, 40),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Create a principal with the given policies (managed names as JSON strings, or documents).
pub async fn create_principal(
    store: &Store,
    master: &MasterKey,
    name: &str,
    policies: &[serde_json::Value],
    now: OffsetDateTime,
) -> Result<Credentials, PrincipalError> {
    if !valid_name(name) {
        return Err(PrincipalError::BadName);
    }
    let credentials = new_credentials();
    let stored = StoredPrincipal {
        name: name.to_owned(),
        access_key_id: credentials.access_key_id.clone(),
        secret_sealed: master.seal(&credentials.secret_access_key),
        policies: serde_json::Value::Array(policies.to_vec()).to_string(),
    };
    if !store.create_principal(&stored, now).await? {
        return Err(PrincipalError::Exists(name.to_owned()));
    }
    Ok(credentials)
}

/// On first start (no principal yet): create `root` with FullAccess and write its keys to
/// `<data_dir>/bootstrap-credentials.json` (mode 0600). Returns them, or None if principals exist.
pub async fn bootstrap(
    store: &Store,
    master: &MasterKey,
    data_dir: &Path,
    now: OffsetDateTime,
) -> Result<Option<Credentials>, PrincipalError> {
    if store.principal_count().await? > 0 {
        return Ok(None);
    }
    let credentials = create_principal(
        store,
        master,
        "root",
        &[serde_json::Value::String("FullAccess".into())],
        now,
    )
    .await?;
    let path = data_dir.join("bootstrap-credentials.json");
    let io = |source| PrincipalError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = create_private(&path).map_err(io)?;
    let json = serde_json::to_string_pretty(&credentials).unwrap_or_default();
    file.write_all(json.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(io)?;
    Ok(Some(credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_have_aws_shapes_and_differ() {
        let a = new_credentials();
        let b = new_credentials();
        assert_eq!(a.access_key_id.len(), 20);
        assert_eq!(a.secret_access_key.len(), 40);
        assert_ne!(a, b);
        let json = serde_json::to_value(&a).unwrap();
        assert!(json.get("AccessKeyId").is_some() && json.get("SecretAccessKey").is_some());
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("ops-team@example.com"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
