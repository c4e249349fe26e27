-- Daily rollups, and rollups of the whole organization by status (issue 5).
--
-- What a dashboard query costs is merging t-digests, about in proportion to the centroids merged,
-- and a state holds a few hundred centroids whether it summarizes an hour or a day. Over 7 days
-- the top consumers merged 168 hourly states per consumer; from the daily tables they merge 7,
-- plus the whole hours at the ends of the range. The organization-wide tables (keyed by status
-- only) serve the dashboard's default view, across every control plane, with one state per status
-- and bucket where the per-control-plane tables have one per control plane and status. The
-- planner (analytics/src/clickhouse/sql.rs) takes whole UTC days from the daily tables, whole
-- hours at the ends from the hourly ones, then minutes, then raw rows.
--
--   requests_1d_cp        day, control plane, status
--   requests_1d_route     day, control plane, service, route
--   requests_1d_consumer  day, control plane, consumer
--   requests_1d_node      day, control plane, region, node
--   requests_1m_status    minute, status
--   requests_1h_status    hour, status
--   requests_1d_status    day, status
--
-- Each view reads another view's output (FROM requests_1h_*_mv or requests_1m_cp_mv): the states
-- one INSERT into request_logs made per hour or minute, merged per day or per status, so a new
-- table costs an insert a merge of a few hundred states rather than another pass over its rows.
-- (18.16 runs a view on another view's output; a view on the hourly table would not see what the
-- hourly view writes there.)
--
-- The backfill is 0003's: a fence view records the batches inserted once the new views exist,
-- and the stored batches not in it are aggregated from request_logs. Stop the ingesters while
-- `tollgate migrate` runs to rule out an insert begun in the milliseconds between the first view
-- and the fence. A run cut short and started again does not add a table's backfill twice.

