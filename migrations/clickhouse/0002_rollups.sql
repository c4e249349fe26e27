-- Rollups that serve the dashboards and billing without scanning raw rows.
--
-- requests_1m: one row per organization, minute and combination of every dimension a query can
-- filter or group on. Counts and sums are -State columns like the latency digests, because an
-- AggregatingMergeTree keeps an arbitrary value of a plain column when it merges rows.
-- Latencies are t-digests: small states that merge cheaply over millions of rows.

CREATE TABLE IF NOT EXISTS requests_1m (
    organization_id UUID,
    minute DateTime('UTC'),
    control_plane_id UUID,
    service_id UUID,
    route_id UUID,
    consumer_id UUID,
    status UInt16,
    node_id UUID,
    region String,
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
ORDER BY (organization_id, minute, control_plane_id, service_id, route_id, consumer_id, status, node_id, region);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_1m_mv TO requests_1m AS
SELECT
    organization_id,
    toStartOfMinute(time) AS minute,
    control_plane_id,
    ifNull(service_id, toUUID('00000000-0000-0000-0000-000000000000')) AS service_id,
    ifNull(route_id, toUUID('00000000-0000-0000-0000-000000000000')) AS route_id,
    ifNull(consumer_id, toUUID('00000000-0000-0000-0000-000000000000')) AS consumer_id,
    status,
    node_id,
    region,
    countState() AS requests,
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx,
    sumState(toUInt64(status >= 500)) AS errors_5xx,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total,
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge
FROM request_logs
GROUP BY organization_id, minute, control_plane_id, service_id, route_id, consumer_id, status, node_id, region;

-- usage_1d: what billing meters, per organization, day and control plane. Summed on merge;
-- queries still sum(), since merges happen whenever ClickHouse gets to them.
CREATE TABLE IF NOT EXISTS usage_1d (
    organization_id UUID,
    day Date,
    control_plane_id UUID,
    requests UInt64,
    bytes_in UInt64,
    bytes_out UInt64,
    ai_prompt_tokens UInt64,
    ai_completion_tokens UInt64,
    ai_cost_micros UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (organization_id, day, control_plane_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_1d_mv TO usage_1d AS
SELECT
    organization_id,
    toDate(time) AS day,
    control_plane_id,
    count() AS requests,
    sum(bytes_in) AS bytes_in,
    sum(bytes_out) AS bytes_out,
    sum(ai_prompt_tokens) AS ai_prompt_tokens,
    sum(ai_completion_tokens) AS ai_completion_tokens,
    sum(ai_cost_micros) AS ai_cost_micros
FROM request_logs
GROUP BY organization_id, day, control_plane_id;
