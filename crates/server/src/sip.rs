//! Wiring of the SIP gateway: its door into meetings is the admin plane's one admission rule
//! (`convene_admin::portal::admission`), the same the web join endpoint applies, with the caller's
//! SIP display name as the attendee name and client type `sip`, and the same per-address limit on
//! wrong meeting IDs (the portal's guess limiter: web and SIP guesses count together).

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use convene_admin::portal::PortalState;
use convene_admin::portal::admission::{self, AdmitError, Refusal};
use convene_core::port::AttendeePort;
use convene_core::{AttendeeId, ClientType, JoinClaims, MeetingId};
use convene_gateway::GatewayMetrics;
use convene_gateway::door::{CallMedia, DoorFuture, JoinGrant, MeetingDoor, Refused};
use convene_gateway::net::{SipConfig, SipServer, TlsListen};
use convene_gateway::tls::{self, CertSource};
use convene_media::plane::{MediaPlane, PortJoin};

use crate::config::SipSettings;

/// Admission for SIP callers, through the admin plane's rule and the portal's guess limiter; and
/// their presence in the meeting, through the media plane.
pub struct AdmissionDoor {
    pub portal: Arc<PortalState>,
    pub plane: Arc<MediaPlane>,
}

impl AdmissionDoor {
    fn now_ms(now: time::OffsetDateTime) -> u64 {
        (now.unix_timestamp_nanos() / 1_000_000).max(0) as u64
    }
}

/// Name used when a caller's From has neither a usable display name nor user part.
const FALLBACK_NAME: &str = "Room system";

/// A SIP caller in the media plane: an attendee of client type `sip` whose media crosses an attendee
/// port (no WebRTC connections): its microphone (and camera, with H.264), and the meeting's voices (and
/// cameras, of which the gateway shows the speaker's).
fn arrive(plane: &MediaPlane, grant: &JoinGrant, media: &CallMedia) -> Option<AttendeePort> {
    plane.open_port(PortJoin {
        meeting: grant.meeting.clone(),
        attendee: grant.attendee,
        name: grant.name.clone(),
        client: ClientType::Sip,
        publishes: media.publishes.clone(),
        takes_video: media.takes_video,
        downlink_kbps: media.downlink_kbps,
    })
}

impl MeetingDoor for AdmissionDoor {
    fn arrived(&self, grant: &JoinGrant, media: &CallMedia) -> Option<AttendeePort> {
        arrive(&self.plane, grant, media)
    }

    fn departed(&self, grant: &JoinGrant) {
        self.plane.close_port(&grant.meeting, grant.attendee);
    }

    fn admit<'a>(&'a self, meeting_id: &'a str, caller: &'a str, source: IpAddr) -> DoorFuture<'a> {
        Box::pin(async move {
            let portal = &self.portal;
            let now = (portal.now)();
            let locked_out = portal
                .guesses
                .lock()
                .map_err(|_| Refused::Unavailable)?
                .check(source, Self::now_ms(now));
            if let Some(wait) = locked_out {
                return Err(Refused::TooManyGuesses(wait));
            }
            // SIP callers are guests (no signed-in user), exactly like a web guest with a name.
            let admission = match admission::admit(&portal.store, meeting_id, None, now).await {
                Ok(a) => a,
                Err(AdmitError::Refused(Refusal::UnknownMeeting)) => {
                    if let Ok(mut guesses) = portal.guesses.lock() {
                        guesses.failed(source, Self::now_ms(now));
                    }
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
                // The same rule as a web guest's: no account whose policy could forbid it.
                remote_control: admission.remote_control,
                expires_at: expires_at.unix_timestamp().max(0) as u64,
            };
            Ok(JoinGrant {
                token: portal.tokens.issue(&claims),
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
    events: tokio::sync::broadcast::Receiver<convene_core::MeetingEvent>,
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
        status_file: Some(data_dir.join(crate::gateway_cli::STATUS_FILE)),
        core: convene_gateway::Config::default(),
    };
    match SipServer::start(config, door, metrics, Some(events)).await {
        Ok(server) => Ok(Some(server)),
        Err(e) if !explicit => {
            let cause = std::error::Error::source(&e)
                .map(|c| c.to_string())
                .unwrap_or_default();
            tracing::warn!(error = %e, %cause, "SIP gateway not started (its default address is taken)");
            Ok(None)
        }
        Err(e) => Err(e).context("starting the SIP gateway"),
    }
}
