//! Delivery of the audit trail as files, and their verification.
//!
//! Each delivery writes the records appended since the last one as a gzipped CloudTrail log file,
//! `<AccountId>_CloudTrail_<Region>_<YYYYMMDDTHHmmZ>_<first>-<last>.json.gz` holding `{"Records": [...]}`,
//! and a digest beside it (`....digest.json`): the file's SHA-256, the sequence range, the chain hashes at
//! both ends and the previous digest's signature, signed with the deployment's Ed25519 key. `verify` walks
//! the digests in order and names any file that was altered, removed or reordered.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::store::audit::{AuditQuery, GENESIS, chain_hash};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::secrets::SecretError),
    #[error("public key {0}: must hold 64 hex digits of an Ed25519 key")]
    BadKey(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditLogError + '_ {
    move |source| AuditLogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The deployment's audit signing key: `<data-dir>/audit-signing.key` (0600), created on first use, and its
/// public half in `audit-signing.pub` for verifiers.
pub fn signing_key(data_dir: &Path) -> Result<SigningKey, AuditLogError> {
    let path = data_dir.join("audit-signing.key");
    let key = SigningKey::from_bytes(&crate::secrets::load_or_create_key_file(&path)?);
    let public = data_dir.join("audit-signing.pub");
    if !public.exists() {
        std::fs::write(&public, hex::encode(key.verifying_key().to_bytes()))
            .map_err(io(&public))?;
    }
    Ok(key)
}

/// What a digest file says about its log file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DigestFile {
    pub log_file: String,
    pub log_file_sha256: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub first_prev_hash: String,
    pub last_hash: String,
    pub previous_digest_signature: Option<String>,
    pub signature: String,
}

impl DigestFile {
    /// The bytes the signature covers: every field but the signature, in a fixed order.
    fn signed_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.log_file,
            self.log_file_sha256,
            self.first_seq,
            self.last_seq,
            self.first_prev_hash,
            self.last_hash,
            self.previous_digest_signature.as_deref().unwrap_or("")
        )
    }
}

fn digests(dir: &Path) -> Result<Vec<(PathBuf, DigestFile)>, AuditLogError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.to_string_lossy().ends_with(".digest.json") {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            if let Ok(d) = serde_json::from_str::<DigestFile>(&text) {
                out.push((path, d));
            }
        }
    }
    out.sort_by_key(|(_, d)| d.first_seq);
    Ok(out)
}

/// Deliver the records appended since the last delivery into `dir`. Returns the new log file, if any.
pub async fn deliver(
    store: &Store,
    key: &SigningKey,
    dir: &Path,
    account_id: &str,
    region: &str,
    now: OffsetDateTime,
) -> Result<Option<PathBuf>, AuditLogError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let previous = digests(dir)?.pop().map(|(_, d)| d);
    let after = previous.as_ref().map_or(0, |d| d.last_seq);
    let rows = store
        .lookup_audit(&AuditQuery::default(), after, 100_000)
        .await?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let records: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.record).ok())
        .collect();
    let body = serde_json::json!({ "Records": records }).to_string();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    );
    let name = format!(
        "{account_id}_CloudTrail_{region}_{stamp}_{:012}-{:012}.json.gz",
        first.seq, last.seq
    );
    let path = dir.join(&name);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).map_err(io(&path))?;
    let bytes = gz.finish().map_err(io(&path))?;
    std::fs::write(&path, &bytes).map_err(io(&path))?;
    let mut digest = DigestFile {
        log_file: name.clone(),
        log_file_sha256: hex::encode(Sha256::digest(&bytes)),
        first_seq: first.seq,
        last_seq: last.seq,
        first_prev_hash: first.prev_hash.clone(),
        last_hash: last.hash.clone(),
        previous_digest_signature: previous.map(|d| d.signature),
        signature: String::new(),
    };
    digest.signature = hex::encode(key.sign(digest.signed_text().as_bytes()).to_bytes());
    let digest_path = dir.join(format!("{name}.digest.json"));
    let text = serde_json::to_string_pretty(&digest).unwrap_or_default();
    std::fs::write(&digest_path, text).map_err(io(&digest_path))?;
    Ok(Some(path))
}

/// Check every delivered file in `dir` against its signed digest and the hash chain. Returns the
/// problems found, each naming its file; empty means intact.
pub fn verify(dir: &Path, public_key: &VerifyingKey) -> Result<Vec<String>, AuditLogError> {
    let mut problems = Vec::new();
    let mut expected_prev_hash = GENESIS.to_owned();
    let mut expected_next_seq = 1i64;
    let mut previous_signature: Option<String> = None;
    let digest_list = digests(dir)?;
    // Log files without a digest were added or renamed by someone else.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.gz") && !digest_list.iter().any(|(_, d)| d.log_file == name) {
                problems.push(format!("{name}: no digest covers this file"));
            }
        }
    }
    for (digest_path, d) in &digest_list {
        let shown = d.log_file.clone();
        let signature_ok = hex::decode(&d.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .is_some_and(|sig| public_key.verify(d.signed_text().as_bytes(), &sig).is_ok());
        if !signature_ok {
            problems.push(format!(
                "{}: digest signature does not verify",
                digest_path.display()
            ));
        }
        if d.previous_digest_signature != previous_signature {
            problems.push(format!(
                "{shown}: digest chain broken (a digest before it was removed or reordered)"
            ));
        }
        previous_signature = Some(d.signature.clone());
        if d.first_seq != expected_next_seq {
            problems.push(format!(
                "{shown}: records {}..{} are missing before this file (removed file?)",
                expected_next_seq,
                d.first_seq - 1
            ));
        }
        expected_next_seq = d.last_seq + 1;
        let path = dir.join(&d.log_file);
        let Ok(bytes) = std::fs::read(&path) else {
            problems.push(format!("{shown}: log file is missing"));
            expected_prev_hash = d.last_hash.clone();
            continue;
        };
        if hex::encode(Sha256::digest(&bytes)) != d.log_file_sha256 {
            problems.push(format!(
                "{shown}: log file was altered (SHA-256 differs from its digest)"
            ));
        }
        let mut text = String::new();
        let records: Vec<serde_json::Value> =
            match flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text) {
                Ok(_) => serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("Records").and_then(|r| r.as_array()).cloned())
                    .unwrap_or_default(),
                Err(_) => {
                    problems.push(format!("{shown}: not a readable gzip file"));
                    Vec::new()
                }
            };
        if d.first_prev_hash != expected_prev_hash {
            problems.push(format!(
                "{shown}: does not continue the chain of the file before it"
            ));
        }
        let mut hash = d.first_prev_hash.clone();
        for record in &records {
            hash = chain_hash(&hash, &record.to_string());
        }
        if hash != d.last_hash || records.len() as i64 != d.last_seq - d.first_seq + 1 {
            problems.push(format!(
                "{shown}: records were altered, removed or reordered (hash chain broken)"
            ));
        }
        expected_prev_hash = d.last_hash.clone();
    }
    Ok(problems)
}

/// Read a public key written by [`signing_key`] (`audit-signing.pub`).
pub fn public_key(path: &Path) -> Result<VerifyingKey, AuditLogError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AuditLogError::BadKey(path.display().to_string()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| AuditLogError::BadKey(path.display().to_string()))
}
