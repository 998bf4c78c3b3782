"""audit's request/reply verbs for ops: query, export, verify, usage. All tenant-scoped.

Each goes through shared.service.rpc, which refuses a subject whose tenant token is
invalid or differs from the body's tenant_id before any SQL runs; the SQL itself binds
every value as a parameter (queries.py, export.py, verify.py).
"""

from __future__ import annotations

from faststream.nats import NatsRouter

from services.audit import export, queries
from services.audit.deps import SERVICE, Deps
from services.audit.verify import walk_chain
from shared.messages.audit import (
    AuditEventType,
    AuditExportPage,
    AuditPage,
    AuditVerified,
    ExportAudit,
    QueryAudit,
    QueryUsage,
    UsageReport,
    VerifyAudit,
)
from shared.messages.base import ErrorCode, ErrorInfo
from shared.service import error_reply, reply_ok, rpc

# Room left in a reply for the envelope around the rows.
REPLY_HEADROOM_BYTES = 16_384


def add_verbs(router: NatsRouter, deps: Deps) -> None:
    def budget() -> int:
        return deps.broker.connection.max_payload - REPLY_HEADROOM_BYTES

    @rpc(router, SERVICE, "query", QueryAudit, AuditPage, deps.trail)
    async def query(msg: QueryAudit) -> AuditPage:
        rows, total = await queries.audit_page(deps.store, msg, budget())
        return reply_ok(AuditPage, msg, rows=rows, total=total)

    @rpc(router, SERVICE, "export", ExportAudit, AuditExportPage, deps.trail)
    async def export_page(msg: ExportAudit) -> AuditExportPage:
        if msg.after_occurred_at is None:
            # Who took a copy of the trail is itself audit-worthy; once per export.
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.DATA_ACCESS,
                action="audit.export",
                resource_type="audit_trail",
                details={
                    "since": msg.since.isoformat() if msg.since else None,
                    "until": msg.until.isoformat() if msg.until else None,
                },
            )
        rows, done = await export.export_page(deps.store, msg, budget())
        return reply_ok(AuditExportPage, msg, rows=rows, done=done)

    @rpc(router, SERVICE, "verify", VerifyAudit, AuditVerified, deps.trail)
    async def verify(msg: VerifyAudit) -> AuditVerified:
        walk = await walk_chain(deps.store, msg.tenant_id, deps.anchors)
        return reply_ok(
            AuditVerified,
            msg,
            intact=walk.intact,
            rows=walk.rows,
            first_seq=walk.first_seq,
            last_seq=walk.last_seq,
            issues=walk.issues,
            truncated=walk.truncated,
        )

    @rpc(router, SERVICE, "usage", QueryUsage, UsageReport, deps.trail)
    async def usage(msg: QueryUsage) -> UsageReport:
        month = msg.month or queries.current_month()
        try:
            queries.month_bounds(month)
        except ValueError as exc:
            return error_reply(
                UsageReport,
                msg.tenant_id,
                msg.request_id,
                ErrorInfo(code=ErrorCode.MALFORMED_REQUEST, message=f"month {month}: {exc}"),
            )
        days, audit_events = await queries.usage(deps.store, msg, month)
        models = queries.by_model(days)
        return reply_ok(
            UsageReport,
            msg,
            month=month,
            requests=sum(m.requests for m in models),
            cost_nanousd=sum(m.cost_nanousd for m in models),
            audit_events=audit_events,
            by_model=models,
            by_day=days,
        )
