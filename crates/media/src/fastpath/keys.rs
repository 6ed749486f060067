//! The SRTP keying material str0m negotiates, captured per connection.
//!
//! **Why.** The fast path protects forwarded RTP itself, so it needs the SRTP master keys of each
//! subscriber connection. str0m derives them from its DTLS handshake and keeps them private (in its
//! `Session`); there is no accessor, and forking str0m for one is not worth it. What str0m does expose is
//! its crypto: an `Rtc` takes a [`CryptoProvider`] (`RtcConfig::set_crypto_provider`), whose
//! `dtls_provider` creates the DTLS instance that hands str0m the exported keying material
//! (`DtlsOutput::KeyingMaterial`). [`capturing_provider`] is the default provider with that one piece
//! wrapped: every call passes through unchanged, and the keying material, its profile and our DTLS role
//! are also copied into the connection's [`KeySlot`].
//!
//! **How an instance finds its connection.** `DtlsProvider::new_dtls` gets a certificate, a time, a
//! version and an MTU: nothing that names the peer. But str0m 0.25 calls it exactly once per `Rtc`,
//! synchronously inside `RtcConfig::build` (`Rtc::new_from_config` -> `Dtls::new` -> `new_dtls`), and
//! never again for that `Rtc`. So [`build_rtc`] puts a fresh slot in a thread-local, builds, and clears
//! the thread-local; `new_dtls`, running on the same thread in between, takes the slot. This costs
//! nothing per packet: the thread-local is touched once per connection, and the slot (an
//! `Arc<Mutex<..>>`) is written once, when the handshake completes.
//!
//! **What this relies on in str0m** (checked by `tests/fastpath_keys.rs`, which fails if it breaks):
//! `new_dtls` is called inside `build` on the calling thread, once; the keying material reaches str0m
//! only through `DtlsInstance::poll_output`; and it is the RFC 5764 exporter output, split by the DTLS
//! role that `DtlsInstance::is_active` reports. If str0m ever created the instance lazily, [`build_rtc`]
//! would see its slot unclaimed and say so in the log, and the connection's slot would stay empty (the
//! connection would simply stay on str0m's path).
//!
//! Per-packet cost: str0m polls its DTLS instance on every `Rtc::poll_output`, so the wrapper adds one
//! indirect call and one match per poll, nothing else. SRTP itself never touches DTLS.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use str0m::crypto::CryptoError;
use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::{Rtc, RtcConfig};

use super::kdf::{KdfError, SrtpKeys};
use super::srtp::Profile;

/// What a connection's DTLS handshake exported for SRTP: copied once, when the handshake completes.
#[derive(Clone, PartialEq, Eq)]
pub struct DtlsKeys {
    /// The SRTP protection profile the handshake chose.
    pub profile: SrtpProfile,
    /// The RFC 5764 §4.2 exporter output (both directions' master keys and salts).
    pub material: Vec<u8>,
    /// Whether our side was the DTLS client ("active"); it decides which halves are ours.
    pub dtls_client: bool,
}

impl std::fmt::Debug for DtlsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("DtlsKeys")
            .field("profile", &self.profile)
            .field("dtls_client", &self.dtls_client)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("SRTP profile {0:?} has no fast-path transform")]
    Unsupported(SrtpProfile),
    #[error(transparent)]
    Kdf(#[from] KdfError),
}

impl DtlsKeys {
    /// The session keys of both directions, from our side ([`SrtpKeys::local`] is what we send with).
    pub fn srtp_keys(&self) -> Result<SrtpKeys, KeysError> {
        let profile = match self.profile {
            SrtpProfile::AEAD_AES_128_GCM => Profile::AeadAes128Gcm,
            SrtpProfile::AEAD_AES_256_GCM => Profile::AeadAes256Gcm,
            other => return Err(KeysError::Unsupported(other)),
        };
        Ok(SrtpKeys::derive(profile, &self.material, self.dtls_client)?)
    }
}

/// Where one connection's [`DtlsKeys`] land. Cloning shares the slot.
#[derive(Debug, Clone, Default)]
pub struct KeySlot(Arc<Mutex<Option<DtlsKeys>>>);

impl KeySlot {
    /// Has the handshake completed (and its keys landed here)?
    pub fn is_filled(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The keys, once the handshake has completed.
    pub fn get(&self) -> Option<DtlsKeys> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, keys: DtlsKeys) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(keys);
    }
}

thread_local! {
    /// The slot of the `Rtc` this thread is building (see the module doc), between [`build_rtc`]'s
    /// start and the `new_dtls` call inside it.
    static BUILDING: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// Clears the thread-local even if `build` panics, so a later `Rtc` never inherits a stale slot.
struct Building;

impl Drop for Building {
    fn drop(&mut self) {
        BUILDING.with(|b| b.borrow_mut().take());
    }
}

/// Builds an `Rtc` from `config` with the capturing provider, and returns the slot its DTLS keys will
/// land in. Replaces any crypto provider set on `config`.
pub fn build_rtc(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    let slot = KeySlot::default();
    let config = config.set_crypto_provider(capturing_provider());
    BUILDING.with(|b| *b.borrow_mut() = Some(slot.clone()));
    let guard = Building;
    let rtc = config.build(now);
    let unclaimed = BUILDING.with(|b| b.borrow_mut().take()).is_some();
    drop(guard);
    if unclaimed {
        tracing::warn!(
            "str0m built an Rtc without creating its DTLS instance; the fast path will have no keys \
             for it (has str0m changed when it calls DtlsProvider::new_dtls?)"
        );
    }
    (rtc, slot)
}

/// The crypto provider str0m would use by default, with DTLS wrapped to capture keys. One per process;
/// `Rtc`s built with it outside [`build_rtc`] behave exactly as with the default.
///
/// "Default" as str0m picks it when a config names none: a process-wide default if one was installed
/// (Convene installs none), else the one its feature flags select (aws-lc-rs, dimpl DTLS). It is read
/// once, at first use.
pub fn capturing_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: OnceLock<CapturingDtls> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(str0m::crypto::from_feature_flags);
            // A static, not a leak: `dtls_provider` needs a `&'static dyn DtlsProvider`.
            let dtls: &'static CapturingDtls = DTLS.get_or_init(|| CapturingDtls {
                inner: provider.dtls_provider,
            });
            provider.dtls_provider = dtls;
            Arc::new(provider)
        })
        .clone()
}

/// The wrapping DTLS provider: creates the inner provider's instances and wraps each.
#[derive(Debug)]
struct CapturingDtls {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for CapturingDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let slot = BUILDING.with(|b| b.borrow_mut().take());
        Ok(Box::new(CapturingInstance { inner, slot }))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

/// One connection's DTLS: the inner instance, plus where its keys go.
#[derive(Debug)]
struct CapturingInstance {
    inner: Box<dyn DtlsInstance>,
    /// `None` for an `Rtc` built outside [`build_rtc`]: then this only passes through.
    slot: Option<KeySlot>,
}

impl DtlsInstance for CapturingInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.inner.poll_output(buf);
        if let (DtlsOutput::KeyingMaterial(material, profile), Some(slot)) = (&output, &self.slot) {
            slot.set(DtlsKeys {
                profile: *profile,
                material: material.to_vec(),
                // The role is settled by now: str0m calls `set_active` before the handshake starts.
                dtls_client: self.inner.is_active(),
            });
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
