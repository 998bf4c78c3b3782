"""Event -> row mapping, and that the mapping matches the SQL schema in deploy/clickhouse."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.audit.rows import (
    AUDIT_COLUMNS,
    AUDIT_CONTENT_COLUMNS,
    COST_COLUMNS,
    audit_row,
    cost_row,
)
from services.audit.settings import DEFAULT_SCHEMA_DIR
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.completions import Usage
from shared.messages.metering import CostRecorded
from shared.tenancy import UNATTRIBUTED

pytestmark = pytest.mark.unit


def as_dict(columns: tuple[str, ...], row: tuple[object, ...]) -> dict[str, object]:
    assert len(columns) == len(row)
    return dict(zip(columns, row, strict=True))


def test_audit_row_maps_every_field() -> None:
    at = datetime(2025, 3, 4, 5, 6, 7, 891_000, tzinfo=UTC)
    event = AuditRecorded(
        tenant_id="acme",
        event_id="e1",
        request_id="r1",
        occurred_at=at,
        event_type=AuditEventType.ACCESS_DENIED,
        service="gateway",
        action="completion.create",
        resource_type="completion",
        resource_id="c-9",
        status=AuditStatus.FAILURE,
        error="denied",
        actor="user-7",
        client_ip="10.1.2.3",
        user_agent="curl/8",
        details={"b": 2, "a": "x", "ok": True, "none": None, "ratio": 0.5},
    )
    row = as_dict(AUDIT_CONTENT_COLUMNS, audit_row(event, 365))
    assert row == {
        "event_id": "e1",
        "request_id": "r1",
        "tenant_id": "acme",
        "occurred_at": at,
        "event_type": "access_denied",
        "service": "gateway",
        "action": "completion.create",
        "resource_type": "completion",
        "resource_id": "c-9",
        "status": "failure",
        "error": "denied",
        "actor": "user-7",
        "client_ip": "10.1.2.3",
        "user_agent": "curl/8",
        "details": '{"a":"x","b":2,"none":null,"ok":true,"ratio":0.5}',
        "schema_version": 1,
        "retention_days": 365,
    }


def test_audit_row_defaults_and_non_ascii_details() -> None:
    event = AuditRecorded(
        tenant_id=UNATTRIBUTED,
        event_type=AuditEventType.ERROR,
        service="audit",
        action="x",
        details={"name": "Zoë"},
    )
    row = as_dict(AUDIT_CONTENT_COLUMNS, audit_row(event, 90))
    assert row["tenant_id"] == UNATTRIBUTED and row["retention_days"] == 90
    assert row["error"] == "" and row["client_ip"] == "" and row["user_agent"] == ""
    assert json.loads(str(row["details"])) == {"name": "Zoë"}
    assert "Zoë" in str(row["details"])


def test_times_are_stored_as_utc() -> None:
    cet = timezone(timedelta(hours=1))
    local = AuditRecorded(
        tenant_id="acme",
        event_type=AuditEventType.API_CALL,
        service="s",
        action="a",
        occurred_at=datetime(2025, 1, 1, 1, 30, tzinfo=cet),
    )
    naive = local.model_copy(update={"occurred_at": datetime(2025, 1, 1, 0, 30)})
    expected = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
    for event in (local, naive):
        stored = as_dict(AUDIT_CONTENT_COLUMNS, audit_row(event, 365))["occurred_at"]
        assert isinstance(stored, datetime)
        assert stored == expected and stored.tzinfo is UTC


def test_times_are_truncated_to_what_datetime64_3_stores() -> None:
    # The chain hashes the stored value: a microsecond ClickHouse drops would make every
    # row fail verification.
    at = datetime(2025, 1, 1, 0, 0, 0, 123_999, tzinfo=UTC)
    event = AuditRecorded(
        tenant_id="acme",
        event_type=AuditEventType.API_CALL,
        service="s",
        action="a",
        occurred_at=at,
    )
    stored = as_dict(AUDIT_CONTENT_COLUMNS, audit_row(event, 365))["occurred_at"]
    assert stored == at.replace(microsecond=123_000)


def test_cost_row_keeps_money_as_exact_integers() -> None:
    event = CostRecorded(
        tenant_id="acme",
        event_id="c1",
        request_id="r1",
        model="claude-sonnet-4-5",
        usage=Usage(
            input_tokens=1_200,
            output_tokens=300,
            cache_read_input_tokens=50,
            cache_creation_input_tokens=7,
        ),
        cost_nanousd=9_007_199_254_740_993,  # 2**53 + 1: a float would round it
        price_version="2025-01",
    )
    recorded = datetime(2025, 1, 2, tzinfo=UTC)
    row = as_dict(COST_COLUMNS, cost_row(event, recorded))
    assert row["recorded_at"] == recorded
    assert row["cost_nanousd"] == 9_007_199_254_740_993
    assert isinstance(row["cost_nanousd"], int)
    assert (
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_input_tokens"],
        row["cache_creation_input_tokens"],
    ) == (1_200, 300, 50, 7)
    assert row["model"] == "claude-sonnet-4-5" and row["price_version"] == "2025-01"
    assert row["tenant_id"] == "acme" and row["event_id"] == "c1"


def schema_columns(file_glob: str) -> list[str]:
    (path,) = DEFAULT_SCHEMA_DIR.glob(file_glob)
    body = path.read_text().split("(", 1)[1].rsplit(")\nENGINE", 1)[0]
    return re.findall(r"^\s{4}([a-z_]+)\s", body, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("file_glob", "columns"),
    [("*_audit_events.sql", AUDIT_COLUMNS), ("*_cost_events.sql", COST_COLUMNS)],
)
def test_row_columns_exist_in_the_schema(file_glob: str, columns: tuple[str, ...]) -> None:
    in_sql = schema_columns(file_glob)
    # The writer fills every column: none is left to a DEFAULT.
    assert set(columns) == set(in_sql)
