//! The `/v1/signal` WebSocket: validate client messages, forward them to the meeting's shard, and relay
//! the shard's replies.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use convene_core::{AttendeeId, JoinTokenVerifier, MediaSource, MeetingId};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::messages::{ClientMessage, ErrorCode, ServerMessage};
use crate::plane::MediaPlane;
use crate::shard::Command;

/// Largest signaling message accepted (an SDP with many m-lines is a few tens of KiB); a larger one
/// closes the socket with code 1009.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The WebSocket library's own hard limit: far larger messages are cut off without a close frame,
/// before they are buffered whole.
const HARD_LIMIT_BYTES: usize = 4 * 1024 * 1024;

/// WebSocket close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
/// The lowest downlink cap a client may set: audio alone needs this much.
pub const MIN_DOWNLINK_CAP_KBPS: u32 = 64;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// `GET /v1/signal` upgrades to the signaling WebSocket. Joins need a join token that `tokens` accepts.
pub fn router(plane: Arc<MediaPlane>, tokens: JoinTokenVerifier) -> Router {
    Router::new()
        .route("/v1/signal", get(upgrade))
        .with_state((plane, Arc::new(tokens)))
}

type SignalState = (Arc<MediaPlane>, Arc<JoinTokenVerifier>);

async fn upgrade(ws: WebSocketUpgrade, State((plane, tokens)): State<SignalState>) -> Response {
    ws.max_message_size(HARD_LIMIT_BYTES)
        .max_frame_size(HARD_LIMIT_BYTES)
        .on_upgrade(move |socket| Session::new(plane, tokens).run(socket))
}

/// One signaling connection = one attendee.
struct Session {
    plane: Arc<MediaPlane>,
    tokens: Arc<JoinTokenVerifier>,
    joined: Option<Joined>,
}

struct Joined {
    attendee: AttendeeId,
    meeting: MeetingId,
    shard: usize,
}

/// What to do after a client message.
enum Next {
    Continue,
    Reply(ServerMessage),
    /// Reply, then close the socket as the server goes away.
    Close(ServerMessage),
}

