-- One row per AuditRecorded event (shared/messages/audit.py), append-only.
-- (Pre-release: this file was reshaped in place for issue 6; a data folder made by an
-- earlier build must be recreated. From the first release on, changes get new files.)
--
-- ORDER BY starts with tenant_id so every tenant-scoped query reads only that
-- tenant's granules; (occurred_at, event_id) then gives time-range reads and the
-- export's keyset order.
--
-- Plain MergeTree, not ReplacingMergeTree: this is evidence, so nothing may collapse
-- rows behind the verifier's back. Exactly-once is the writer's job (see
-- services/audit/writer.py): it skips event ids already stored before it assigns
-- chain positions, and each insert carries an insert_deduplication_token, which a
-- non-replicated MergeTree honours within non_replicated_deduplication_window.
--
-- PARTITION BY the insert month (recorded_at, one value per batch), not by
-- occurred_at: one batch is then one part, so an insert is all-or-nothing even when
-- a batch spans a month boundary, and a crash can never store half a batch (which
-- would leave a hole in a tenant's hash chain).
--
-- Retention is per row: the writer stores the tenant's tier retention in
-- retention_days, and the TTL drops the row when occurred_at is that old.
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
    retention_days UInt16,                 -- from the tenant's tier when written
    chain_seq      UInt64,                 -- 1, 2, 3 ... per tenant
    prev_hash      String,                 -- row_hash of the tenant's previous row
    row_hash       String,                 -- sha256(prev_hash, canonical row), hex
    recorded_at    DateTime64(3, 'UTC'),   -- when audit inserted it (one per batch)
    INDEX chain_seq_minmax chain_seq TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (tenant_id, occurred_at, event_id)
TTL toDateTime(occurred_at) + toIntervalDay(retention_days)
SETTINGS non_replicated_deduplication_window = 10000;
