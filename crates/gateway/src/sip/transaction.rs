//! RFC 3261 §17 transactions, sans-IO: the server INVITE and non-INVITE transactions for what callers
//! send, and the client non-INVITE transaction for the BYE we send.
//!
//! The layer takes `now` and messages, and gives back bytes to send and what the transaction user
//! (the call core) must act on. Time only moves when the caller says so, so tests run the timers
//! (G, H, I, J, E, F, K and the 2xx retransmission of §13.3.1.4, kept in the transaction as RFC 6026
//! does) through minutes of simulated time in microseconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rsipstack::sip::Method;

use super::transport::Peer;

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Identifies a server transaction: the top Via branch and the method, with ACK matching the INVITE
/// it acknowledges (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub branch: String,
    pub method: Method,
}

impl Key {
    pub fn new(branch: &str, method: Method) -> Self {
        let method = if method == Method::Ack {
            Method::Invite
        } else {
            method
        };
        Self {
            branch: branch.to_owned(),
            method,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No final response yet.
    Proceeding,
    /// INVITE answered 2xx: retransmit until the ACK (RFC 6026 "Accepted").
    Accepted,
    /// Final non-2xx (INVITE: retransmit until ACK) or any final (non-INVITE: absorb retransmissions).
    Completed,
    /// INVITE: the ACK for a non-2xx came; absorb ACK retransmissions for a while.
    Confirmed,
}

struct ServerTx {
    invite: bool,
    state: State,
    peer: Peer,
    call_id: String,
    cseq: u32,
    last: Option<Vec<u8>>,
    /// Next retransmission of `last` and the interval after it.
    resend: Option<(Instant, Duration)>,
    /// When the transaction ends (timer H, I, J, L) or gives up waiting.
    end: Option<Instant>,
}

/// What an incoming request is to the transaction layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A new transaction: the transaction user must answer it.
    New,
    /// A retransmission, absorbed; send the last response again if there is one.
    Retransmission(Option<Vec<u8>>),
    /// The ACK for a 2xx we sent (a new transaction by RFC 3261, but it ends our retransmissions).
    AckFor2xx,
    /// An ACK that matches nothing alive (late, or for a dialog we forgot): ignored.
    StrayAck,
    /// The ACK of a non-2xx final response, absorbed by its INVITE transaction.
    AckAbsorbed,
}

/// What the transaction layer tells its user and its transport.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Transmit {
        peer: Peer,
        bytes: Vec<u8>,
    },
    /// A 2xx to an INVITE was never acknowledged (64*T1): the call must end with a BYE (§13.3.1.4).
    AckTimeout {
        call_id: String,
    },
    /// Our request got its final response.
    ClientResponse {
        call_id: String,
        method: Method,
        status: u16,
    },
    /// Our request got no final response in 64*T1 (timer F).
    ClientTimeout {
        call_id: String,
        method: Method,
    },
}

struct ClientTx {
    method: Method,
    call_id: String,
    peer: Peer,
    bytes: Vec<u8>,
    done: bool,
    resend: Option<(Instant, Duration)>,
    end: Instant,
}

/// All transactions of one gateway.
pub struct Transactions {
    timers: Timers,
    servers: HashMap<Key, ServerTx>,
    clients: HashMap<String, ClientTx>,
}

