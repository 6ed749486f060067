//! Wiring of the SIP gateway: its door into meetings is the admin plane's one admission rule
//! (`convene_admin::portal::admission`), the same the web join endpoint applies, with the caller's
//! SIP display name as the attendee name and client type `sip`.

use std::sync::Arc;

use anyhow::Context;
use convene_admin::portal::admission::{self, AdmitError, Refusal};
use convene_admin::store::Store;
use convene_core::{AttendeeId, ClientType, JoinClaims, JoinTokenIssuer, MeetingId};
use convene_gateway::GatewayMetrics;
use convene_gateway::door::{DoorFuture, JoinGrant, MeetingDoor, Refused};
use convene_gateway::net::{SipConfig, SipServer, TlsListen};
use convene_gateway::tls::{self, CertSource};

use crate::config::SipSettings;

/// Admission for SIP callers, through the admin plane's rule.
pub struct AdmissionDoor {
    pub store: Store,
    pub tokens: JoinTokenIssuer,
}

/// Name used when a caller's From has neither a usable display name nor user part.
const FALLBACK_NAME: &str = "Room system";

impl MeetingDoor for AdmissionDoor {
    fn admit<'a>(&'a self, meeting_id: &'a str, caller: &'a str) -> DoorFuture<'a> {
        Box::pin(async move {
            let now = time::OffsetDateTime::now_utc();
            // SIP callers are guests (no signed-in user), exactly like a web guest with a name.
            let admission = match admission::admit(&self.store, meeting_id, None, now).await {
                Ok(a) => a,
                Err(AdmitError::Refused(Refusal::UnknownMeeting)) => {
                    return Err(Refused::UnknownMeeting);
                }
                Err(AdmitError::Refused(r)) => return Err(Refused::NotAllowed(r.to_string())),
                Err(AdmitError::Store(e)) => {
                    tracing::error!(error = %e, "SIP admission: storage failed");
                    return Err(Refused::Unavailable);
                }
            };
            let meeting: MeetingId = admission
                .meeting
                .id
                .parse()
                .map_err(|_| Refused::UnknownMeeting)?;
            let name = convene_admin::portal::check_display_name(caller)
                .unwrap_or_else(|_| FALLBACK_NAME.to_owned());
            let expires_at = now + convene_admin::portal::JOIN_TOKEN_LIFETIME;
            let claims = JoinClaims {
                meeting: meeting.clone(),
                attendee: AttendeeId::random(),
                name,
                role: admission.role,
                client: ClientType::Sip,
                user: None,
                expires_at: expires_at.unix_timestamp().max(0) as u64,
            };
            Ok(JoinGrant {
                token: self.tokens.issue(&claims),
                meeting,
                attendee: claims.attendee,
                name: claims.name,
            })
        })
    }
}

/// Start the gateway (UDP, TCP and TLS). A default address that cannot be bound is logged and
/// skipped (several servers on one host); an address the operator chose must bind.
pub async fn start(
    settings: &SipSettings,
    data_dir: &std::path::Path,
    door: Arc<dyn MeetingDoor>,
    metrics: GatewayMetrics,
) -> anyhow::Result<Option<SipServer>> {
    let explicit = settings.listen_explicit || settings.tls_explicit;
    let source = match &settings.tls_cert {
        Some((cert, key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        None => CertSource::SelfSigned {
            dir: data_dir.join("sip-tls"),
            names: tls::default_names(settings.public_ip),
        },
    };
    let tls_config = tls::server_config(&source).context("the SIP TLS certificate")?;
    let config = SipConfig {
        listen: settings.listen,
        rtp_ports: (settings.rtp_ports.lo, settings.rtp_ports.hi),
        rtp_bind: settings.listen.ip(),
        public_ip: Some(settings.public_ip),
        tls: Some(TlsListen {
            addr: settings.tls,
            config: tls_config,
        }),
        core: convene_gateway::Config::default(),
    };
    match SipServer::start(config, door, metrics).await {
        Ok(server) => Ok(Some(server)),
        Err(e) if !explicit => {
            tracing::warn!(error = %e, "SIP gateway not started (its default address is taken)");
            Ok(None)
        }
        Err(e) => Err(e).context("starting the SIP gateway"),
    }
}
