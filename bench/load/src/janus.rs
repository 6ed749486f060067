//! One synthetic attendee against Janus 1.1's VideoRoom plugin: the baseline of issue 8.
//!
//! Same media as against Convene (the driver does not know which server it talks to); only signaling
//! differs. Janus's API over its WebSocket transport (subprotocol `janus-protocol`): every request carries a
//! `transaction`; `create`/`attach`/synchronous plugin requests answer `success`, asynchronous ones answer
//! `ack` first and an `event` carrying the same transaction later. The sequence per attendee:
//!
//! 1. `create` a session. A publisher `attach`es a handle, `create`s the room (error 427 "already exists" is
//!    fine: the meeting's first publisher made it), `join`s as publisher and `publish`es with its offer; the
//!    answer comes in the event.
//! 2. An attendee that receives attaches a second handle, polls `listparticipants` until the meeting's
//!    other publishers are all publishing, then `join`s as subscriber with one stream entry per feed
//!    (simulcast substream as asked). Janus offers; the driver answers; `start` carries the answer.
//! 3. `keepalive` every [`KEEPALIVE`] until told to stop, then `destroy` the session.
//!
//! Janus is told the layer to forward (`substream`) because it allocates no bandwidth per subscriber
//! (it forwards what it is told, by default the highest layer): the benchmark pins it to the layer
//! Convene forwards in the same scenario.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::LoadError;
use crate::driver::{ConnId, DriverHandle};
use crate::signaling::{Role, SignalCounters};

type Socket = WebSocketStream<TcpStream>;

/// Janus drops a session after 60 s without a request (`session_timeout`).
const KEEPALIVE: Duration = Duration::from_secs(20);
/// How long a receiving attendee waits for the meeting's publishers to appear.
const PUBLISHERS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one request may take to be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// VideoRoom's "room already exists" error.
const ROOM_EXISTS: i64 = 427;
/// VideoRoom's "no such room" error (a subscriber that came before the first publisher).
const NO_SUCH_ROOM: i64 = 426;

/// Where a Janus attendee goes and what it asks Janus for.
#[derive(Debug, Clone)]
pub struct JanusRoom {
    /// The VideoRoom room number of this meeting.
    pub room: u64,
    /// Publishers the meeting has (a receiver waits for all of them, itself excepted).
    pub publishers: usize,
    /// Janus's simulcast substream to receive ([`substream`]); None: Janus's default.
    pub substream: Option<u8>,
}

/// Janus's `substream` for our camera layer `layer` (0 = lowest) of `layers`, None without simulcast.
///
/// Janus takes the first rid of the publisher's `a=simulcast` as its highest substream; the generator
/// lists its layers lowest first (q;h;f), so the order flips. Measured against Janus 1.1.2 with q/h/f at
/// 150/450/1200 kbps: substream 0 delivered 1.29 Mbit/s, 1 0.50, 2 0.19 (audio included).
pub fn substream(layer: u8, layers: usize) -> Option<u8> {
    let top = u8::try_from(layers.checked_sub(1)?).ok()?;
    (top > 0).then(|| top - layer.min(top))
}

/// A Janus session over one WebSocket.
struct Session {
    ws: Socket,
    id: u64,
    next_transaction: u64,
}

