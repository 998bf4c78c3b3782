-- One row per CostRecorded event (shared/messages/metering.py), append-only.
-- Money is an exact integer of nano-USD (1e-9 USD), never a float. Int64 rather
-- than UInt64 so a later credit/correction row can be negative and sums stay signed.
-- Exactly-once as for audit_events: the writer skips stored event ids, and one batch is
-- one part (partitioned by insert month) so the rollup below sees each row once.
-- Retention: TENANTRY_COST_RETENTION_DAYS re-sets the TTL at start.
CREATE TABLE IF NOT EXISTS tenantry.cost_events
(
    event_id                    String,
    request_id                  String,
    tenant_id                   LowCardinality(String),
    occurred_at                 DateTime64(3, 'UTC'),
    model                       LowCardinality(String),
    input_tokens                UInt64,
    output_tokens               UInt64,
    cache_read_input_tokens     UInt64,
    cache_creation_input_tokens UInt64,
    cost_nanousd                Int64,
    price_version               LowCardinality(String),
    schema_version              UInt16,
    recorded_at                 DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (tenant_id, occurred_at, event_id)
TTL occurred_at + INTERVAL 365 DAY
SETTINGS non_replicated_deduplication_window = 10000;
