-- One row per CostRecorded event (shared/messages/metering.py), append-only.
-- Money is an exact integer of nano-USD (1e-9 USD), never a float. Int64 rather
-- than UInt64 so a later credit/correction row can be negative and sums stay signed.
-- Retention: TENANTRY_COST_RETENTION_DAYS re-sets the TTL at start, as for audit_events.
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
    recorded_at                 DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, occurred_at, event_id)
TTL occurred_at + INTERVAL 365 DAY;