impl Session {
    fn new(plane: Arc<MediaPlane>, tokens: Arc<JoinTokenVerifier>) -> Self {
        Self {
            plane,
            tokens,
            joined: None,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        self.plane.metrics().signal_connections.inc();
        let mut from_shard: Option<UnboundedReceiver<ServerMessage>> = None;
        let mut closing = self.plane.closing();
        let mut close = (CLOSE_NORMAL, "bye");
        if *closing.borrow() {
            let reply = ServerMessage::error(ErrorCode::Unavailable, "the server is shutting down");
            let _ = send(&mut socket, &reply).await;
            close = (CLOSE_GOING_AWAY, "server shutting down");
        }
        while close.0 == CLOSE_NORMAL {
            let outgoing = async {
                match from_shard.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                incoming = socket.recv() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) if text.len() > MAX_MESSAGE_BYTES => {
                            self.plane.metrics().signal_error();
                            close = (CLOSE_TOO_BIG, "message larger than 256 KiB");
                            break;
                        }
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            self.plane.metrics().signal_error();
                            let reply = ServerMessage::error(ErrorCode::BadMessage, "binary frames are not accepted; send JSON text");
                            if send(&mut socket, &reply).await.is_err() { break }
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "signaling connection error");
                            break;
                        }
                    };
                    match self.handle_text(&text, &mut from_shard) {
                        Next::Continue => {}
                        Next::Close(reply) => {
                            let _ = send(&mut socket, &reply).await;
                            close = (CLOSE_GOING_AWAY, "server shutting down");
                            break;
                        }
                        Next::Reply(reply) => {
                            if matches!(reply, ServerMessage::Error { .. }) {
                                self.plane.metrics().signal_error();
                            }
                            if send(&mut socket, &reply).await.is_err() { break }
                        }
                    }
                }
                // A connection that joined is closed by its shard (after `error: unavailable`); one
                // that did not is closed here, so shutdown never waits on an idle socket.
                Ok(()) = closing.changed(), if self.joined.is_none() => {
                    let reply = ServerMessage::error(ErrorCode::Unavailable, "the server is shutting down");
                    let _ = send(&mut socket, &reply).await;
                    close = (CLOSE_GOING_AWAY, "server shutting down");
                    break;
                }
                message = outgoing => {
                    match message {
                        Some(m) => {
                            if matches!(m, ServerMessage::Error { code: ErrorCode::Unavailable, .. }) {
                                close = (CLOSE_GOING_AWAY, "server shutting down");
                            }
                            if send(&mut socket, &m).await.is_err() { break }
                        }
                        // The shard dropped us: we left, timed out, or the server is stopping.
                        None => break,
                    }
                }
            }
        }
        if let Some(joined) = self.joined.take() {
            self.plane.send(
                joined.shard,
                Command::Leave {
                    attendee: joined.attendee,
                },
            );
            self.plane.release(&joined.meeting);
            self.plane.release_attendee(joined.attendee);
        }
        let frame = CloseFrame {
            code: close.0,
            reason: close.1.into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
        self.plane.metrics().signal_connections.dec();
    }

    fn handle_text(
        &mut self,
        text: &str,
        from_shard: &mut Option<UnboundedReceiver<ServerMessage>>,
    ) -> Next {
        let message = match parse(text) {
            Ok(m) => m,
            Err(reply) => return Next::Reply(reply),
        };
        let invalid = |msg: String| Next::Reply(ServerMessage::error(ErrorCode::InvalidField, msg));
        match (&self.joined, message) {
            (_, ClientMessage::Ping) => Next::Reply(ServerMessage::Pong),
            (Some(_), ClientMessage::Join { .. }) => Next::Reply(ServerMessage::error(
                ErrorCode::AlreadyJoined,
                "this connection already joined a meeting",
            )),
            (None, ClientMessage::Join { meeting, token, .. }) => {
                let meeting: MeetingId = match meeting.parse() {
                    Ok(m) => m,
                    Err(e) => return invalid(e.to_string()),
                };
                let unauthorized =
                    |msg: String| Next::Reply(ServerMessage::error(ErrorCode::Unauthorized, msg));
                let Some(token) = token else {
                    return unauthorized(
                        "join needs a token: ask for one with POST /v1/meetings/{id}/join".into(),
                    );
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let claims = match self.tokens.verify(&token, now) {
                    Ok(c) => c,
                    Err(e) => return unauthorized(e.to_string()),
                };
                if claims.meeting != meeting {
                    return unauthorized(format!(
                        "the join token is for meeting {}, not {meeting}",
                        claims.meeting
                    ));
                }
                // The issuer validated the name; checking again keeps a bad issuer from breaking clients.
                let name = match check_name(&claims.name) {
                    Ok(n) => n,
                    Err(e) => return invalid(e.to_owned()),
                };
                let (attendee, client, role, user, remote_control) = (
                    claims.attendee,
                    claims.client,
                    claims.role,
                    claims.user,
                    claims.remote_control,
                );
                if !self.plane.claim_attendee(attendee) {
                    return Next::Reply(ServerMessage::error(
                        ErrorCode::AlreadyJoined,
                        "this join token is in use by another connection; ask for a new one",
                    ));
                }
                let shard = self.plane.shard_for(&meeting);
                let (tx, rx) = unbounded_channel();
                let join = Command::Join {
                    attendee,
                    meeting: meeting.clone(),
                    name,
                    client,
                    role,
                    user,
                    may_grant_control: remote_control,
                    signal: tx,
                };
                if !self.plane.send(shard, join) {
                    self.plane.release(&meeting);
                    self.plane.release_attendee(attendee);
                    return Next::Close(ServerMessage::error(
                        ErrorCode::Unavailable,
                        "the server is shutting down",
                    ));
                }
                *from_shard = Some(rx);
                self.joined = Some(Joined {
                    attendee,
                    meeting,
                    shard,
                });
                Next::Continue
            }
            (None, _) => Next::Reply(ServerMessage::error(
                ErrorCode::NotJoined,
                "send join first",
            )),
            (Some(j), ClientMessage::PublishOffer { sdp, tracks }) => {
                self.plane.send(
                    j.shard,
                    Command::PublishOffer {
                        attendee: j.attendee,
                        sdp,
                        tracks,
                    },
                );
                Next::Continue
            }
            (Some(j), ClientMessage::SubscribeAnswer { sdp }) => {
                self.plane.send(
                    j.shard,
                    Command::SubscribeAnswer {
                        attendee: j.attendee,
                        sdp,
                    },
                );
                Next::Continue
            }
            (Some(j), ClientMessage::Mute { source, muted }) => match source.parse::<MediaSource>()
            {
                Ok(source @ (MediaSource::Audio | MediaSource::Camera)) => {
                    self.plane.send(
                        j.shard,
                        Command::Mute {
                            attendee: j.attendee,
                            source,
                            muted,
                        },
                    );
                    Next::Continue
                }
                _ => invalid(format!("mute takes source audio or camera, not {source:?}")),
            },
            (Some(j), ClientMessage::Recording { on }) => {
                // Whether this attendee may is the shard's call: it holds the role from the token.
                self.plane.send(
                    j.shard,
                    Command::Recording {
                        attendee: j.attendee,
                        on,
                    },
                );
                Next::Continue
            }
            (Some(j), ClientMessage::HdMode { on }) => {
                self.plane.send(
                    j.shard,
                    Command::HdMode {
                        attendee: j.attendee,
                        on,
                    },
                );
                Next::Continue
            }
            (Some(j), ClientMessage::DownlinkCap { kbps }) => {
                if kbps.is_some_and(|k| k < MIN_DOWNLINK_CAP_KBPS) {
                    return invalid(format!(
                        "downlink_cap takes at least {MIN_DOWNLINK_CAP_KBPS} kbps (or null)"
                    ));
                }
                self.plane.send(
                    j.shard,
                    Command::DownlinkCap {
                        attendee: j.attendee,
                        kbps,
                    },
                );
                Next::Continue
            }
            (Some(j), ClientMessage::RemoteControlRequest { attendee_id }) => {
                let command = Command::RemoteControlRequest {
                    attendee: j.attendee,
                    sharer: attendee_id,
                };
                self.plane.send(j.shard, command);
                Next::Continue
            }
            (
                Some(j),
                ClientMessage::RemoteControlAnswer {
                    attendee_id,
                    granted,
                },
            ) => {
                let command = Command::RemoteControlAnswer {
                    attendee: j.attendee,
                    controller: attendee_id,
                    granted,
                };
                self.plane.send(j.shard, command);
                Next::Continue
            }
            (Some(j), ClientMessage::RemoteControlStop) => {
                self.plane.send(
                    j.shard,
                    Command::RemoteControlStop {
                        attendee: j.attendee,
                    },
                );
                Next::Continue
            }
            (Some(j), ClientMessage::Leave) => {
                // The shard answers by dropping our channel, which ends the session.
                self.plane.send(
                    j.shard,
                    Command::Leave {
                        attendee: j.attendee,
                    },
                );
                Next::Continue
            }
        }
    }
}

