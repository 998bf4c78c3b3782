"""audit's Deps and handlers: batched event ingest, dead-letter advisories, ops verbs.

Ack-after-insert: the two ingest consumers (consumer.BatchConsumer, built by
app.bootstrap) hand each batch to `store_audit` / `store_cost`, and ack it only after
they returned, i.e. after the ClickHouse insert and the dead-lettering of any malformed
message have both succeeded. A failed insert naks the batch with a growing delay; after
MAX_DELIVER attempts nats-server's advisory (`dead_letter_after_max_deliveries`) sends
it to the dead-letter stream. Nothing is acked that is not stored or dead-lettered.

The ops verbs (query, export, verify, usage) are all tenant-scoped: the shared intake
(shared.handlers' Rpc entries) refuses a subject whose tenant token is invalid or differs
from the body's tenant_id before any SQL runs; the SQL binds every value as a parameter
(queries.py, export.py, verify.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from faststream.exceptions import NackMessage
from faststream.nats import ConsumerConfig, NatsBroker, NatsMessage
from nats.aio.msg import Msg
from pydantic import ValidationError

from services.audit import deadletter, export, queries
from services.audit.adapters import AuditStore
from services.audit.anchors import HeadAnchors
from services.audit.consumer import BatchConsumer
from services.audit.ingest import ParsedBatch, parse_batch
from services.audit.lease import WriterLease
from services.audit.settings import AuditSettings
from services.audit.verify import walk_chain
from services.audit.writer import AuditWriter
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import durable_config
from shared.intake import error_reply, reply_ok
from shared.logging import get_logger
from shared.messages.audit import (
    AuditEventType,
    AuditExportPage,
    AuditPage,
    AuditRecorded,
    AuditVerified,
    ExportAudit,
    QueryAudit,
    QueryUsage,
    UsageReport,
    VerifyAudit,
)
from shared.messages.base import Envelope, ErrorCode, ErrorInfo
from shared.messages.metering import CostRecorded
from shared.service import Handlers, Rpc, Subscriber

if TYPE_CHECKING:
    from shared.metrics import ServiceMetrics

SERVICE = "audit"
AUDIT_CONSUMER = "audit-audit-events"
COST_CONSUMER = "audit-cost-events"
# The batch consumers and the subjects they filter on.
BATCH_CONSUMERS = {
    AUDIT_CONSUMER: subjects.ALL_AUDIT_EVENTS,
    COST_CONSUMER: subjects.ALL_COST_EVENTS,
}
# Batches a consumer may hold unacked at once (see consumer_config).
PIPELINE_BATCHES = 3
# Room left in a reply for the envelope around the rows.
REPLY_HEADROOM_BYTES = 16_384

E = TypeVar("E", bound=Envelope)

log = get_logger("tenantry.audit")


@dataclass(frozen=True)
class Deps:
    store: AuditStore
    writer: AuditWriter
    trail: AuditTrail
    broker: NatsBroker
    settings: AuditSettings
    lease: WriterLease | None = None
    anchors: HeadAnchors | None = None
    # Started by bootstrap; stopped in drain(), before the lease goes.
    consumers: Sequence[BatchConsumer[Any]] = ()
    owns_store: bool = False  # opened by bootstrap (not a test's), so closed at stop
    # The process's /metrics (None when it serves none): the batch consumers bypass
    # FastStream's middleware, so their batches are timed here.
    metrics: ServiceMetrics | None = None

    async def drain(self) -> None:
        # Still connected: the batches in hand are written and acked before the lease
        # is handed over, so its next holder never writes the same batch concurrently.
        for consumer in self.consumers:
            await consumer.stop()
        if self.lease is not None:
            await self.lease.release()

    async def close(self) -> None:
        # chDB allows one engine per process: close it so the process (or a test) can
        # open it again, here or at another path.
        if self.owns_store:
            await self.store.close()


# --- batch ingest (the consumers' handlers) ---


def retry_delay(messages: Sequence[Msg]) -> float:
    """Back off 2, 4, 8, 16 s: rides out a ClickHouse restart before MAX_DELIVER is spent."""
    delivered = max((m.metadata.num_delivered or 1) for m in messages)
    return min(30.0, 2.0**delivered)


def consumer_config(settings: AuditSettings) -> ConsumerConfig:
    """Room for the batch being fetched, the one queued and the one being written:
    at JetStream's default max_ack_pending (1,000) a fetch of more never fills."""
    return replace(
        durable_config(settings.ack_wait_s), max_ack_pending=PIPELINE_BATCHES * settings.batch_size
    )


async def store_batch(
    deps: Deps,
    messages: Sequence[Msg],
    event_type: type[E],
    write: Callable[[Sequence[E]], Awaitable[int]],
) -> None:
    await store_parsed(deps, messages, parse_batch(messages, event_type), event_type, write)


