//! The master key, and sealing of stored secrets with it.
//!
//! SigV4 needs each caller's secret in the clear to recompute signatures, so secrets cannot be hashed;
//! they are sealed (XChaCha20-Poly1305, random nonce) with a master key that lives outside the database,
//! in the data directory (mode 0600) unless the operator supplies one. A stolen database alone reveals
//! no secret.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} must hold 64 hex digits")]
    BadKeyFile(String),
    #[error("a sealed secret is corrupt or was sealed with another master key")]
    Unseal,
}

/// The key that seals stored secrets.
pub struct MasterKey(XChaCha20Poly1305);

impl MasterKey {
    /// Read `<dir>/master.key`, creating it (random, mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, SecretError> {
        let key = load_or_create_key_file(&dir.join("master.key"))?;
        Ok(Self(XChaCha20Poly1305::new(&key.into())))
    }

    /// A key given as 64 hex digits (32 bytes).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        (bytes.len() == 32).then(|| Self(XChaCha20Poly1305::new(bytes.as_slice().into())))
    }

    /// Seal a secret: hex of nonce followed by ciphertext.
    pub fn seal(&self, secret: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption into a Vec cannot fail for inputs this small.
        let sealed = self
            .0
            .encrypt(&nonce, secret.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        hex::encode(out)
    }

    pub fn unseal(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = hex::decode(sealed).map_err(|_| SecretError::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Unseal)?;
        String::from_utf8(plain).map_err(|_| SecretError::Unseal)
    }
}

/// A 32-byte key kept as 64 hex digits in `path` (mode 0600), created at random on first use.
pub fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], SecretError> {
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SecretError::BadKeyFile(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            chacha20poly1305::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut key);
            let mut file = create_private(path).map_err(io)?;
            file.write_all(hex::encode(key).as_bytes()).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Create a file readable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// `bytes` random bytes from the OS, hex-encoded: tokens for links and cookies.
pub fn random_hex(bytes: usize) -> String {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let dir =
            std::env::temp_dir().join(format!("convene-mk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = MasterKey::load_or_create(&dir).unwrap();
        let sealed = key.seal("wJalrXUtnFEMI/K7MDENG");
        assert_ne!(sealed, "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(key.unseal(&sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG");
        // The same key comes back from the file.
        let again = MasterKey::load_or_create(&dir).unwrap();
        assert_eq!(again.unseal(&sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert!(key.unseal(std::str::from_utf8(&tampered).unwrap()).is_err());
        assert!(key.unseal("zz").is_err());
        let other = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        assert!(other.unseal(&key.seal("x")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