/// Parse one client message, telling apart "not a message" from "a message type we do not know".
pub fn parse(text: &str) -> Result<ClientMessage, ServerMessage> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ServerMessage::error(ErrorCode::BadMessage, format!("not JSON: {e}")))?;
    let Some(kind) = value
        .as_object()
        .and_then(|o| o.get("type"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return Err(ServerMessage::error(
            ErrorCode::BadMessage,
            "a message is a JSON object with a string \"type\"",
        ));
    };
    if !ClientMessage::TYPES.contains(&kind.as_str()) {
        return Err(ServerMessage::error(
            ErrorCode::UnknownType,
            format!("unknown message type {kind:?}"),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ServerMessage::error(ErrorCode::BadMessage, format!("bad {kind}: {e}")))
}

/// A display name: trimmed, 1-64 characters, no control characters.
pub fn check_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("name is longer than 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters");
    }
    Ok(name.to_owned())
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    let text =
        serde_json::to_string(message).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"));
    socket.send(Message::Text(text.into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<ClientMessage, ServerMessage>) -> ErrorCode {
        match r {
            Err(ServerMessage::Error { code, .. }) => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parse_tells_errors_apart() {
        assert_eq!(code(parse("{nope")), ErrorCode::BadMessage);
        assert_eq!(code(parse("[1,2]")), ErrorCode::BadMessage);
        assert_eq!(code(parse("{\"type\":5}")), ErrorCode::BadMessage);
        assert_eq!(code(parse("{\"type\":\"dance\"}")), ErrorCode::UnknownType);
        assert_eq!(
            code(parse("{\"type\":\"join\",\"meeting\":1}")),
            ErrorCode::BadMessage
        );
        assert!(parse("{\"type\":\"ping\"}").is_ok());
        assert!(parse("{\"type\":\"recording\",\"on\":false}").is_ok());
        for bad in [
            "{\"type\":\"recording\"}",
            "{\"type\":\"recording\",\"on\":\"yes\"}",
            "{\"type\":\"recording\",\"on\":1}",
            "{\"type\":\"recording\",\"on\":null}",
        ] {
            assert_eq!(code(parse(bad)), ErrorCode::BadMessage, "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("  Ada  ").unwrap(), "Ada");
        assert!(check_name("   ").is_err());
        assert!(check_name(&"é".repeat(65)).is_err());
        assert!(check_name(&"é".repeat(64)).is_ok());
        assert!(check_name("bell\u{7}").is_err());
    }
}