impl Transactions {
    pub fn new(timers: Timers) -> Self {
        Self {
            timers,
            servers: HashMap::new(),
            clients: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// Whether a client transaction still waits for its final response.
    pub fn awaiting_answers(&self) -> bool {
        self.clients.values().any(|tx| !tx.done)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Match an incoming request against the live transactions, creating one if it is new.
    pub fn on_request(
        &mut self,
        now: Instant,
        key: &Key,
        method: Method,
        call_id: &str,
        cseq: u32,
        peer: Peer,
    ) -> Incoming {
        if method == Method::Ack {
            if let Some(tx) = self.servers.get_mut(key) {
                if tx.invite && tx.state == State::Completed {
                    tx.state = State::Confirmed;
                    tx.resend = None;
                    // Timer I: absorb ACK retransmissions on unreliable transports.
                    let wait = if peer.transport.reliable() {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    };
                    tx.end = Some(now + wait);
                    return Incoming::AckAbsorbed;
                }
                if tx.state == State::Confirmed {
                    return Incoming::AckAbsorbed;
                }
            }
            // The ACK of a 2xx carries a new branch: match it by dialog and CSeq instead.
            let accepted = self.servers.iter_mut().find(|(_, tx)| {
                tx.invite && tx.state == State::Accepted && tx.call_id == call_id && tx.cseq == cseq
            });
            return match accepted {
                Some((_, tx)) => {
                    tx.resend = None;
                    // Stay a little to absorb the INVITE's own retransmissions (timer L).
                    tx.end = Some(now + 64 * self.timers.t1);
                    tx.state = State::Confirmed;
                    Incoming::AckFor2xx
                }
                None => Incoming::StrayAck,
            };
        }
        if let Some(tx) = self.servers.get(key) {
            return Incoming::Retransmission(tx.last.clone());
        }
        self.servers.insert(
            key.clone(),
            ServerTx {
                invite: method == Method::Invite,
                state: State::Proceeding,
                peer,
                call_id: call_id.to_owned(),
                cseq,
                last: None,
                resend: None,
                end: None,
            },
        );
        Incoming::New
    }

    /// Whether a server transaction is alive and still without a final response (CANCEL needs it).
    pub fn is_proceeding(&self, key: &Key) -> bool {
        self.servers
            .get(key)
            .is_some_and(|tx| tx.state == State::Proceeding)
    }

    /// Send a response in a server transaction. Returns what to transmit now (nothing if the
    /// transaction is gone or already final).
    pub fn respond(
        &mut self,
        now: Instant,
        key: &Key,
        status: u16,
        bytes: Vec<u8>,
    ) -> Option<Output> {
        let t = self.timers;
        let tx = self.servers.get_mut(key)?;
        if tx.state != State::Proceeding {
            return None;
        }
        let peer = tx.peer;
        tx.last = Some(bytes.clone());
        let reliable = peer.transport.reliable();
        if status >= 200 {
            if tx.invite && status < 300 {
                // The 2xx is retransmitted on every transport: end to end, the ACK may still be lost
                // behind a proxy (RFC 3261 §13.3.1.4).
                tx.state = State::Accepted;
                tx.resend = Some((now + t.t1, (2 * t.t1).min(t.t2)));
                tx.end = Some(now + 64 * t.t1);
            } else if tx.invite {
                tx.state = State::Completed;
                tx.resend = (!reliable).then(|| (now + t.t1, (2 * t.t1).min(t.t2)));
                tx.end = Some(now + 64 * t.t1); // timer H
            } else {
                tx.state = State::Completed;
                tx.resend = None;
                // Timer J: absorb request retransmissions on unreliable transports.
                tx.end = Some(now + if reliable { Duration::ZERO } else { 64 * t.t1 });
            }
        }
        Some(Output::Transmit { peer, bytes })
    }

    /// Start a client non-INVITE transaction (our BYE). `branch` must be the one in its Via.
    pub fn send(
        &mut self,
        now: Instant,
        branch: &str,
        method: Method,
        call_id: &str,
        peer: Peer,
        bytes: Vec<u8>,
    ) -> Output {
        let t = self.timers;
        self.clients.insert(
            branch.to_owned(),
            ClientTx {
                method,
                call_id: call_id.to_owned(),
                peer,
                bytes: bytes.clone(),
                done: false,
                resend: (!peer.transport.reliable()).then(|| (now + t.t1, (2 * t.t1).min(t.t2))),
                end: now + 64 * t.t1, // timer F
            },
        );
        Output::Transmit { peer, bytes }
    }

    /// A response to one of our requests.
    pub fn on_response(
        &mut self,
        now: Instant,
        branch: &str,
        method: Method,
        status: u16,
    ) -> Option<Output> {
        let t4 = self.timers.t4;
        let tx = self.clients.get_mut(branch)?;
        if tx.method != method || tx.done {
            return None;
        }
        if status < 200 {
            // In Proceeding, retransmit every T2 (§17.1.2.2).
            let t2 = self.timers.t2;
            tx.resend = tx.resend.map(|(at, _)| (at, t2));
            return None;
        }
        tx.done = true;
        tx.resend = None;
        // Timer K: absorb response retransmissions.
        tx.end = now
            + if tx.peer.transport.reliable() {
                Duration::ZERO
            } else {
                t4
            };
        Some(Output::ClientResponse {
            call_id: tx.call_id.clone(),
            method,
            status,
        })
    }

    /// The earliest moment [`Transactions::on_timeout`] has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        let servers = self
            .servers
            .values()
            .flat_map(|tx| [tx.resend.map(|(at, _)| at), tx.end].into_iter().flatten());
        let clients = self.clients.values().flat_map(|tx| {
            [tx.resend.map(|(at, _)| at), Some(tx.end)]
                .into_iter()
                .flatten()
        });
        servers.chain(clients).min()
    }

    /// Run every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let t2 = self.timers.t2;
        let mut ended = Vec::new();
        for (key, tx) in &mut self.servers {
            if tx.end.is_some_and(|end| end <= now) {
                if tx.state == State::Accepted {
                    out.push(Output::AckTimeout {
                        call_id: tx.call_id.clone(),
                    });
                }
                ended.push(key.clone());
                continue;
            }
            if let (Some((at, interval)), Some(bytes)) = (tx.resend, &tx.last)
                && at <= now
            {
                out.push(Output::Transmit {
                    peer: tx.peer,
                    bytes: bytes.clone(),
                });
                tx.resend = Some((now + interval, (2 * interval).min(t2)));
            }
        }
        for key in ended {
            self.servers.remove(&key);
        }
        let mut ended = Vec::new();
        for (branch, tx) in &mut self.clients {
            if tx.end <= now {
                if !tx.done {
                    out.push(Output::ClientTimeout {
                        call_id: tx.call_id.clone(),
                        method: tx.method,
                    });
                }
                ended.push(branch.clone());
                continue;
            }
            if let Some((at, interval)) = tx.resend
                && at <= now
            {
                out.push(Output::Transmit {
                    peer: tx.peer,
                    bytes: tx.bytes.clone(),
                });
                tx.resend = Some((now + interval, (2 * interval).min(t2)));
            }
        }
        for branch in ended {
            self.clients.remove(&branch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transport::Transport;

    fn peer(transport: Transport) -> Peer {
        Peer {
            transport,
            addr: ([127, 0, 0, 1], 5090).into(),
            conn: (transport != Transport::Udp).then_some(1),
        }
    }

    /// Run timers until `until`, returning the offsets (ms from `start`) of each retransmission and
    /// the other outputs.
    fn run(tx: &mut Transactions, start: Instant, until: Duration) -> (Vec<u128>, Vec<Output>) {
        let (mut sends, mut other) = (Vec::new(), Vec::new());
        while let Some(t) = tx.next_timeout() {
            if t > start + until {
                break;
            }
            let mut out = Vec::new();
            tx.on_timeout(t, &mut out);
            for o in out {
                match o {
                    Output::Transmit { .. } => sends.push((t - start).as_millis()),
                    o => other.push(o),
                }
            }
        }
        (sends, other)
    }

    #[test]
    fn invite_non_2xx_follows_timers_g_and_h() {
        let mut tx = Transactions::new(Timers::default());
        let t0 = Instant::now();
        let key = Key::new("z9hG4bK1", Method::Invite);
        let p = peer(Transport::Udp);
        assert_eq!(
            tx.on_request(t0, &key, Method::Invite, "c", 1, p),
            Incoming::New
        );
        assert!(tx.respond(t0, &key, 486, b"486".to_vec()).is_some());
        let (sends, other) = run(&mut tx, t0, Duration::from_secs(60));
        // G: 0.5, 1, 2, 4, 4, 4 ... s apart, until H at 32 s.
        assert_eq!(
            sends,
            vec![
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert!(other.is_empty());
        assert!(tx.is_empty(), "timer H ended it");
    }

    #[test]
    fn the_ack_stops_retransmissions_and_timer_i_absorbs_its_copies() {
        let mut tx = Transactions::new(Timers::default());
        let t0 = Instant::now();
        let key = Key::new("z9hG4bK2", Method::Invite);
        let p = peer(Transport::Udp);
        tx.on_request(t0, &key, Method::Invite, "c", 1, p);
        tx.respond(t0, &key, 404, b"404".to_vec());
        let ack = Key::new("z9hG4bK2", Method::Ack);
        let t1 = t0 + Duration::from_millis(700);
        assert_eq!(
            tx.on_request(t1, &ack, Method::Ack, "c", 1, p),
            Incoming::AckAbsorbed
        );
        assert_eq!(
            tx.on_request(t1, &ack, Method::Ack, "c", 1, p),
            Incoming::AckAbsorbed
        );
        let (sends, _) = run(&mut tx, t0, Duration::from_secs(60));
        assert!(sends.is_empty());
        assert!(tx.is_empty(), "timer I ended it");
    }

    #[test]
    fn reliable_transports_do_not_retransmit_non_2xx_and_end_at_once() {
        let mut tx = Transactions::new(Timers::default());
        let t0 = Instant::now();
        let p = peer(Transport::Tcp);
        let opt = Key::new("z9hG4bK3", Method::Options);
        tx.on_request(t0, &opt, Method::Options, "c", 1, p);
        tx.respond(t0, &opt, 200, b"200".to_vec());
        let (sends, _) = run(&mut tx, t0, Duration::from_secs(1));
        assert!(sends.is_empty());
        assert!(tx.is_empty(), "timer J is zero on TCP");
    }

    #[test]
    fn client_non_invite_follows_timers_e_f_and_k() {
        let mut tx = Transactions::new(Timers::default());
        let t0 = Instant::now();
        let p = peer(Transport::Udp);
        tx.send(t0, "z9hG4bKb", Method::Bye, "c", p, b"BYE".to_vec());
        assert!(tx.awaiting_answers());
        let (sends, other) = run(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(
            sends,
            vec![
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(
            other,
            vec![Output::ClientTimeout {
                call_id: "c".into(),
                method: Method::Bye
            }]
        );
        // Answered: done, and a retransmitted answer is absorbed.
        tx.send(t0, "z9hG4bKc", Method::Bye, "c", p, b"BYE".to_vec());
        assert!(tx.on_response(t0, "z9hG4bKc", Method::Bye, 200).is_some());
        assert!(tx.on_response(t0, "z9hG4bKc", Method::Bye, 200).is_none());
        assert!(!tx.awaiting_answers());
    }
}
