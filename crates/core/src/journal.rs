//! The durable event log of a single-machine deployment: every meeting event is appended to a file
//! (one JSON object per line) and flushed to disk before anyone sees it, so consumers (billing,
//! reports) can read it at their own pace from a saved offset and pick up after a crash exactly where
//! they stopped. In cluster mode NATS JetStream takes this role; both sit behind [`EventBus`] for
//! publishers and [`EventLog`] for durable consumers.
//!
//! Publishing never blocks the caller (media shards call it from their packet loops): events go over
//! a channel to one writer thread, which appends a batch, calls `fdatasync`, and only then announces
//! the new durable length and broadcasts the events to live subscribers. An event is *emitted* once it
//! is on disk; a crash before that loses it together with the in-memory meeting it belonged to.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use tokio::sync::{broadcast, watch};

use crate::events::{EventBus, MeetingEvent};

/// Longest line read back (an event is a few hundred bytes; a longer line is corrupt).
const MAX_LINE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("event journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Events read from a log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Each event with the offset just after it (where a consumer that has applied it resumes).
    pub events: Vec<(MeetingEvent, u64)>,
    /// Where the next read starts (past unreadable lines too).
    pub next: u64,
}

/// Durable reading: events from a byte offset on.
pub trait EventLog: Send + Sync + 'static {
    /// Up to `max` complete events starting at `offset`. Lines that do not parse are skipped (and
    /// logged), never fatal.
    fn read_from(&self, offset: u64, max: usize) -> Result<Batch, JournalError>;

    /// The durable length, updated after every flush: wait on it for new events.
    fn durable_len(&self) -> watch::Receiver<u64>;
}

enum Message {
    Event(MeetingEvent),
    /// Reply once everything sent before has been flushed.
    Flush(Sender<()>),
}

/// A file-backed [`EventBus`] + [`EventLog`].
pub struct EventJournal {
    path: PathBuf,
    tx: Mutex<Sender<Message>>,
    live: broadcast::Sender<MeetingEvent>,
    durable: watch::Receiver<u64>,
}

impl EventJournal {
    /// Open (or create) the journal at `path` and start its writer thread. A torn last line (a crash in
    /// the middle of an append) is cut off first, so new appends start on a clean line.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let len = clean_length(&mut file).map_err(io)?;
        if len != file.metadata().map_err(io)?.len() {
            tracing::warn!(path = %path.display(), kept = len, "event journal ended in a torn line; cut it off");
            file.set_len(len).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let (tx, rx) = channel();
        let (live, _) = broadcast::channel(4096);
        let (durable_tx, durable) = watch::channel(len);
        let writer = Writer {
            path: path.to_owned(),
            file,
            len,
            live: live.clone(),
            durable: durable_tx,
        };
        std::thread::Builder::new()
            .name("event-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            tx: Mutex::new(tx),
            live,
            durable,
        })
    }

    /// Block until every event published so far is on disk (for an orderly shutdown).
    pub fn flush(&self) {
        let (done_tx, done_rx) = channel();
        let sent = self
            .tx
            .lock()
            .map(|tx| tx.send(Message::Flush(done_tx)).is_ok())
            .unwrap_or(false);
        if sent {
            let _ = done_rx.recv();
        }
    }
}

/// The length of the file up to and including its last newline.
fn clean_length(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut pos = len;
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = (pos - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

struct Writer {
    path: PathBuf,
    file: File,
    len: u64,
    live: broadcast::Sender<MeetingEvent>,
    durable: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        // Ends when every sender is gone (the journal was dropped).
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Event(e) => batch.push(e),
                    Message::Flush(done) => flushes.push(done),
                }
                next = rx.try_recv().ok();
            }
            if !batch.is_empty() {
                self.append(&batch);
                for event in batch.drain(..) {
                    let _ = self.live.send(event);
                }
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    fn append(&mut self, batch: &[MeetingEvent]) {
        let mut text = Vec::with_capacity(batch.len() * 256);
        for event in batch {
            // Plain data with string keys: serialising cannot fail.
            if serde_json::to_writer(&mut text, event).is_ok() {
                text.push(b'\n');
            }
        }
        let result = self
            .file
            .write_all(&text)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += text.len() as u64;
                self.durable.send_replace(self.len);
            }
            Err(e) => {
                // Keep the file clean for the next append: cut back whatever part was written.
                tracing::error!(path = %self.path.display(), error = %e, events = batch.len(), "event journal append failed; events lost");
                let _ = self.file.set_len(self.len);
            }
        }
    }
}