impl Session {
    async fn connect(server: &str) -> Result<Self, LoadError> {
        let mut request = server.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| LoadError::Protocol(format!("no host in {server}")))?;
        let tcp = TcpStream::connect(host).await?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
        let mut session = Self {
            ws,
            id: 0,
            next_transaction: 0,
        };
        let created = session.request(json!({"janus": "create"})).await?;
        session.id = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| LoadError::Protocol(format!("create answered {created}")))?;
        Ok(session)
    }

    async fn send(&mut self, mut msg: Value) -> Result<String, LoadError> {
        self.next_transaction += 1;
        let transaction = format!("t{}", self.next_transaction);
        msg["transaction"] = json!(transaction);
        if self.id != 0 {
            msg["session_id"] = json!(self.id);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(transaction)
    }

    /// Next JSON message; None when the socket closed.
    async fn recv(&mut self) -> Result<Option<Value>, LoadError> {
        while let Some(frame) = self.ws.next().await {
            match frame? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map(Some).map_err(|e| {
                        LoadError::Protocol(format!("bad Janus message: {e}: {text}"))
                    });
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Sends a request and returns the message that completes it: `success` for synchronous ones, the
    /// `event` for asynchronous ones (after their `ack`). Messages for other transactions are skipped.
    async fn request(&mut self, msg: Value) -> Result<Value, LoadError> {
        let transaction = self.send(msg).await?;
        let wait = async {
            loop {
                let Some(m) = self.recv().await? else {
                    return Err(LoadError::Protocol("Janus closed the socket".into()));
                };
                if m["transaction"].as_str() != Some(transaction.as_str()) {
                    continue;
                }
                match m["janus"].as_str() {
                    Some("ack") => continue,
                    Some("error") => {
                        return Err(LoadError::Refused(format!("Janus: {}", m["error"])));
                    }
                    _ => return Ok(m),
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, wait)
            .await
            .map_err(|_| LoadError::Protocol("Janus did not answer in time".into()))?
    }

    async fn attach(&mut self) -> Result<u64, LoadError> {
        let r = self
            .request(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        r["data"]["id"]
            .as_u64()
            .ok_or_else(|| LoadError::Protocol(format!("attach answered {r}")))
    }

    /// A VideoRoom request on `handle`; returns the plugin's data and the JSEP, if any.
    async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(Value, Option<Value>), LoadError> {
        let mut msg = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        let mut r = self.request(msg).await?;
        let data = r["plugindata"]["data"].take();
        let jsep = r.get_mut("jsep").map(Value::take);
        Ok((data, jsep))
    }

    /// Tells Janus our candidates are all in the SDP (no trickle). Janus only acks a trickle, so this does
    /// not wait for an answer.
    async fn candidates_done(&mut self, handle: u64) -> Result<(), LoadError> {
        self.send(json!({"janus": "trickle", "handle_id": handle,
                         "candidate": {"completed": true}}))
            .await
            .map(|_| ())
    }
}

/// A VideoRoom error in a plugin answer, as (code, text).
fn plugin_error(data: &Value) -> Option<(i64, String)> {
    let code = data["error_code"].as_i64()?;
    Some((code, data["error"].as_str().unwrap_or("").to_owned()))
}

fn sdp_of(jsep: Option<Value>, what: &str) -> Result<String, LoadError> {
    jsep.and_then(|j| j["sdp"].as_str().map(str::to_owned))
        .ok_or_else(|| LoadError::Protocol(format!("Janus sent no SDP with {what}")))
}

/// The (mid, is video) pairs of a subscription, from the `streams` of Janus's `attached` event.
pub fn subscribed_tracks(data: &Value) -> Vec<(String, bool)> {
    data["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter_map(|s| {
                    let mid = s["mid"].as_str()?.to_owned();
                    let kind = s["type"].as_str()?;
                    (kind == "audio" || kind == "video").then(|| (mid, kind == "video"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Feed ids of the room's publishers that are publishing, from a `listparticipants` answer.
pub fn publishing_feeds(data: &Value) -> Vec<u64> {
    data["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["publisher"].as_bool() == Some(true))
                .filter_map(|p| p["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Publishes through a new handle; returns the publish connection.
async fn publish(
    session: &mut Session,
    role: &Role,
    room: &JanusRoom,
    driver: &DriverHandle,
) -> Result<(ConnId, u64), LoadError> {
    let Some(plan) = role.publish.clone() else {
        return Err(LoadError::Protocol("publish without a plan".into()));
    };
    let handle = session.attach().await?;
    let (created, _) = session
        .message(
            handle,
            json!({"request": "create", "room": room.room, "publishers": room.publishers.max(1),
                   "videocodec": "vp8", "audiocodec": "opus", "bitrate": 0}),
            None,
        )
        .await?;
    if let Some((code, text)) = plugin_error(&created)
        && code != ROOM_EXISTS
    {
        return Err(LoadError::Refused(format!("create room: {code} {text}")));
    }
    let (joined, _) = session
        .message(
            handle,
            json!({"request": "join", "ptype": "publisher", "room": room.room,
                   "display": role.name}),
            None,
        )
        .await?;
    if let Some((code, text)) = plugin_error(&joined) {
        return Err(LoadError::Refused(format!(
            "join as publisher: {code} {text}"
        )));
    }
    let feed = joined["id"]
        .as_u64()
        .ok_or_else(|| LoadError::Protocol(format!("joined without an id: {joined}")))?;
    let offer = driver.publish(plan).await?;
    let (configured, jsep) = session
        .message(
            handle,
            json!({"request": "publish"}),
            Some(json!({"type": "offer", "sdp": offer.sdp})),
        )
        .await?;
    if let Some((code, text)) = plugin_error(&configured) {
        return Err(LoadError::Refused(format!("publish: {code} {text}")));
    }
    let answer = sdp_of(jsep, "the publish answer")?;
    tracing::debug!(offer = %offer.sdp, %answer, "Janus publish negotiation");
    driver.publish_answer(offer.conn, answer).await?;
    session.candidates_done(handle).await?;
    Ok((offer.conn, feed))
}

/// Subscribes to every other publisher of the room through a new handle; returns the connection.
async fn subscribe(
    session: &mut Session,
    room: &JanusRoom,
    own_feed: Option<u64>,
    driver: &DriverHandle,
    counters: &SignalCounters,
) -> Result<ConnId, LoadError> {
    let handle = session.attach().await?;
    let wanted = room.publishers - usize::from(own_feed.is_some());
    let deadline = tokio::time::Instant::now() + PUBLISHERS_TIMEOUT;
    let feeds = loop {
        let (data, _) = session
            .message(
                handle,
                json!({"request": "listparticipants", "room": room.room}),
                None,
            )
            .await?;
        let feeds: Vec<u64> = match plugin_error(&data) {
            Some((NO_SUCH_ROOM, _)) => Vec::new(),
            Some((code, text)) => {
                return Err(LoadError::Refused(format!(
                    "listparticipants: {code} {text}"
                )));
            }
            None => publishing_feeds(&data)
                .into_iter()
                .filter(|f| Some(*f) != own_feed)
                .collect(),
        };
        if feeds.len() >= wanted {
            break feeds;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(LoadError::Protocol(format!(
                "room {}: {} of {wanted} publishers after {PUBLISHERS_TIMEOUT:?}",
                room.room,
                feeds.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let streams: Vec<Value> = feeds
        .iter()
        .map(|&feed| match room.substream {
            Some(s) => json!({"feed": feed, "substream": s}),
            None => json!({"feed": feed}),
        })
        .collect();
    let (attached, jsep) = session
        .message(
            handle,
            json!({"request": "join", "ptype": "subscriber", "room": room.room,
                   "streams": streams}),
            None,
        )
        .await?;
    if let Some((code, text)) = plugin_error(&attached) {
        return Err(LoadError::Refused(format!(
            "join as subscriber: {code} {text}"
        )));
    }
    counters.subscribe_offers.fetch_add(1, Ordering::Relaxed);
    let offer = sdp_of(jsep, "the subscription")?;
    tracing::debug!(%offer, streams = %attached["streams"], "Janus subscribe offer");
    let (conn, answer) = driver
        .subscribe(None, offer, subscribed_tracks(&attached))
        .await?;
    let (started, _) = session
        .message(
            handle,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
    if let Some((code, text)) = plugin_error(&started) {
        return Err(LoadError::Refused(format!("start: {code} {text}")));
    }
    session.candidates_done(handle).await?;
    Ok(conn)
}

/// Runs one attendee against Janus until `stop` flips, like [`crate::signaling::attendee`] does against
/// Convene.
pub async fn attendee(
    server: String,
    role: Role,
    room: JanusRoom,
    driver: DriverHandle,
    counters: Arc<SignalCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), LoadError> {
    let mut session = Session::connect(&server).await?;
    let mut conns = Vec::new();
    let result = async {
        let own_feed = if role.publish.is_some() {
            let (conn, feed) = publish(&mut session, &role, &room, &driver).await?;
            conns.push(conn);
            Some(feed)
        } else {
            None
        };
        counters.joined.fetch_add(1, Ordering::Relaxed);
        let receives = room.publishers > usize::from(own_feed.is_some());
        if receives {
            conns.push(subscribe(&mut session, &room, own_feed, &driver, &counters).await?);
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                _ = keepalive.tick() => {
                    session.send(json!({"janus": "keepalive"})).await?;
                }
                m = session.recv() => match m? {
                    None => return Err(LoadError::Protocol("Janus closed the socket".into())),
                    Some(m) if m["janus"] == "hangup" => {
                        return Err(LoadError::Protocol(format!("Janus hung up: {}", m["reason"])));
                    }
                    Some(_) => {}
                },
            }
        }
    }
    .await;
    if result.is_err() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    // Leave whatever happened, so Janus frees the handles at once.
    let _ = session.send(json!({"janus": "destroy"})).await;
    let _ = session.ws.close(None).await;
    for c in conns {
        driver.close(c);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_come_from_the_attached_streams() {
        let data = json!({"videoroom": "attached", "streams": [
            {"type": "audio", "mid": "0", "feed_id": 1},
            {"type": "video", "mid": "1", "feed_id": 1},
            {"type": "data", "mid": "2"},
            {"type": "video"}
        ]});
        assert_eq!(
            subscribed_tracks(&data),
            vec![("0".to_owned(), false), ("1".to_owned(), true)]
        );
        assert!(subscribed_tracks(&json!({})).is_empty());
    }

    #[test]
    fn only_publishing_participants_are_feeds() {
        let data = json!({"participants": [
            {"id": 7, "publisher": true},
            {"id": 8, "publisher": false},
            {"id": 9, "publisher": true},
            {"publisher": true}
        ]});
        assert_eq!(publishing_feeds(&data), vec![7, 9]);
    }

    #[test]
    fn janus_counts_substreams_from_the_first_rid_down() {
        assert_eq!(substream(0, 3), Some(2));
        assert_eq!(substream(2, 3), Some(0));
        assert_eq!(substream(1, 2), Some(0));
        assert_eq!(substream(5, 3), Some(0));
        assert_eq!(substream(0, 1), None);
        assert_eq!(substream(0, 0), None);
    }

    #[test]
    fn plugin_errors_are_read() {
        assert_eq!(
            plugin_error(&json!({"error_code": 427, "error": "Room 1 already exists"})),
            Some((427, "Room 1 already exists".to_owned()))
        );
        assert_eq!(plugin_error(&json!({"videoroom": "joined"})), None);
    }
}