async def store_parsed(
    deps: Deps,
    messages: Sequence[Msg],
    parsed: ParsedBatch[Msg, E],
    event_type: type[E],
    write: Callable[[Sequence[E]], Awaitable[int]],
) -> None:
    """Write what parse_batch found, then dead-letter what it refused."""
    if deps.lease is not None:
        # A writer that lost the lease is stopping: refuse to write (the batch is
        # nacked and redelivered to the lease's new holder).
        deps.lease.check()
    try:
        written = await write(parsed.events)
    except Exception as exc:
        delay = retry_delay(messages)
        log.warning(
            "insert.failed",
            event_type=event_type.__name__,
            rows=len(parsed.events),
            retry_in_s=delay,
            exc_info=True,
        )
        raise NackMessage(delay=delay) from exc
    for rejected in parsed.rejected:
        meta = rejected.message.metadata
        await deadletter.dead_letter(
            deps.broker,
            subject=rejected.message.subject,
            data=rejected.message.data,
            headers=rejected.message.headers,
            stream=meta.stream or subjects.EVENTS_STREAM,
            consumer=meta.consumer or "",
            sequence=meta.sequence.stream if meta.sequence else 0,
            reason=rejected.reason,
        )
    if written < len(parsed.events):
        # A redelivery of rows stored before a crash or a lost ack: skipped, not doubled.
        log.info(
            "batch.already_stored",
            event_type=event_type.__name__,
            skipped=len(parsed.events) - written,
            written=written,
        )
    log.debug(
        "batch.stored",
        event_type=event_type.__name__,
        rows=written,
        already_stored=len(parsed.events) - written,
        dead_lettered=len(parsed.rejected),
        duplicates=parsed.duplicates,
    )


async def _observed(deps: Deps, batch: Sequence[Msg], work: Awaitable[None]) -> None:
    """Time a batch as one handling (as the FastStream middleware times a batch): its
    first message's subject pattern, and no per-tenant series (a batch holds many)."""
    if deps.metrics is None or not batch:
        await work
        return
    start = time.perf_counter()
    try:
        await work
    except Exception:
        deps.metrics.observe(batch[0].subject, time.perf_counter() - start, False, False)
        raise
    deps.metrics.observe(batch[0].subject, time.perf_counter() - start, True, False)


async def store_audit(
    batch: list[Msg], parsed: ParsedBatch[Msg, AuditRecorded], deps: Deps
) -> None:
    write = store_parsed(deps, batch, parsed, AuditRecorded, deps.writer.write_audit)
    await _observed(deps, batch, write)


async def store_cost(batch: list[Msg], parsed: ParsedBatch[Msg, CostRecorded], deps: Deps) -> None:
    write = store_parsed(deps, batch, parsed, CostRecorded, deps.writer.write_cost)
    await _observed(deps, batch, write)


# --- subscribers and verbs (the table) ---


async def dead_letter_after_max_deliveries(msg: NatsMessage, deps: Deps) -> None:
    try:
        advisory = deadletter.MaxDeliveriesAdvisory.model_validate_json(msg.body)
    except ValidationError:
        log.warning("deadletter.advisory_unreadable", subject=msg.raw_message.subject)
        return
    await deadletter.on_advisory(deps.broker, advisory)


def _budget(deps: Deps) -> int:
    return deps.broker.connection.max_payload - REPLY_HEADROOM_BYTES


async def query(msg: QueryAudit, deps: Deps) -> AuditPage:
    rows, total = await queries.audit_page(deps.store, msg, _budget(deps))
    return reply_ok(AuditPage, msg, rows=rows, total=total)


async def export_page(msg: ExportAudit, deps: Deps) -> AuditExportPage:
    if msg.after_occurred_at is None:
        # Who took a copy of the trail is itself audit-worthy; once per export.
        await deps.trail.record_for(
            msg,
            event_type=AuditEventType.DATA_ACCESS,
            action="audit.export",
            resource_type="audit_trail",
            details={
                "since": msg.since.isoformat() if msg.since else None,
                "until": msg.until.isoformat() if msg.until else None,
            },
        )
    rows, done = await export.export_page(deps.store, msg, _budget(deps))
    return reply_ok(AuditExportPage, msg, rows=rows, done=done)


async def verify(msg: VerifyAudit, deps: Deps) -> AuditVerified:
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


async def usage(msg: QueryUsage, deps: Deps) -> UsageReport:
    month = msg.month or queries.current_month()
    try:
        queries.month_bounds(month)
    except ValueError as exc:
        info = ErrorInfo(code=ErrorCode.MALFORMED_REQUEST, message=f"month {month}: {exc}")
        return error_reply(UsageReport, msg, info)
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


HANDLERS: Handlers[Deps] = Handlers(
    SERVICE,
    rpcs=(
        Rpc("query", QueryAudit, AuditPage, query),
        Rpc("export", ExportAudit, AuditExportPage, export_page),
        Rpc("verify", VerifyAudit, AuditVerified, verify),
        Rpc("usage", QueryUsage, UsageReport, usage),
    ),
    subscribers=(
        # A queue group: with several audit replicas each advisory is handled once.
        Subscriber(
            subjects.MAX_DELIVERIES_ADVISORY, dead_letter_after_max_deliveries, queue=SERVICE
        ),
    ),
)
