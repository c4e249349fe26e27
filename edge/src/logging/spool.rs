//! Batches the bus did not take, kept on disk until it does: one file per batch in
//! `<data dir>/log-spool/`, named `<batch id>-<lines>.batch`. Batch ids are UUIDv7, so name order
//! is age order and replay goes oldest first; the line count in the name lets a dropped file be
//! counted without reading it. Files are written to a temporary name, synced, then renamed, so a
//! crash leaves whole batches or nothing. A file holds the batch's wire form, as published (an
//! earlier edge's JSON files still read).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tollgate_model::request_log::{EncodedLogBatch, LogCodecError};
use uuid::Uuid;

use crate::metrics::LogMetrics;

const SUFFIX: &str = ".batch";
const TEMPORARY_SUFFIX: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("request log spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("request log spool file {path} is not a batch: {source}")]
    Corrupt {
        path: PathBuf,
        source: LogCodecError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One spooled batch.
#[derive(Debug, Clone)]
pub struct SpoolEntry {
    pub batch_id: Uuid,
    pub logs: u64,
    pub bytes: u64,
}

impl SpoolEntry {
    fn file_name(&self) -> String {
        format!("{}-{}{SUFFIX}", self.batch_id, self.logs)
    }

    fn parse(name: &str, bytes: u64) -> Option<SpoolEntry> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (id, logs) = stem.rsplit_once('-')?;
        Some(SpoolEntry {
            batch_id: id.parse().ok()?,
            logs: logs.parse().ok()?,
            bytes,
        })
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Oldest first.
    entries: VecDeque<SpoolEntry>,
    bytes: u64,
    metrics: LogMetrics,
}

impl Spool {
    /// Opens (creating) the spool directory and lists what an earlier run left in it.
    pub async fn open(
        dir: PathBuf,
        max_bytes: u64,
        metrics: LogMetrics,
    ) -> Result<Spool, SpoolError> {
        let listing_dir = dir.clone();
        let entries = tokio::task::spawn_blocking(move || list(&listing_dir))
            .await
            .map_err(|e| SpoolError::Io {
                path: dir.clone(),
                source: std::io::Error::other(e),
            })??;
        let bytes = entries.iter().map(|e| e.bytes).sum();
        let mut spool = Spool {
            dir,
            max_bytes,
            entries,
            bytes,
            metrics,
        };
        // The bound may have shrunk since the last run.
        spool.make_room(0).await;
        spool.update_gauges();
        Ok(spool)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn oldest(&self) -> Option<&SpoolEntry> {
        self.entries.front()
    }

    fn path_of(&self, entry: &SpoolEntry) -> PathBuf {
        self.dir.join(entry.file_name())
    }

    /// Writes a batch to the spool, first dropping the oldest batches (counted) if it would not
    /// fit. A batch bigger than the whole spool is dropped itself.
    pub async fn push(&mut self, batch: &EncodedLogBatch) -> Result<(), SpoolError> {
        let body = batch.bytes.clone();
        let entry = SpoolEntry {
            batch_id: batch.id,
            logs: batch.lines,
            bytes: body.len() as u64,
        };
        if entry.bytes > self.max_bytes {
            tracing::warn!(batch = %batch.id, bytes = entry.bytes, max = self.max_bytes, "a request log batch is larger than the whole spool; dropping it");
            self.metrics.dropped_spool_full.inc_by(entry.logs);
            return Ok(());
        }
        self.make_room(entry.bytes).await;
        let path = self.path_of(&entry);
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&written, &body))
            .await
            .map_err(|e| SpoolError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })??;
        self.bytes += entry.bytes;
        // Usually the newest; a batch whose publish failed while newer ones were spooled is
        // older, and replay must still go by age.
        let position = self
            .entries
            .partition_point(|e| e.batch_id < entry.batch_id);
        self.entries.insert(position, entry);
        self.update_gauges();
        Ok(())
    }

    /// Reads the oldest batch back.
    pub async fn read_oldest(&self) -> Option<Result<EncodedLogBatch, SpoolError>> {
        let path = self.path_of(self.oldest()?);
        Some(match tokio::fs::read(&path).await {
            Ok(body) => EncodedLogBatch::from_bytes(Bytes::from(body))
                .map_err(|source| SpoolError::Corrupt { path, source }),
            Err(source) => Err(SpoolError::Io { path, source }),
        })
    }

    /// Forgets the oldest batch and deletes its file (after the bus took it, or when it cannot
    /// be read).
    pub async fn remove_oldest(&mut self) {
        let Some(entry) = self.entries.pop_front() else {
            return;
        };
        self.bytes -= entry.bytes;
        let path = self.path_of(&entry);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            // Left behind, it would be replayed again at the next start: JetStream's duplicate
            // window and the ingester's batch ids keep that from counting twice.
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a spooled request log batch");
        }
        self.update_gauges();
    }

    /// Drops the oldest batches until `incoming` more bytes fit.
    async fn make_room(&mut self, incoming: u64) {
        while self.bytes + incoming > self.max_bytes {
            let Some(entry) = self.oldest().cloned() else {
                break;
            };
            tracing::warn!(batch = %entry.batch_id, logs = entry.logs, "the request log spool is full; dropping its oldest batch");
            self.metrics.dropped_spool_full.inc_by(entry.logs);
            self.remove_oldest().await;
        }
    }

    fn update_gauges(&self) {
        self.metrics
            .spool_bytes
            .set(i64::try_from(self.bytes).unwrap_or(i64::MAX));
        self.metrics
            .spool_batches
            .set(i64::try_from(self.entries.len()).unwrap_or(i64::MAX));
    }
}

/// The batches in `dir`, oldest first; leftovers of interrupted writes are deleted.
fn list(dir: &Path) -> Result<VecDeque<SpoolEntry>, SpoolError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let item = item.map_err(io_error(dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(TEMPORARY_SUFFIX) {
            let _ = std::fs::remove_file(item.path());
            continue;
        }
        let bytes = item.metadata().map_err(io_error(&item.path()))?.len();
        match SpoolEntry::parse(name, bytes) {
            Some(entry) => entries.push(entry),
            None => tracing::warn!(
                file = name,
                "ignoring a file in the request log spool that is not a batch"
            ),
        }
    }
    entries.sort_by_key(|e| e.batch_id);
    Ok(entries.into())
}

fn write_atomically(path: &Path, body: &[u8]) -> Result<(), SpoolError> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(TEMPORARY_SUFFIX);
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary).map_err(io_error(&temporary))?;
    file.write_all(body).map_err(io_error(&temporary))?;
    file.sync_data().map_err(io_error(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io_error(path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_batch_id_and_line_count() {
        let entry = SpoolEntry {
            batch_id: Uuid::now_v7(),
            logs: 42,
            bytes: 7,
        };
        let parsed = SpoolEntry::parse(&entry.file_name(), 7).unwrap();
        assert_eq!((parsed.batch_id, parsed.logs), (entry.batch_id, 42));
        assert!(SpoolEntry::parse("notes.txt", 1).is_none());
        assert!(SpoolEntry::parse("x-1.batch", 1).is_none());
    }
}