CREATE TABLE IF NOT EXISTS requests_1d_cp (
    organization_id UUID,
    day DateTime('UTC'),
    control_plane_id UUID,
    status UInt16,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (organization_id, day, control_plane_id, status);

CREATE TABLE IF NOT EXISTS requests_1d_route (
    organization_id UUID,
    day DateTime('UTC'),
    control_plane_id UUID,
    service_id UUID,
    route_id UUID,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (organization_id, day, control_plane_id, service_id, route_id);

CREATE TABLE IF NOT EXISTS requests_1d_consumer (
    organization_id UUID,
    day DateTime('UTC'),
    control_plane_id UUID,
    consumer_id UUID,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (organization_id, day, control_plane_id, consumer_id);

CREATE TABLE IF NOT EXISTS requests_1d_node (
    organization_id UUID,
    day DateTime('UTC'),
    control_plane_id UUID,
    region String,
    node_id UUID,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (organization_id, day, control_plane_id, region, node_id);

CREATE TABLE IF NOT EXISTS requests_1m_status (
    organization_id UUID,
    minute DateTime('UTC'),
    status UInt16,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (organization_id, minute, status);

CREATE TABLE IF NOT EXISTS requests_1h_status (
    organization_id UUID,
    hour DateTime('UTC'),
    status UInt16,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (organization_id, hour, status);

CREATE TABLE IF NOT EXISTS requests_1d_status (
    organization_id UUID,
    day DateTime('UTC'),
    status UInt16,
    requests AggregateFunction(count),
    errors_4xx AggregateFunction(sum, UInt64),
    errors_5xx AggregateFunction(sum, UInt64),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency_total AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_upstream AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), UInt64, UInt8),
    latency_edge AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (organization_id, day, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1d_cp_mv TO requests_1d_cp AS
SELECT
    organization_id,
    toStartOfDay(hour) AS day,
    control_plane_id,
    status,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1h_cp_mv
GROUP BY organization_id, day, control_plane_id, status;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1d_route_mv TO requests_1d_route AS
SELECT
    organization_id,
    toStartOfDay(hour) AS day,
    control_plane_id,
    service_id,
    route_id,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1h_route_mv
GROUP BY organization_id, day, control_plane_id, service_id, route_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1d_consumer_mv TO requests_1d_consumer AS
SELECT
    organization_id,
    toStartOfDay(hour) AS day,
    control_plane_id,
    consumer_id,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1h_consumer_mv
GROUP BY organization_id, day, control_plane_id, consumer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1d_node_mv TO requests_1d_node AS
SELECT
    organization_id,
    toStartOfDay(hour) AS day,
    control_plane_id,
    region,
    node_id,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1h_node_mv
GROUP BY organization_id, day, control_plane_id, region, node_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1m_status_mv TO requests_1m_status AS
SELECT
    organization_id,
    minute,
    status,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1m_cp_mv
GROUP BY organization_id, minute, status;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1h_status_mv TO requests_1h_status AS
SELECT
    organization_id,
    hour,
    status,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1h_cp_mv
GROUP BY organization_id, hour, status;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1d_status_mv TO requests_1d_status AS
SELECT
    organization_id,
    toStartOfDay(hour) AS day,
    status,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(bytes_in) AS bytes_in,
    sumMergeState(bytes_out) AS bytes_out,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_total) AS latency_total,
    quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_upstream) AS latency_upstream,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency_edge) AS latency_edge
FROM requests_1h_cp_mv
GROUP BY organization_id, day, status;

-- The fence: batches inserted from here on went through every view above.
CREATE TABLE IF NOT EXISTS rollup_backfill_fence (
    batch_id UUID
) ENGINE = MergeTree()
ORDER BY batch_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_backfill_fence_mv TO rollup_backfill_fence AS
SELECT DISTINCT batch_id FROM request_logs;

CREATE TABLE IF NOT EXISTS rollup_backfill_done (
    name String
) ENGINE = MergeTree()
ORDER BY name;

-- As in 0003: let an INSERT begun before the fence finish (a database without logs does not
-- wait), take the stored batches, and wait again for inserts' views to reach the fence.
SELECT sleep((SELECT if(count() > 0, 3, 0) FROM request_logs));

DROP TABLE IF EXISTS rollup_backfill_batches;

CREATE TABLE rollup_backfill_batches ENGINE = MergeTree() ORDER BY batch_id AS
SELECT DISTINCT batch_id FROM ingested_batches;

SELECT sleep((SELECT if(count() > 0, 3, 0) FROM request_logs));

INSERT INTO requests_1d_cp
SELECT
    organization_id,
    toStartOfDay(time) AS day,
    control_plane_id,
    status,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1d_cp') = 0
GROUP BY organization_id, day, control_plane_id, status;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1d_cp');

INSERT INTO requests_1d_route
SELECT
    organization_id,
    toStartOfDay(time) AS day,
    control_plane_id,
    ifNull(service_id, toUUID('00000000-0000-0000-0000-000000000000')) AS service_id,
    ifNull(route_id, toUUID('00000000-0000-0000-0000-000000000000')) AS route_id,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1d_route') = 0
GROUP BY organization_id, day, control_plane_id, service_id, route_id;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1d_route');

INSERT INTO requests_1d_consumer
SELECT
    organization_id,
    toStartOfDay(time) AS day,
    control_plane_id,
    ifNull(consumer_id, toUUID('00000000-0000-0000-0000-000000000000')) AS consumer_id,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1d_consumer') = 0
GROUP BY organization_id, day, control_plane_id, consumer_id;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1d_consumer');

INSERT INTO requests_1d_node
SELECT
    organization_id,
    toStartOfDay(time) AS day,
    control_plane_id,
    region,
    node_id,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1d_node') = 0
GROUP BY organization_id, day, control_plane_id, region, node_id;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1d_node');

INSERT INTO requests_1m_status
SELECT
    organization_id,
    toStartOfMinute(time) AS minute,
    status,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1m_status') = 0
GROUP BY organization_id, minute, status;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1m_status');

INSERT INTO requests_1h_status
SELECT
    organization_id,
    toStartOfHour(time) AS hour,
    status,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1h_status') = 0
GROUP BY organization_id, hour, status;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1h_status');

INSERT INTO requests_1d_status
SELECT
    organization_id,
    toStartOfDay(time) AS day,
    status,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
WHERE batch_id IN (
    SELECT batch_id FROM rollup_backfill_batches
    WHERE batch_id NOT IN (SELECT batch_id FROM rollup_backfill_fence)
)
AND (SELECT count() FROM rollup_backfill_done WHERE name = 'requests_1d_status') = 0
GROUP BY organization_id, day, status;

INSERT INTO rollup_backfill_done (name) VALUES ('requests_1d_status');

DROP TABLE IF EXISTS rollup_backfill_fence_mv;

DROP TABLE IF EXISTS rollup_backfill_fence;

DROP TABLE IF EXISTS rollup_backfill_batches;

DROP TABLE IF EXISTS rollup_backfill_done;
