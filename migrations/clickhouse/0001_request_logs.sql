-- Raw request logs, one row per answered request (DESIGN §9), and the record of which log
-- batches are stored, which makes redelivered batches detectable.
--
-- Written for Debian's clickhouse-server 18.16 and current releases alike: no DateTime64 (time
-- is whole seconds plus time_ms), no LowCardinality, no TTL. Ids of things that did not take
-- part (no route matched, no consumer) are NULL here and the nil UUID in the rollups, whose
-- sort keys cannot be Nullable.

CREATE TABLE IF NOT EXISTS request_logs (
    time DateTime('UTC'),
    time_ms UInt16,
    organization_id UUID,
    control_plane_id UUID,
    node_id UUID,
    region String,
    id UUID,
    batch_id UUID,
    request_id String,
    service_id Nullable(UUID),
    route_id Nullable(UUID),
    consumer_id Nullable(UUID),
    method String,
    host String,
    path String,
    status UInt16,
    latency_total_us UInt64,
    latency_upstream_us Nullable(UInt64),
    latency_edge_us UInt64,
    bytes_in UInt64,
    bytes_out UInt64,
    client_ip String,
    ai_provider Nullable(String),
    ai_model Nullable(String),
    ai_prompt_tokens UInt64,
    ai_completion_tokens UInt64,
    ai_cost_micros UInt64
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (organization_id, control_plane_id, time);

-- Filled by the same INSERT that writes the rows, so a batch is recorded exactly when its rows
-- are: the ingester asks this table which batch ids it already has before inserting.
CREATE TABLE IF NOT EXISTS ingested_batches (
    batch_id UUID,
    time DateTime('UTC')
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY batch_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingested_batches_mv TO ingested_batches AS
SELECT batch_id, min(time) AS time
FROM request_logs
GROUP BY batch_id;
