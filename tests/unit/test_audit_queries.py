"""The read side: SQL stays constant, caller values only ever travel as bound parameters."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from services.audit import queries
from services.audit.export import EXPORT_SQL, export_params
from services.audit.verify import VERIFY_SQL
from shared.messages.audit import AuditEventType, AuditRow, ExportAudit, QueryAudit, QueryUsage

pytestmark = pytest.mark.unit

ALL_SQL = (
    queries.AUDIT_PAGE_SQL,
    queries.AUDIT_TOTAL_SQL,
    queries.USAGE_SQL,
    queries.AUDIT_COUNT_SQL,
    EXPORT_SQL,
    VERIFY_SQL,
)


def placeholders(sql: str) -> set[str]:
    return set(re.findall(r"\{(\w+):", sql))


@pytest.mark.parametrize("sql", ALL_SQL)
def test_every_query_is_scoped_to_a_bound_tenant(sql: str) -> None:
    assert "tenant_id = {tenant_id:String}" in sql
    # No Python format fields left: the text is sent as is, values go separately.
    assert "{}" not in sql and "%s" not in sql and "%(" not in sql


def test_audit_params_match_the_placeholders_and_default_to_everything() -> None:
    params = queries.audit_params(QueryAudit(tenant_id="acme"))
    assert params == {
        "tenant_id": "acme",
        "since": queries.EARLIEST,
        "until": queries.LATEST,
        "event_type": "",
        "of_request": "",
        "limit": 100,
    }
    assert placeholders(queries.AUDIT_PAGE_SQL) == set(params)
    assert placeholders(queries.AUDIT_TOTAL_SQL) == set(params) - {"limit"}


def test_audit_params_carry_filters_as_values() -> None:
    cet = timezone(timedelta(hours=1))
    query = QueryAudit(
        tenant_id="acme",
        event_type=AuditEventType.DELETION,
        since=datetime(2025, 1, 1, 1, 0, tzinfo=cet),
        until=datetime(2025, 2, 1),
        limit=7,
        of_request="req-42",
    )
    params = queries.audit_params(query)
    assert params["event_type"] == "deletion" and params["of_request"] == "req-42"
    assert params["since"] == datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
    assert params["until"] == datetime(2025, 2, 1, tzinfo=UTC)  # naive means UTC
    assert params["limit"] == 7


def test_hostile_looking_text_never_reaches_the_sql() -> None:
    # Tenant ids cannot hold quotes (validated), but even so nothing is interpolated.
    query = QueryAudit(tenant_id="x-or-1", event_type=AuditEventType.ERROR)
    params = queries.audit_params(query)
    for sql in ALL_SQL:
        assert "x-or-1" not in sql
    assert params["tenant_id"] == "x-or-1"


@pytest.mark.parametrize(
    ("month", "start", "end"),
    [
        ("2025-03", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
        ("2024-12", datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_month_bounds(month: str, start: datetime, end: datetime) -> None:
    assert queries.month_bounds(month) == (start, end)


@pytest.mark.parametrize("month", ["2025-00", "2025-13"])
def test_month_bounds_refuses_impossible_months(month: str) -> None:
    with pytest.raises(ValueError):
        queries.month_bounds(month)


def test_usage_params() -> None:
    params = queries.usage_params(QueryUsage(tenant_id="acme"), "2025-12")
    assert params == {
        "tenant_id": "acme",
        "start": date(2025, 12, 1),
        "end": date(2026, 1, 1),
    }
    assert placeholders(queries.USAGE_SQL) == set(params)
    assert placeholders(queries.AUDIT_COUNT_SQL) == {"tenant_id"}


def test_current_month_is_utc() -> None:
    late_new_year = datetime(2025, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert queries.current_month(late_new_year) == "2026-01"


def row(i: int, details: str = "{}") -> AuditRow:
    return AuditRow(
        event_id=f"e{i}",
        request_id="r",
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
        event_type="api_call",
        service="s",
        action="a",
        resource_type="",
        resource_id="",
        status="success",
        error="",
        actor="",
        details=details,
    )


def test_fit_rows_keeps_the_newest_rows_that_fit_one_reply() -> None:
    rows = [row(i, details="x" * 1_000) for i in range(10)]
    size = len(rows[0].model_dump_json()) + 1
    assert queries.fit_rows(rows, size * 10) == rows
    assert queries.fit_rows(rows, size * 3 + 5) == rows[:3]
    assert queries.fit_rows(rows, 10) == []


class FakeReader:
    def __init__(self, answers: dict[str, list[tuple[Any, ...]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.calls.append((sql, parameters))
        return self.answers[sql]


async def test_audit_page_maps_rows_and_total() -> None:
    naive = datetime(2025, 1, 1, 12, 0)
    page_row = (
        *("e1", "r1", naive, "api_call", "gw", "a", "doc", "d1", "success", "", "u", "{}"),
        *("acme", "10.0.0.1", "ua", 7, "0" * 64, "f" * 64),
    )
    reader = FakeReader({queries.AUDIT_PAGE_SQL: [page_row], queries.AUDIT_TOTAL_SQL: [(5,)]})
    rows, total = await queries.audit_page(reader, QueryAudit(tenant_id="acme"), 1_000_000)
    assert total == 5
    assert rows[0].event_id == "e1" and rows[0].occurred_at == naive.replace(tzinfo=UTC)
    assert rows[0].chain_seq == 7 and rows[0].client_ip == "10.0.0.1"
    assert all(params["tenant_id"] == "acme" for _, params in reader.calls)


async def test_usage_maps_models_and_counts() -> None:
    reader = FakeReader(
        {
            queries.USAGE_SQL: [
                ("2025-01-01", "m1", 2, 10, 20, 300),
                ("2025-01-01", "m2", 1, 1, 2, 3),
                ("2025-01-02", "m1", 1, 5, 5, 7),
            ],
            queries.AUDIT_COUNT_SQL: [(9,)],
        }
    )
    days, audit_events = await queries.usage(reader, QueryUsage(tenant_id="acme"), "2025-01")
    assert audit_events == 9
    assert [(d.day, d.model, d.cost_nanousd) for d in days][-1] == ("2025-01-02", "m1", 7)
    assert [(m.model, m.requests, m.cost_nanousd) for m in queries.by_model(days)] == [
        ("m1", 3, 307),
        ("m2", 1, 3),
    ]


def test_export_params_match_the_placeholders_and_carry_the_cursor() -> None:
    first = export_params(ExportAudit(tenant_id="acme"))
    assert placeholders(EXPORT_SQL) == set(first)
    assert first["after_t"] == queries.EARLIEST and first["after_id"] == ""
    cursor = datetime(2025, 1, 1, 12, tzinfo=UTC)
    later = export_params(
        ExportAudit(tenant_id="acme", after_occurred_at=cursor, after_event_id="e9", page_size=5)
    )
    assert (later["after_t"], later["after_id"], later["limit"]) == (cursor, "e9", 5)
