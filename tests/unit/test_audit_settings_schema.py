"""audit's settings (DSN handling, never leaking its password) and schema application."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.audit import schema
from services.audit.settings import DEFAULT_SCHEMA_DIR, AuditSettings, redacted_dsn

pytestmark = pytest.mark.unit


def test_default_dsn_is_embedded_chdb_under_data_dir(tmp_path: Path) -> None:
    settings = AuditSettings(data_dir=tmp_path / "rel")
    assert settings.dsn() == f"chdb://{(tmp_path / 'rel' / 'clickhouse').resolve()}"
    assert settings.dsn().startswith("chdb:///")


def test_relative_data_dir_becomes_absolute() -> None:
    assert AuditSettings(data_dir=Path("var")).dsn().startswith("chdb:///")


@pytest.mark.parametrize(
    "dsn",
    ["chdb://relative/path", "mysql://h/db", "http://", "http://h:port/"],
)
def test_bad_dsns_fail_fast_without_echoing_them(dsn: str) -> None:
    with pytest.raises(ValidationError) as raised:
        AuditSettings(clickhouse_dsn=dsn)
    assert dsn not in str(raised.value)


def test_placeholder_password_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="placeholder password"):
        AuditSettings(environment="production", clickhouse_dsn="http://u:changeme@ch:8123")
    ok = AuditSettings(environment="production", clickhouse_dsn="http://u:Xk29s-real@ch:8123")
    assert ok.dsn().endswith("@ch:8123")


def test_dsn_password_never_shows() -> None:
    settings = AuditSettings(clickhouse_dsn="https://ops:hunter2-long@ch.internal:8443/db")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert redacted_dsn(settings.dsn()) == "https://ops:***@ch.internal:8443/db"
    assert redacted_dsn("chdb:///var/ch") == "chdb:///var/ch"


def test_split_statements_ignores_comments_and_quoted_semicolons() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE DATABASE IF NOT EXISTS x;  -- trailing
    SELECT 'a;b', "c;d", `e;f`, 'it\\'s;';
    """
    assert schema.split_statements(sql) == [
        "CREATE DATABASE IF NOT EXISTS x",
        "SELECT 'a;b', \"c;d\", `e;f`, 'it\\'s;'",
    ]


def test_apply_runs_files_in_order_then_only_changed_ttls() -> None:
    ran: list[str] = []
    engines = {
        "audit_events": "MergeTree ... TTL occurred_at + toIntervalDay(365) SETTINGS ...",
        "cost_events": "MergeTree ... TTL occurred_at + toIntervalDay(365) SETTINGS ...",
    }
    schema.apply(
        ran.append,
        engines.__getitem__,
        DEFAULT_SCHEMA_DIR,
        {"cost_events": 730},
    )
    assert ran[0] == "CREATE DATABASE IF NOT EXISTS tenantry"
    assert ran[1].startswith("CREATE TABLE IF NOT EXISTS tenantry.audit_events")
    assert ran[2].startswith("CREATE TABLE IF NOT EXISTS tenantry.cost_events")
    assert ran[3].startswith("CREATE TABLE IF NOT EXISTS tenantry.cost_daily")
    assert ran[4].startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS tenantry.cost_daily_mv")
    assert ran[5:] == ["ALTER TABLE tenantry.cost_events MODIFY TTL occurred_at + INTERVAL 730 DAY"]
    assert all("IF NOT EXISTS" in statement for statement in ran[:5])


def test_audit_retention_is_per_row_never_table_wide() -> None:
    # A MODIFY TTL on audit_events would replace the per-row (per-tier) TTL.
    with pytest.raises(schema.SchemaError):
        schema.apply(lambda _: None, lambda _: "", DEFAULT_SCHEMA_DIR, {"audit_events": 30})


def test_schema_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(schema.SchemaError):
        schema.schema_files(tmp_path)
