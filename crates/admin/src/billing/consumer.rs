//! The billing/reports consumer: reads the durable event log from its saved offset and applies each
//! event in its own transaction (see [`Store::apply_event`]), so a crash anywhere replays at most the
//! event in flight, which the event-id check then skips.

use std::sync::Arc;
use std::time::Duration;

use convene_core::EventLog;
use tokio::sync::watch;

use crate::store::Store;
use crate::store::conferences::Applied;

/// The consumer's name in `consumer_offsets`.
pub const CONSUMER: &str = "billing";
/// Events applied per read.
const BATCH: usize = 256;
/// Wait after a failure before trying again (the database may be restarting).
const RETRY: Duration = Duration::from_secs(1);

/// Apply everything durable now; returns how many events were applied (duplicates included).
pub async fn catch_up(store: &Store, log: &dyn EventLog) -> Result<usize, ConsumerError> {
    let mut done = 0;
    loop {
        let offset = store.consumer_offset(CONSUMER).await?;
        let batch = log.read_from(offset, BATCH)?;
        if batch.events.is_empty() {
            if batch.next > offset {
                // Only unreadable lines: step over them.
                store.set_consumer_offset(CONSUMER, batch.next).await?;
            }
            return Ok(done);
        }
        for (event, next) in &batch.events {
            match store.apply_event(event, CONSUMER, *next).await? {
                Applied::Duplicate => {
                    tracing::debug!(event = %event.id, "event already applied; skipped")
                }
                Applied::Ended {
                    billed: Some(reason),
                } => {
                    tracing::info!(meeting = %event.meeting, %reason, "meeting ended; host is Active Pro today")
                }
                Applied::Ended { billed: None } | Applied::Recorded => {}
            }
            done += 1;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Journal(#[from] convene_core::JournalError),
}

/// Run until `stop` turns true: catch up, then wait for the log to grow.
pub async fn run(store: Store, log: Arc<dyn EventLog>, mut stop: watch::Receiver<bool>) {
    let mut durable = log.durable_len();
    loop {
        if let Err(e) = catch_up(&store, log.as_ref()).await {
            tracing::error!(error = %e, "billing consumer failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = stop.changed() => {}
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            changed = durable.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            // One last pass so an orderly shutdown leaves nothing unapplied.
            if let Err(e) = catch_up(&store, log.as_ref()).await {
                tracing::error!(error = %e, "billing consumer failed at shutdown");
            }
            return;
        }
    }
}
