//! Publishes closed batches on the bus. While the spool is empty each batch is published as it
//! comes; a failed publish spools the batch, and from then on new batches queue behind it on disk
//! while the spool is replayed oldest first (same batch id, so JetStream stores a batch once even
//! when a publish that timed out had in fact arrived). A batch leaves the spool only once the
//! bus has taken it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tollgate_bus::{Bus, BusError};
use tollgate_model::request_log::EncodedLogBatch;

use super::spool::{Spool, SpoolError};
use crate::metrics::LogMetrics;

/// Longer than any healthy JetStream ack of a batch (milliseconds); what makes an unreachable
/// bus a failure rather than a wait.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// A publish not acknowledged by then is treated as the bus being in trouble.
const SLOW_PUBLISH: Duration = Duration::from_millis(500);
/// Between replay attempts while the bus keeps failing.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs until the batcher has gone and every batch it sent is published or spooled. Batches
/// still in the spool then wait for the next start.
pub async fn run(
    bus: Arc<dyn Bus>,
    mut spool: Spool,
    mut outbox: mpsc::Receiver<EncodedLogBatch>,
    metrics: LogMetrics,
) {
    let mut retry = RETRY_FIRST;
    loop {
        if spool.is_empty() {
            let Some(batch) = outbox.recv().await else {
                return;
            };
            // While a publish is slow to be acknowledged (NATS just went away and the client
            // has not noticed), batches arriving meanwhile go to disk: held in memory they
            // would back up into the request path's queue and be dropped there.
            let publishing = publish(&*bus, &batch, &metrics);
            tokio::pin!(publishing);
            let slow = tokio::time::sleep(SLOW_PUBLISH);
            tokio::pin!(slow);
            let mut is_slow = false;
            let published = loop {
                tokio::select! {
                    published = &mut publishing => break published,
                    () = &mut slow, if !is_slow => is_slow = true,
                    Some(newer) = outbox.recv(), if is_slow => store(&mut spool, &newer, &metrics).await,
                }
            };
            if let Err(e) = published {
                tracing::warn!(batch = %batch.id, logs = batch.lines, error = %e, "publishing request logs failed; spooling them");
                store(&mut spool, &batch, &metrics).await;
            }
            continue;
        }
        // Newer batches wait behind the spooled ones, so replay stays oldest first.
        loop {
            match outbox.try_recv() {
                Ok(batch) => store(&mut spool, &batch, &metrics).await,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        match replay_oldest(&*bus, &mut spool, &metrics).await {
            Ok(()) => retry = RETRY_FIRST,
            Err(e) => {
                tracing::debug!(error = %e, ?retry, "request log spool replay failed; retrying");
                let wait = tokio::time::sleep(retry);
                tokio::pin!(wait);
                retry = (retry * 2).min(RETRY_MAX);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        batch = outbox.recv() => match batch {
                            Some(batch) => store(&mut spool, &batch, &metrics).await,
                            None => return,
                        },
                    }
                }
            }
        }
    }
}

async fn publish(
    bus: &dyn Bus,
    batch: &EncodedLogBatch,
    metrics: &LogMetrics,
) -> Result<(), BusError> {
    let published =
        match tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish_encoded_logs(batch)).await {
            Ok(published) => published,
            Err(_) => Err(BusError::Unavailable(format!(
                "no acknowledgement within {PUBLISH_TIMEOUT:?}"
            ))),
        };
    match &published {
        Ok(()) => {
            metrics.batches_published.inc();
            metrics.shipped.inc_by(batch.lines);
        }
        Err(_) => metrics.publish_failures.inc(),
    }
    published
}

/// Publishes the oldest spooled batch and deletes it. An unreadable file is deleted and its
/// lines counted as dropped: retrying would fail the same way.
async fn replay_oldest(
    bus: &dyn Bus,
    spool: &mut Spool,
    metrics: &LogMetrics,
) -> Result<(), BusError> {
    let Some(read) = spool.read_oldest().await else {
        return Ok(());
    };
    let batch = match read {
        Ok(batch) => batch,
        Err(e) => {
            tracing::error!(error = %e, "dropping an unreadable spooled request log batch");
            let logs = spool.oldest().map_or(0, |entry| entry.logs);
            metrics.dropped_spool_error.inc_by(logs);
            spool.remove_oldest().await;
            return Ok(());
        }
    };
    publish(bus, &batch, metrics).await?;
    tracing::debug!(batch = %batch.id, "replayed a spooled request log batch");
    spool.remove_oldest().await;
    Ok(())
}

async fn store(spool: &mut Spool, batch: &EncodedLogBatch, metrics: &LogMetrics) {
    if let Err(e) = spool.push(batch).await {
        let e: SpoolError = e;
        tracing::error!(batch = %batch.id, error = %e, "cannot spool request logs; they are lost");
        metrics.dropped_spool_error.inc_by(batch.lines);
    }
}
