"""Every SQL panel of the Grafana dashboard, run against chDB with the real schema and
seeded rows, returns the numbers worked out by hand below; every PromQL panel names
metrics and labels a real service exposes.

The Grafana ClickHouse plugin's macros are expanded as the plugin documents them:
$__timeFilter(c) -> c >= toDateTime(from) AND c <= toDateTime(to), $__fromTime and
$__toTime -> toDateTime(seconds), and a multi-value ${var:singlequote} -> 'a','b'.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from services.audit.adapters import ClickHouseStore
from services.audit.rows import audit_row, cost_row
from services.audit.settings import DEFAULT_SCHEMA_DIR
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.completions import Usage
from shared.messages.metering import CostRecorded

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads(
    (ROOT / "deploy" / "grafana" / "dashboards" / "tenantry-ops.json").read_text()
)
FROM = datetime(2026, 11, 2, tzinfo=UTC)
TO = datetime(2026, 11, 3, 23, 59, 59, tzinfo=UTC)
SELECTED = ("alpha", "beta")  # gamma exists but is not selected in the tenant variable


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def expand(sql: str, tenants: tuple[str, ...] = SELECTED) -> str:
    start, end = int(FROM.timestamp()), int(TO.timestamp())
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})",
        sql,
    )
    sql = sql.replace("$__fromTime", f"toDateTime({start})")
    sql = sql.replace("$__toTime", f"toDateTime({end})")
    sql = sql.replace("${tenant:singlequote}", ",".join(f"'{t}'" for t in tenants))
    assert "$" not in sql, sql  # a macro this test does not know
    return sql


def panels_sql() -> dict[str, str]:
    found = {}
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == "grafana-clickhouse-datasource":
                found[panel["title"]] = target["rawSql"]
    return found


SQL = panels_sql()


def cost(tenant: str, when: datetime, model: str, nanousd: int, tokens: tuple[int, int]) -> Any:
    event = CostRecorded(
        tenant_id=tenant,
        occurred_at=when,
        model=model,
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]),
        cost_nanousd=nanousd,
        price_version="test",
    )
    return cost_row(event, when)


def audit(
    tenant: str,
    when: datetime,
    event_type: AuditEventType,
    action: str,
    status: AuditStatus = AuditStatus.SUCCESS,
    resource: tuple[str, str] = ("", ""),
    details: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    event = AuditRecorded(
        tenant_id=tenant,
        occurred_at=when,
        event_type=event_type,
        service="test",
        action=action,
        status=status,
        resource_type=resource[0],
        resource_id=resource[1],
        details=details or {},
    )
    return (*audit_row(event, 365), 0, "", "", when)


API, DENIED = AuditEventType.API_CALL, AuditEventType.ACCESS_DENIED
FAIL = AuditStatus.FAILURE
LEAK, BUDGET = AuditEventType.LEAKAGE_DETECTED, AuditEventType.BUDGET_ALERT


def budget(tenant: str, when: datetime, pct: int, spent: int, limit: int) -> tuple[Any, ...]:
    return audit(
        tenant,
        when,
        BUDGET,
        "budget.threshold_crossed",
        resource=("budget", "2026-11"),
        details={
            "month": "2026-11",
            "threshold_pct": pct,
            "spent_nanousd": spent,
            "budget_nanousd": limit,
        },
    )


COSTS = [
    cost("alpha", at(2, 10), "claude-haiku-4-5", 1_500_000_000, (100, 50)),
    cost("alpha", at(2, 11), "claude-haiku-4-5", 500_000_000, (100, 50)),
    cost("alpha", at(2, 12), "claude-sonnet-4-5", 3_000_000_000, (10, 20)),
    cost("alpha", at(3, 9), "claude-haiku-4-5", 250_000_000, (1, 2)),
    cost("beta", at(2, 13), "claude-haiku-4-5", 1_000_000_000, (5, 5)),
    cost("gamma", at(2, 13), "claude-haiku-4-5", 9_000_000_000, (5, 5)),  # not selected
    cost("alpha", at(1, 23), "claude-haiku-4-5", 7_000_000_000, (5, 5)),  # before the range
]
AUDITS = [
    audit("alpha", at(2, 10), API, "completion.create"),
    audit("alpha", at(2, 11), API, "completion.create"),
    audit("alpha", at(2, 12), API, "completion.create"),
    audit("alpha", at(2, 12, 30), API, "completion.create", FAIL),
    audit("alpha", at(3, 9), DENIED, "completion.create", FAIL),
    audit("alpha", at(1, 22), API, "completion.create", FAIL),  # before the range
    audit("beta", at(2, 13), API, "completion.create"),
    audit("beta", at(3, 14), API, "completion.create"),
    audit("gamma", at(2, 13), API, "completion.create", FAIL),  # not selected
    audit("alpha", at(2, 10, 1), DENIED, "ingest", FAIL),  # not a completion
    budget("alpha", at(2, 11, 5), 50, 5_000_000_000, 10_000_000_000),
    budget("alpha", at(3, 9, 5), 80, 8_000_000_000, 10_000_000_000),
    budget("beta", at(3, 12), 100, 2_000_000_000, 2_000_000_000),
    budget("gamma", at(3, 12), 100, 1, 1),  # not selected
    audit("alpha", at(2, 10, 2), LEAK, "leakage.scan", resource=("scan", "response")),
    audit("alpha", at(2, 10, 2), LEAK, "leakage.finding", resource=("pii", "email")),
    audit("alpha", at(2, 10, 3), LEAK, "leakage.finding", resource=("pii", "email")),
    audit("alpha", at(2, 10, 4), LEAK, "leakage.finding", resource=("secret", "aws_key")),
    audit("beta", at(3, 14, 1), LEAK, "leakage.finding", resource=("pii", "email")),
    audit("gamma", at(3, 14, 1), LEAK, "leakage.finding", resource=("secret", "jwt")),
]


@pytest_asyncio.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClickHouseStore]:
    path = tmp_path_factory.mktemp("dashboards") / "clickhouse"
    opened = await ClickHouseStore.open(f"chdb://{path}", DEFAULT_SCHEMA_DIR, {})
    try:
        await opened.insert_cost(COSTS)  # the materialized view fills cost_daily
        await opened.insert_audit(AUDITS)
        yield opened
    finally:
        await opened.close()


async def run(store: ClickHouseStore, title: str) -> list[tuple[Any, ...]]:
    return await store.select(expand(SQL[title]), {})


def test_every_sql_panel_is_checked_below() -> None:
    assert set(SQL) == {
        "Spend per tenant per day (USD)",
        "Spend by tenant, day and model",
        "Requests and errors per tenant",
        "Budget alerts",
        "Leakage findings by kind",
        "Audit volume by event type",
    }


async def test_spend_per_tenant_per_day(store: ClickHouseStore) -> None:
    rows = await run(store, "Spend per tenant per day (USD)")
    assert [(r[0].date().isoformat(), r[1], round(r[2], 9)) for r in rows] == [
        ("2026-11-02", "alpha", 5.0),
        ("2026-11-02", "beta", 1.0),
        ("2026-11-03", "alpha", 0.25),
    ]


async def test_spend_by_tenant_day_and_model(store: ClickHouseStore) -> None:
    rows = await run(store, "Spend by tenant, day and model")
    assert [(r[0].isoformat(), *r[1:6], round(r[6], 9)) for r in rows] == [
        ("2026-11-02", "alpha", "claude-haiku-4-5", 2, 200, 100, 2.0),
        ("2026-11-02", "alpha", "claude-sonnet-4-5", 1, 10, 20, 3.0),
        ("2026-11-02", "beta", "claude-haiku-4-5", 1, 5, 5, 1.0),
        ("2026-11-03", "alpha", "claude-haiku-4-5", 1, 1, 2, 0.25),
    ]


async def test_requests_and_errors_per_tenant(store: ClickHouseStore) -> None:
    rows = await run(store, "Requests and errors per tenant")
    assert rows == [("alpha", 5, 2, 1, 0.4), ("beta", 2, 0, 0, 0.0)]


async def test_budget_alerts(store: ClickHouseStore) -> None:
    rows = await run(store, "Budget alerts")
    assert [(r[0].isoformat(), *r[1:4], r[4], r[5]) for r in rows] == [
        ("2026-11-03T12:00:00", "beta", "2026-11", 100, 2.0, 2.0),
        ("2026-11-03T09:05:00", "alpha", "2026-11", 80, 8.0, 10.0),
        ("2026-11-02T11:05:00", "alpha", "2026-11", 50, 5.0, 10.0),
    ]


async def test_leakage_findings_by_kind(store: ClickHouseStore) -> None:
    rows = await run(store, "Leakage findings by kind")
    # The per-scan summary row is not a finding; gamma is not selected.
    assert rows == [("email", "pii", 3, 2), ("aws_key", "secret", 1, 1)]


async def test_audit_volume_by_event_type(store: ClickHouseStore) -> None:
    rows = await run(store, "Audit volume by event type")
    got = {(r[0].isoformat(), r[1]): r[2] for r in rows}
    assert got == {
        ("2026-11-02T10:00:00", "api_call"): 1,
        ("2026-11-02T10:00:00", "access_denied"): 1,  # the ingest refusal
        ("2026-11-02T10:00:00", "leakage_detected"): 4,
        ("2026-11-02T11:00:00", "api_call"): 1,
        ("2026-11-02T11:00:00", "budget_alert"): 1,
        ("2026-11-02T12:00:00", "api_call"): 2,
        ("2026-11-02T13:00:00", "api_call"): 1,
        ("2026-11-03T09:00:00", "access_denied"): 1,
        ("2026-11-03T09:00:00", "budget_alert"): 1,
        ("2026-11-03T12:00:00", "budget_alert"): 1,
        ("2026-11-03T14:00:00", "api_call"): 1,
        ("2026-11-03T14:00:00", "leakage_detected"): 1,
    }
    assert sum(got.values()) == 16


async def test_the_tenant_variable_query_lists_tenants(store: ClickHouseStore) -> None:
    (variable,) = DASHBOARD["templating"]["list"]
    rows = await store.select(variable["query"], {})
    assert [r[0] for r in rows] == ["alpha", "beta", "gamma"]


def test_promql_panels_use_metrics_services_expose() -> None:
    """The series the PromQL panels read exist, with those labels, in a real exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    from shared.metrics import ServiceMetrics

    metrics = ServiceMetrics("gateway")
    metrics.observe("intake.alpha.request", 0.01, ok=True)
    metrics.observe("svc.retrieval.search.alpha", 0.002, ok=False)
    exposed: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    used = 0
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] != "prometheus":
                continue
            for name in re.findall(r"\b(tenantry_[a-z_]+)", target["expr"]):
                assert name in exposed, name
                labels = set(re.findall(r"(\w+)=", target["expr"])) | set(
                    re.findall(r"by \(([^)]*)\)", target["expr"])[0].replace(" ", "").split(",")
                )
                assert labels - {"le"} <= exposed[name], (name, labels - exposed[name])
                used += 1
    assert used >= 5 and "tenantry_handler_seconds_bucket" in exposed