impl EventBus for EventJournal {
    fn publish(&self, event: MeetingEvent) {
        tracing::debug!(meeting = %event.meeting, kind = ?event.kind, "meeting event");
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(Message::Event(event));
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<MeetingEvent> {
        self.live.subscribe()
    }
}

impl EventLog for EventJournal {
    fn read_from(&self, offset: u64, max: usize) -> Result<Batch, JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        };
        // Only what is durable: a line being appended right now is not read half-written.
        let end = *self.durable.borrow();
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut reader = BufReader::new(file.take(end.saturating_sub(offset)));
        let mut events = Vec::new();
        let mut pos = offset;
        let mut line = Vec::new();
        while events.len() < max {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', &mut line)
                .map_err(io)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            pos += n as u64;
            match serde_json::from_slice::<MeetingEvent>(&line) {
                Ok(e) => events.push((e, pos)),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), offset = pos - n as u64, error = %e, "skipping an unreadable journal line")
                }
            }
        }
        Ok(Batch { events, next: pos })
    }

    fn durable_len(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MeetingEventKind;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "convene-journal-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        dir.join("events").join("journal.jsonl")
    }

    fn event(meeting: &str, kind: MeetingEventKind) -> MeetingEvent {
        MeetingEvent::now(meeting.parse().unwrap(), kind)
    }

    #[test]
    fn published_events_are_durable_readable_and_broadcast() {
        let path = temp("rw");
        let journal = EventJournal::open(&path).unwrap();
        let mut live = journal.subscribe();
        let a = event("m1", MeetingEventKind::MeetingStarted);
        let b = event("m1", MeetingEventKind::MeetingEnded);
        journal.publish(a.clone());
        journal.publish(b.clone());
        journal.flush();
        assert_eq!(live.try_recv().unwrap(), a);
        assert_eq!(live.try_recv().unwrap(), b);
        let all = journal.read_from(0, 10).unwrap();
        let events: Vec<_> = all.events.iter().map(|(e, _)| e.clone()).collect();
        assert_eq!(events, vec![a.clone(), b.clone()]);
        assert_eq!(all.next, *journal.durable_len().borrow());
        assert_eq!(all.events[1].1, all.next);
        // Paging: one at a time continues where the last read stopped.
        let first = journal.read_from(0, 1).unwrap();
        assert_eq!(first.events, vec![(a, all.events[0].1)]);
        assert_eq!(first.next, all.events[0].1);
        assert_eq!(journal.read_from(first.next, 10).unwrap().events[0].0, b);
        assert!(journal.read_from(all.next, 10).unwrap().events.is_empty());
        drop(journal);
        // Reopening keeps everything.
        let again = EventJournal::open(&path).unwrap();
        assert_eq!(again.read_from(0, 10).unwrap().events.len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_torn_tail_is_cut_and_garbage_lines_are_skipped() {
        let path = temp("torn");
        let good = event("m2", MeetingEventKind::MeetingStarted);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = serde_json::to_vec(&good).unwrap();
        text.extend_from_slice(b"\nnot json at all\n{\"id\":\"half a line");
        std::fs::write(&path, &text).unwrap();
        let journal = EventJournal::open(&path).unwrap();
        let later = event("m2", MeetingEventKind::MeetingEnded);
        journal.publish(later.clone());
        journal.flush();
        let events: Vec<_> = journal
            .read_from(0, 10)
            .unwrap()
            .events
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(events, vec![good, later]);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
