-- One row per AuditRecorded event (shared/messages/audit.py), append-only.
-- ORDER BY starts with tenant_id so every tenant-scoped query reads only that
-- tenant's granules; event_id ends the key so rows are unique per key and a later
-- switch to ReplacingMergeTree (exactly-once on merge) keeps the same key.
-- Retention: the TTL below is the default; the audit service re-sets it from
-- TENANTRY_AUDIT_RETENTION_DAYS at start when that differs.
CREATE TABLE IF NOT EXISTS tenantry.audit_events
(
    event_id       String,
    request_id     String,
    tenant_id      LowCardinality(String),
    occurred_at    DateTime64(3, 'UTC'),
    event_type     LowCardinality(String),
    service        LowCardinality(String),
    action         LowCardinality(String),
    resource_type  LowCardinality(String),
    resource_id    String,
    status         LowCardinality(String),
    error          String,
    actor          String,
    client_ip      String,
    user_agent     String,
    details        String CODEC(ZSTD(3)),  -- JSON object text
    schema_version UInt16,
    recorded_at    DateTime64(3, 'UTC') DEFAULT now64(3)  -- when audit inserted it
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, occurred_at, event_id)
TTL occurred_at + INTERVAL 365 DAY;
