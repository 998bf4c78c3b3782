-- Tenantry's ClickHouse schema. Applied in file-name order by the audit service at
-- start (the only ClickHouse writer); every statement is idempotent, so replicas and
-- restarts can re-apply it. Also runnable as is: clickhouse-client --multiquery < file.
CREATE DATABASE IF NOT EXISTS tenantry;
