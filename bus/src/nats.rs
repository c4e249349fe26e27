//! The production bus on NATS JetStream. Heads live in the KV bucket `<prefix>_heads` under
//! `<region>.<control plane id>` (a late edge reads the latest from history); bodies live in the
//! object store `<prefix>_snapshots` as `<control plane id>/<version>` (they outgrow one message,
//! and one name per version means a slow publisher can never overwrite a newer body); heartbeats
//! go to the core subject `<prefix>.heartbeats`; request log batches go to the stream
//! `<prefix>_logs` on `<prefix>.logs.<node id>`, read by durable pull consumers. A prefix per
//! deployment (or per test) keeps them apart. Heads move by compare-and-set, so API replicas
//! racing cannot move one back.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use tollgate_model::request_log::{EncodedLogBatch, LogBatch};
use tollgate_model::{Heartbeat, Snapshot, SnapshotHead};
use uuid::Uuid;

use crate::{
    packing, Acknowledgement, Bus, BusError, ConfigEvent, ConfigFilter, LogDelivery, LogQueue,
    SnapshotBody,
};

/// How long an ingester has to store a batch and acknowledge it before it is delivered again.
const LOG_ACK_WAIT: Duration = Duration::from_secs(60);

/// Most bytes of log batches one fetch asks for. The server drops a client whose unsent data
/// passes 64 MiB (a "slow consumer"), and batches pulled that way come back only after the
/// acknowledgement deadline: 500 batches of a few hundred KiB did exactly that.
const LOG_FETCH_MAX_BYTES: usize = 16 * 1024 * 1024;

/// How long undelivered log batches are kept: an ingester outage this long loses nothing.
const LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longer than any healthy fetch of a snapshot body (tens of ms for MiBs) or listing of heads.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The most a body's announced size reserves up front (a bigger one still reads, growing).
const MAX_PRESIZED_BODY: usize = 64 * 1024 * 1024;

/// How long a superseded body stays readable: an edge (or API replica) that read the old head
/// a moment ago is still fetching it. async-nats 0.40 waits forever for the chunks of an object
/// deleted under a reader, so deleting at once turns that race into a stall.
const SUPERSEDED_BODY_GRACE: Duration = Duration::from_secs(30);

pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    prefix: String,
    heads: OnceCell<kv::Store>,
    bodies: OnceCell<object_store::ObjectStore>,
    logs: OnceCell<stream::Stream>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl NatsBus {
    /// Connects in the background: the bus is usable at once and each call fails with
    /// [`BusError::Unavailable`] until the server answers, so an edge can serve from its
    /// last-known-good config while NATS is down.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(BusError::Unavailable(format!(
                "invalid NATS prefix '{prefix}': use letters, digits, '-' and '_'"
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(5)))
            .connect(url)
            .await
            .map_err(unavailable)?;
        let jetstream = jetstream::new(client.clone());
        Ok(NatsBus {
            client,
            jetstream,
            prefix: prefix.to_string(),
            heads: OnceCell::new(),
            bodies: OnceCell::new(),
            logs: OnceCell::new(),
        })
    }

    async fn heads_bucket(&self) -> Result<&kv::Store, BusError> {
        self.heads
            .get_or_try_init(|| async {
                let bucket = format!("{}_heads", self.prefix);
                if let Ok(store) = self.jetstream.get_key_value(&bucket).await {
                    return Ok(store);
                }
                self.jetstream
                    .create_key_value(kv::Config {
                        bucket: bucket.clone(),
                        history: 1,
                        description: "Tollgate config heads per control plane".into(),
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    async fn bodies_bucket(&self) -> Result<&object_store::ObjectStore, BusError> {
        self.bodies
            .get_or_try_init(|| async {
                let bucket = format!("{}_snapshots", self.prefix);
                if let Ok(store) = self.jetstream.get_object_store(&bucket).await {
                    return Ok(store);
                }
                self.jetstream
                    .create_object_store(object_store::Config {
                        bucket: bucket.clone(),
                        description: Some("Tollgate config snapshots".into()),
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    async fn logs_stream(&self) -> Result<&stream::Stream, BusError> {
        self.logs
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(stream::Config {
                        name: format!("{}_logs", self.prefix),
                        subjects: vec![format!("{}.logs.>", self.prefix)],
                        description: Some("Tollgate request log batches".into()),
                        max_age: LOG_RETENTION,
                        // Re-publishing a batch (a retry after a lost ack, a spool replay) within
                        // this window is stored once.
                        duplicate_window: Duration::from_secs(120),
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    fn heartbeat_subject(&self) -> String {
        format!("{}.heartbeats", self.prefix)
    }
}

fn head_key(region: &str, id: Uuid) -> String {
    format!("{region}.{id}")
}

fn body_name(id: Uuid, version: i64) -> String {
    format!("{id}/{version}")
}

fn decode_event(entry: kv::Entry) -> Result<ConfigEvent, BusError> {
    // From the server storing the head to its watcher taking it (decoded as it is taken): the
    // notification's share of an edge's apply time, for debugging slow applies.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let stored = u128::try_from(entry.created.unix_timestamp_nanos()).unwrap_or(0);
    tracing::debug!(key = %entry.key, revision = entry.revision, lag_us = now.saturating_sub(stored) / 1000, "config head taken from the watch");
    match entry.operation {
        kv::Operation::Put => serde_json::from_slice::<SnapshotHead>(&entry.value)
            .map(ConfigEvent::Updated)
            .map_err(|e| BusError::Decode(format!("head {}: {e}", entry.key))),
        kv::Operation::Delete | kv::Operation::Purge => {
            let id = entry
                .key
                .rsplit('.')
                .next()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| BusError::Decode(format!("bad head key {}", entry.key)))?;
            Ok(ConfigEvent::Removed {
                control_plane_id: id,
            })
        }
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn publish_snapshot(&self, region: &str, snapshot: &Snapshot) -> Result<(), BusError> {
        let id = snapshot.control_plane_id;
        let key = head_key(region, id);
        let heads = self.heads_bucket().await?;
        let bodies = self.bodies_bucket().await?;
        let json = serde_json::to_vec(snapshot).map_err(|e| BusError::Decode(e.to_string()))?;
        let body = packing::pack(&json);
        drop(json);
        bodies
            .put(
                body_name(id, snapshot.version).as_str(),
                &mut body.as_slice(),
            )
            .await
            .map_err(unavailable)?;
        let head = SnapshotHead {
            control_plane_id: id,
            region: region.to_string(),
            version: snapshot.version,
            hash: snapshot.hash.clone(),
        };
        let head =
            Bytes::from(serde_json::to_vec(&head).map_err(|e| BusError::Decode(e.to_string()))?);
        // Compare-and-set: retried when another publisher moved the head in between.
        for _ in 0..10 {
            let current = heads.entry(&key).await.map_err(unavailable)?;
            let previous = match &current {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    serde_json::from_slice::<SnapshotHead>(&entry.value).ok()
                }
                _ => None,
            };
            if previous
                .as_ref()
                .is_some_and(|p| p.version >= snapshot.version)
            {
                if previous.is_some_and(|p| p.version > snapshot.version) {
                    // A newer version is already out; this body will never be asked for.
                    let _ = bodies
                        .delete(body_name(id, snapshot.version).as_str())
                        .await;
                }
                return Ok(());
            }
            let moved = match &current {
                Some(entry) => heads
                    .update(&key, head.clone(), entry.revision)
                    .await
                    .is_ok(),
                None => heads.create(&key, head.clone()).await.is_ok(),
            };
            if moved {
                if let Some(previous) = previous {
                    let bodies = bodies.clone();
                    let name = body_name(id, previous.version);
                    tokio::spawn(async move {
                        tokio::time::sleep(SUPERSEDED_BODY_GRACE).await;
                        // Best effort: a body left behind by a stopped process is only space.
                        let _ = bodies.delete(name.as_str()).await;
                    });
                }
                return Ok(());
            }
        }
        Err(BusError::Unavailable(format!(
            "head of {id} kept changing while publishing version {}",
            snapshot.version
        )))
    }

    async fn remove_control_plane(&self, region: &str, id: Uuid) -> Result<(), BusError> {
        let heads = self.heads_bucket().await?;
        let key = head_key(region, id);
        let current = heads.get(&key).await.map_err(unavailable)?;
        heads.delete(&key).await.map_err(unavailable)?;
        // The body goes too; a missing one is fine (never published, or already gone).
        if let Some(head) = current.and_then(|v| serde_json::from_slice::<SnapshotHead>(&v).ok()) {
            let _ = self
                .bodies_bucket()
                .await?
                .delete(body_name(id, head.version).as_str())
                .await;
        }
        Ok(())
    }

    async fn heads(&self) -> Result<Vec<SnapshotHead>, BusError> {
        let store = self.heads_bucket().await?;
        let list = async {
            let mut keys = store.keys().await.map_err(unavailable)?;
            let mut heads = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(unavailable)?;
                if let Some(value) = store.get(&key).await.map_err(unavailable)? {
                    let head = serde_json::from_slice(&value)
                        .map_err(|e| BusError::Decode(format!("head {key}: {e}")))?;
                    heads.push(head);
                }
            }
            Ok(heads)
        };
        // A listing consumer that never completes (a server restarting under it) must not
        // stall the publisher's reconcile loop; the next round tries again.
        tokio::time::timeout(FETCH_TIMEOUT, list)
            .await
            .map_err(|_| BusError::Unavailable("listing config heads timed out".into()))?
    }

    async fn watch_config(
        &self,
        filter: ConfigFilter,
    ) -> Result<BoxStream<'static, Result<ConfigEvent, BusError>>, BusError> {
        let pattern = match filter.control_plane {
            Some(id) => format!("*.{id}"),
            None => format!("{}.*", filter.region),
        };
        let watch = self
            .heads_bucket()
            .await?
            .watch_with_history(pattern)
            .await
            .map_err(unavailable)?;
        Ok(watch
            .map(|entry| entry.map_err(unavailable).and_then(decode_event))
            .boxed())
    }

    async fn fetch_snapshot(&self, head: &SnapshotHead) -> Result<Option<Snapshot>, BusError> {
        let id = head.control_plane_id;
        let Some(body) = self.fetch_snapshot_body(head).await? else {
            return Ok(None);
        };
        // A large snapshot takes milliseconds to unpack and parse: not on a thread that serves
        // requests.
        tokio::task::spawn_blocking(move || {
            let json = match body {
                SnapshotBody::Encoded(json) => json,
                SnapshotBody::Packed(packed) => packing::unpack(&packed)?,
                SnapshotBody::Decoded(snapshot) => return Ok(*snapshot),
            };
            serde_json::from_slice(&json).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| BusError::Decode(format!("snapshot {id}: {e}")))?
        .map(Some)
        .map_err(|e| BusError::Decode(format!("snapshot {id}: {e}")))
    }

    async fn fetch_snapshot_body(
        &self,
        head: &SnapshotHead,
    ) -> Result<Option<SnapshotBody>, BusError> {
        let name = body_name(head.control_plane_id, head.version);
        let store = self.bodies_bucket().await?;
        // async-nats 0.40 waits forever for the chunks of a deleted object, so ask first, and
        // bound the read for one deleted between the two calls.
        let size = match store.info(name.as_str()).await {
            Ok(info) if info.deleted => return Ok(None),
            Ok(info) => info.size,
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let read = async {
            let mut object = match store.get(name.as_str()).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            };
            // Sized up front: growing a buffer of MiBs step by step copies it several times.
            let mut body = Vec::with_capacity(size.min(MAX_PRESIZED_BODY));
            object.read_to_end(&mut body).await.map_err(unavailable)?;
            Ok(Some(body))
        };
        let body = tokio::time::timeout(FETCH_TIMEOUT, read)
            .await
            .map_err(|_| BusError::Unavailable(format!("fetching {name} timed out")))??;
        // Bodies published before they were packed are plain JSON.
        Ok(body.map(|body| match packing::is_packed(&body) {
            true => SnapshotBody::Packed(body),
            false => SnapshotBody::Encoded(body),
        }))
    }

    async fn publish_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), BusError> {
        let body = serde_json::to_vec(heartbeat).map_err(|e| BusError::Decode(e.to_string()))?;
        self.client
            .publish(self.heartbeat_subject(), Bytes::from(body))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn heartbeats(&self) -> Result<BoxStream<'static, Heartbeat>, BusError> {
        // A queue group: with several API replicas each heartbeat is recorded once.
        let subscriber = self
            .client
            .queue_subscribe(self.heartbeat_subject(), "tollgate-api".to_string())
            .await
            .map_err(unavailable)?;
        Ok(subscriber
            .filter_map(|message| async move {
                match serde_json::from_slice::<Heartbeat>(&message.payload) {
                    Ok(hb) => Some(hb),
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping undecodable heartbeat");
                        None
                    }
                }
            })
            .boxed())
    }

    async fn publish_logs(&self, batch: &LogBatch) -> Result<(), BusError> {
        let encoded = batch
            .encode()
            .map_err(|e| BusError::Decode(e.to_string()))?;
        self.publish_encoded_logs(&encoded).await
    }

    async fn publish_encoded_logs(&self, batch: &EncodedLogBatch) -> Result<(), BusError> {
        self.logs_stream().await?;
        let ack = self
            .jetstream
            .send_publish(
                format!("{}.logs.{}", self.prefix, batch.node_id),
                jetstream::context::Publish::build()
                    .payload(batch.bytes.clone())
                    .message_id(batch.id.to_string()),
            )
            .await
            .map_err(unavailable)?;
        ack.await.map_err(unavailable)?;
        Ok(())
    }

    async fn log_queue(&self, consumer_name: &str) -> Result<Box<dyn LogQueue>, BusError> {
        let stream = self.logs_stream().await?;
        let consumer = stream
            .get_or_create_consumer::<pull::Config>(
                consumer_name,
                pull::Config {
                    durable_name: Some(consumer_name.to_string()),
                    description: Some("Tollgate ingesters".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: LOG_ACK_WAIT,
                    // Every batch is retried until it is stored: nothing acknowledged is lost.
                    max_deliver: -1,
                    max_ack_pending: 50_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(Box::new(NatsLogQueue {
            consumer,
            client: self.client.clone(),
        }))
    }
}

struct NatsLogQueue {
    consumer: consumer::Consumer<pull::Config>,
    /// The connection the deliveries' acknowledgements go out on.
    client: async_nats::Client,
}

#[async_trait::async_trait]
impl LogQueue for NatsLogQueue {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<LogDelivery>, BusError> {
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(max.max(1))
            .max_bytes(LOG_FETCH_MAX_BYTES)
            .expires(wait)
            .messages()
            .await
            .map_err(unavailable)?;
        let mut deliveries = Vec::new();
        let started = std::time::Instant::now();
        let mut decoding = Duration::ZERO;
        let mut bytes = 0usize;
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                // The server ends a fetch that reached its byte limit with an error status
                // (409 "Message Size Exceeds MaxBytes"); what came before it is good, and
                // dropping it would only delay it until the acknowledgement deadline.
                Err(e) if !deliveries.is_empty() => {
                    tracing::debug!(error = %e, "log batch fetch ended early");
                    break;
                }
                Err(e) => return Err(unavailable(e)),
            };
            bytes += message.payload.len();
            let decode_started = std::time::Instant::now();
            let decoded = LogBatch::decode(&message.payload);
            decoding += decode_started.elapsed();
            match decoded {
                Ok(batch) => {
                    // Acknowledging needs only the reply subject; the payload (as big as the
                    // batch) need not wait in memory for the insert.
                    let mut message = message;
                    message.message.payload = Bytes::new();
                    deliveries.push(LogDelivery {
                        batch,
                        ack: Acknowledgement::Nats(Box::new(message)),
                    });
                }
                Err(e) => {
                    // Redelivering it would fail the same way forever.
                    tracing::warn!(subject = %message.subject, error = %e, "discarding a message on the log stream that is not a log batch");
                    message
                        .ack_with(jetstream::AckKind::Term)
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        tracing::debug!(batches = deliveries.len(), bytes, took = ?started.elapsed(), decoding = ?decoding, "fetched log batches");
        Ok(deliveries)
    }

    async fn pending(&mut self) -> Result<u64, BusError> {
        let info = self.consumer.info().await.map_err(unavailable)?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    async fn flush(&mut self) -> Result<(), BusError> {
        self.client.flush().await.map_err(unavailable)
    }
}
