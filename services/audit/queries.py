"""The read side: fixed SQL texts, their bind parameters, and result -> reply mapping.

Every query is a constant string with `{name:Type}` placeholders that ClickHouse binds
server-side; nothing a caller sends is ever spliced into SQL. Optional filters are
written into the constant text as "match anything" defaults (empty event type, the
widest time range) instead of being assembled per request.

The writer stores each event once (writer.py), so reads count rows plainly; a
duplicate could only come from tampering, which `verify` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from services.audit.rows import as_utc
from shared.messages.audit import AuditRow, DayUsage, ModelUsage, QueryAudit, QueryUsage

# The DateTime64 range is [1900, 2299]; these bounds stand for "no bound".
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# The columns of an AuditRow, in to_audit_row's order (queries and exports share it).
ROW_COLUMNS = """event_id, request_id, occurred_at, event_type, service, action,
       resource_type, resource_id, status, error, actor, details,
       tenant_id, client_ip, user_agent, chain_seq, prev_hash, row_hash"""

AUDIT_PAGE_SQL = (
    "SELECT "
    + ROW_COLUMNS
    + """
FROM tenantry.audit_events
WHERE tenant_id = {tenant_id:String}
  AND occurred_at >= {since:DateTime64(3, 'UTC')}
  AND occurred_at < {until:DateTime64(3, 'UTC')}
  AND ({event_type:String} = '' OR event_type = {event_type:String})
  AND ({of_request:String} = '' OR request_id = {of_request:String})
ORDER BY occurred_at DESC, event_id DESC
LIMIT {limit:UInt32}
"""
)

# The same WHERE as AUDIT_PAGE_SQL (kept literal, not shared by string joining).
AUDIT_TOTAL_SQL = """
SELECT count()
FROM tenantry.audit_events
WHERE tenant_id = {tenant_id:String}
  AND occurred_at >= {since:DateTime64(3, 'UTC')}
  AND occurred_at < {until:DateTime64(3, 'UTC')}
  AND ({event_type:String} = '' OR event_type = {event_type:String})
  AND ({of_request:String} = '' OR request_id = {of_request:String})
"""

# From the cost_daily rollup (SummingMergeTree: parts not merged yet hold partial
# sums for the same key, hence sum() ... GROUP BY).
USAGE_SQL = """
SELECT toString(day), model, sum(requests), sum(input_tokens), sum(output_tokens),
       sum(cost_nanousd)
FROM tenantry.cost_daily
WHERE tenant_id = {tenant_id:String}
  AND day >= {start:Date}
  AND day < {end:Date}
GROUP BY day, model
ORDER BY day, model
"""

AUDIT_COUNT_SQL = """
SELECT count() FROM tenantry.audit_events WHERE tenant_id = {tenant_id:String}
"""


def audit_params(query: QueryAudit) -> dict[str, Any]:
    """Bind parameters for AUDIT_PAGE_SQL / AUDIT_TOTAL_SQL (the latter ignores `limit`)."""
    return {
        "tenant_id": query.tenant_id,
        "since": as_utc(query.since) if query.since else EARLIEST,
        "until": as_utc(query.until) if query.until else LATEST,
        "event_type": query.event_type.value if query.event_type else "",
        "of_request": query.of_request,
        "limit": query.limit,
    }


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2025-03' -> [2025-03-01, 2025-04-01) in UTC."""
    year, mon = (int(part) for part in month.split("-"))
    if not 1 <= mon <= 12:
        raise ValueError(f"no month {mon} in a year")
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def current_month(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m")


def usage_params(query: QueryUsage, month: str) -> dict[str, Any]:
    start, end = month_bounds(month)
    return {"tenant_id": query.tenant_id, "start": start.date(), "end": end.date()}


def to_audit_row(values: Sequence[Any]) -> AuditRow:
    (event_id, request_id, occurred_at, event_type, service, action) = values[:6]
    (resource_type, resource_id, status, error, actor, details) = values[6:12]
    return AuditRow(
        event_id=event_id,
        request_id=request_id,
        # chDB may hand DateTime64('UTC') back naive; it is UTC either way.
        occurred_at=as_utc(occurred_at),
        event_type=event_type,
        service=service,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        status=status,
        error=error,
        actor=actor,
        details=details,
        tenant_id=values[12],
        client_ip=values[13],
        user_agent=values[14],
        chain_seq=int(values[15]),
        prev_hash=values[16],
        row_hash=values[17],
    )


def to_day_usage(values: Sequence[Any]) -> DayUsage:
    day, model, requests, input_tokens, output_tokens, cost = values
    return DayUsage(
        day=str(day),
        model=model,
        requests=int(requests),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cost_nanousd=int(cost),
    )


def by_model(days: Sequence[DayUsage]) -> list[ModelUsage]:
    totals: dict[str, ModelUsage] = {}
    for d in days:
        seen = totals.get(d.model) or ModelUsage(
            model=d.model, requests=0, input_tokens=0, output_tokens=0, cost_nanousd=0
        )
        totals[d.model] = ModelUsage(
            model=d.model,
            requests=seen.requests + d.requests,
            input_tokens=seen.input_tokens + d.input_tokens,
            output_tokens=seen.output_tokens + d.output_tokens,
            cost_nanousd=seen.cost_nanousd + d.cost_nanousd,
        )
    return [totals[m] for m in sorted(totals)]


def fit_rows(rows: list[AuditRow], budget_bytes: int) -> list[AuditRow]:
    """The newest rows whose JSON fits in one NATS reply (max_payload minus headroom).

    A 10,000-row page can exceed NATS's 1 MB default payload, and an oversized reply
    is never delivered, so the caller would only see a timeout. The reply's `total`
    still counts every match, so a short page is visible as such.
    """
    used = 0
    for index, row in enumerate(rows):
        used += len(row.model_dump_json()) + 1
        if used > budget_bytes:
            return rows[:index]
    return rows


class Reader(Protocol):
    async def select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]: ...


async def audit_page(
    store: Reader, query: QueryAudit, budget_bytes: int
) -> tuple[list[AuditRow], int]:
    """The tenant's matching rows, newest first, and how many match in all."""
    params = audit_params(query)
    # Count first: rows only ever arrive, so a batch stored between the two reads can
    # make the page longer than the count (max() below), never leave the page empty
    # under a count that already includes it (seen under load).
    total_rows = await store.select(AUDIT_TOTAL_SQL, params)
    total = int(total_rows[0][0]) if total_rows else 0
    rows = [to_audit_row(r) for r in await store.select(AUDIT_PAGE_SQL, params)]
    return fit_rows(rows, budget_bytes), max(total, len(rows))


async def usage(store: Reader, query: QueryUsage, month: str) -> tuple[list[DayUsage], int]:
    """The month's cost by day and model, and the tenant's all-time audit row count."""
    days = [to_day_usage(r) for r in await store.select(USAGE_SQL, usage_params(query, month))]
    counted = await store.select(AUDIT_COUNT_SQL, {"tenant_id": query.tenant_id})
    return days, int(counted[0][0]) if counted else 0
