-- Per-tenant, per-day (UTC), per-model rollup of cost_events, kept up to date by a
-- materialized view at insert time. SummingMergeTree sums the numeric columns of rows
-- sharing the key on merge; merges are lazy, so readers still sum() with GROUP BY.
-- Because the writer never inserts an event twice, the rollup equals the raw table.
CREATE TABLE IF NOT EXISTS tenantry.cost_daily
(
    tenant_id                   LowCardinality(String),
    day                         Date,
    model                       LowCardinality(String),
    requests                    UInt64,
    input_tokens                UInt64,
    output_tokens               UInt64,
    cache_read_input_tokens     UInt64,
    cache_creation_input_tokens UInt64,
    cost_nanousd                Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, model);

CREATE MATERIALIZED VIEW IF NOT EXISTS tenantry.cost_daily_mv TO tenantry.cost_daily AS
SELECT
    tenant_id,
    toDate(occurred_at, 'UTC') AS day,
    model,
    count() AS requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cost_nanousd) AS cost_nanousd
FROM tenantry.cost_events
GROUP BY tenant_id, day, model;
