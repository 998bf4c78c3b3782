"""Export pages: a tenant's rows oldest first, keyset-paginated on (occurred_at, event_id).

Each page is one indexed range read (the table is ordered by tenant, time, event id),
so page N costs the same as page 1 and neither side ever holds more than a page: the
export of millions of rows runs in constant memory on the service and the client.
"""

from __future__ import annotations

from typing import Any

from services.audit.queries import EARLIEST, LATEST, ROW_COLUMNS, Reader, fit_rows, to_audit_row
from services.audit.rows import as_utc
from shared.messages.audit import AuditRow, ExportAudit

EXPORT_SQL = (
    "SELECT "
    + ROW_COLUMNS
    + """
FROM tenantry.audit_events
WHERE tenant_id = {tenant_id:String}
  AND occurred_at >= {since:DateTime64(3, 'UTC')}
  AND occurred_at < {until:DateTime64(3, 'UTC')}
  AND occurred_at >= {after_t:DateTime64(3, 'UTC')}
  AND (occurred_at > {after_t:DateTime64(3, 'UTC')} OR event_id > {after_id:String})
ORDER BY occurred_at, event_id
LIMIT {limit:UInt32}
"""
)


def export_params(request: ExportAudit) -> dict[str, Any]:
    return {
        "tenant_id": request.tenant_id,
        "since": as_utc(request.since) if request.since else EARLIEST,
        "until": as_utc(request.until) if request.until else LATEST,
        "after_t": as_utc(request.after_occurred_at) if request.after_occurred_at else EARLIEST,
        "after_id": request.after_event_id,
        "limit": request.page_size,
    }


async def export_page(
    store: Reader, request: ExportAudit, budget_bytes: int
) -> tuple[list[AuditRow], bool]:
    """One page and whether it is the last. Trimmed to fit one NATS reply."""
    fetched = [to_audit_row(r) for r in await store.select(EXPORT_SQL, export_params(request))]
    rows = fit_rows(fetched, budget_bytes)
    if not rows and fetched:
        raise ValueError("one audit row does not fit in a NATS message")
    return rows, len(fetched) < request.page_size and len(rows) == len(fetched)
