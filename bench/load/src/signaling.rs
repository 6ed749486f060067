//! One synthetic attendee's signaling: the `/v1/signal` WebSocket of `docs/signaling.md`.
//!
//! [`join`] is the only place that knows how an attendee gets into a meeting. Signaling requires a join
//! token (docs/web-api.md); the generator signs its own with the server's join-token key (the benchmark
//! owns the server's data dir), which admits attendees to any meeting id without creating accounts,
//! users and meetings first: the media plane is what is measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use convene_core::{
    AttendeeId, AttendeeRole, ClientType, JoinClaims, JoinTokenIssuer, MediaSource, MeetingId,
};
use convene_media::signal::messages::{ClientMessage, PublishTrack, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::LoadError;
use crate::driver::{ConnId, DriverHandle, PublishPlan, TrackLayers};

pub type Socket = WebSocketStream<TcpStream>;

/// Counters of what went wrong in signaling, summed over all attendees.
#[derive(Debug, Default)]
pub struct SignalCounters {
    pub joined: AtomicU64,
    pub errors: AtomicU64,
    pub subscribe_offers: AtomicU64,
}

/// What an attendee does once in.
#[derive(Debug, Clone)]
pub struct Role {
    pub meeting: String,
    pub name: String,
    /// None: subscribe only.
    pub publish: Option<PublishPlan>,
}

async fn send(ws: &mut Socket, msg: &ClientMessage) -> Result<(), LoadError> {
    let text = serde_json::to_string(msg).map_err(|e| LoadError::Protocol(e.to_string()))?;
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// Reads the next server message; None when the socket closed.
async fn recv(ws: &mut Socket) -> Result<Option<ServerMessage>, LoadError> {
    while let Some(frame) = ws.next().await {
        match frame? {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str())
                    .map(Some)
                    .map_err(|e| LoadError::Protocol(format!("bad server message: {e}: {text}")));
            }
            Message::Close(_) => return Ok(None),
            _ => continue,
        }
    }
    Ok(None)
}

/// How long the tokens the generator signs are good for (they are used at once).
const TOKEN_LIFETIME_SECS: u64 = 300;

/// Opens the signaling socket and joins `meeting` with a token signed by `tokens`; returns the socket and
/// our attendee id.
pub async fn join(
    server: SocketAddr,
    meeting: &str,
    name: &str,
    tokens: &JoinTokenIssuer,
) -> Result<(Socket, String), LoadError> {
    let meeting_id: MeetingId = meeting
        .parse()
        .map_err(|e| LoadError::Protocol(format!("meeting id {meeting:?}: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = tokens.issue(&JoinClaims {
        meeting: meeting_id,
        attendee: AttendeeId::random(),
        name: name.to_owned(),
        role: AttendeeRole::Attendee,
        client: ClientType::Web,
        user: None,
        remote_control: false,
        expires_at: now + TOKEN_LIFETIME_SECS,
    });
    let tcp = TcpStream::connect(server).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{server}/v1/signal");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
    send(
        &mut ws,
        &ClientMessage::Join {
            meeting: meeting.to_owned(),
            token: Some(token),
            name: None,
            client: None,
        },
    )
    .await?;
    loop {
        match recv(&mut ws).await? {
            Some(ServerMessage::Joined { attendee_id, .. }) => {
                return Ok((ws, attendee_id.to_string()));
            }
            Some(ServerMessage::Error { code, message }) => {
                return Err(LoadError::Refused(format!("{code:?}: {message}")));
            }
            Some(_) => continue,
            None => return Err(LoadError::Protocol("socket closed before joined".into())),
        }
    }
}

/// Runs one attendee until `stop` flips: join, publish if asked, answer every subscribe offer, then leave.
pub async fn attendee(
    server: SocketAddr,
    role: Role,
    driver: DriverHandle,
    counters: Arc<SignalCounters>,
    tokens: Arc<JoinTokenIssuer>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), LoadError> {
    let (mut ws, _id) = join(server, &role.meeting, &role.name, &tokens).await?;
    counters.joined.fetch_add(1, Ordering::Relaxed);
    let mut conns: Vec<ConnId> = Vec::new();
    let mut publish_conn = None;
    if let Some(plan) = role.publish.clone() {
        let offer = driver.publish(plan).await?;
        publish_conn = Some(offer.conn);
        conns.push(offer.conn);
        let tracks = offer
            .tracks
            .iter()
            .map(|(mid, source)| PublishTrack {
                mid: mid.clone(),
                source: (*source).into(),
            })
            .collect();
        send(
            &mut ws,
            &ClientMessage::PublishOffer {
                sdp: offer.sdp,
                tracks,
            },
        )
        .await?;
    }
    let mut subscribe_conn: Option<ConnId> = None;
    let result = loop {
        let msg = tokio::select! {
            m = recv(&mut ws) => m,
            _ = stop.changed() => break Ok(()),
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break Err(LoadError::Protocol("server closed the socket".into())),
            Err(e) => break Err(e),
        };
        match msg {
            ServerMessage::PublishAnswer { sdp } => {
                let Some(conn) = publish_conn else {
                    break Err(LoadError::Protocol(
                        "publish_answer without an offer".into(),
                    ));
                };
                if let Err(e) = driver.publish_answer(conn, sdp).await {
                    break Err(e);
                }
            }
            ServerMessage::SubscribeOffer { sdp, tracks } => {
                counters.subscribe_offers.fetch_add(1, Ordering::Relaxed);
                let tracks = tracks
                    .into_iter()
                    .map(|t| (t.mid, t.source != MediaSource::Audio))
                    .collect();
                match driver.subscribe(subscribe_conn, sdp, tracks).await {
                    Ok((conn, answer)) => {
                        if subscribe_conn.is_none() {
                            conns.push(conn);
                        }
                        subscribe_conn = Some(conn);
                        if let Err(e) =
                            send(&mut ws, &ClientMessage::SubscribeAnswer { sdp: answer }).await
                        {
                            break Err(e);
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
            ServerMessage::PublishTargets { tracks } => {
                // What Convene's web app does with it: pause the simulcast layers nobody receives.
                if let (Some(conn), true) = (
                    publish_conn,
                    role.publish.as_ref().is_some_and(|p| p.follow_targets),
                ) {
                    let tracks = tracks
                        .into_iter()
                        .map(|t| TrackLayers {
                            mid: t.mid,
                            active_rids: t.active_rids,
                        })
                        .collect();
                    if let Err(e) = driver.publish_targets(conn, tracks) {
                        break Err(e);
                    }
                }
            }
            ServerMessage::Error { code, message } => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?code, %message, name = %role.name, "server error");
            }
            _ => {}
        }
    };
    // Leave politely whatever happened, so the server frees the attendee at once.
    let _ = send(&mut ws, &ClientMessage::Leave).await;
    let _ = ws.close(None).await;
    for c in conns {
        driver.close(c);
    }
    result
}
