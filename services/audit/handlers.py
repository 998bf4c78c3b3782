"""audit's subscribers: batched event ingest, dead-letter advisories, scoped queries.

Ack-after-insert: the ingest subscribers use AckPolicy.NACK_ON_ERROR, under which
FastStream acks the whole batch only after the handler has returned (in the
acknowledgement middleware's exit), i.e. after the ClickHouse insert and the
dead-lettering of any malformed message have both succeeded. A failed insert nacks the
batch with a growing delay; after MAX_DELIVER attempts nats-server's advisory sends
it to the dead-letter stream. Nothing is acked that is not stored or dead-lettered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.exceptions import NackMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import NatsBroker, NatsRouter, PullSub
from faststream.params import NoCast
from nats.aio.msg import Msg

from services.audit import deadletter, queries
from services.audit.adapters import AuditStore
from services.audit.ingest import parse_batch
from services.audit.rows import Row, audit_row, cost_row
from services.audit.settings import AuditSettings
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import durable_config, stream
from shared.logging import get_logger
from shared.messages.audit import AuditPage, AuditRecorded, QueryAudit, QueryUsage, UsageReport
from shared.messages.base import Envelope, ErrorCode, ErrorInfo
from shared.messages.metering import CostRecorded
from shared.service import error_reply, reply_ok, rpc

SERVICE = "audit"
AUDIT_CONSUMER = "audit-audit-events"
COST_CONSUMER = "audit-cost-events"
# Room left in a reply for the envelope around the rows.
REPLY_HEADROOM_BYTES = 16_384

E = TypeVar("E", bound=Envelope)
Handler = Callable[..., Awaitable[None]]

log = get_logger("tenantry.audit")


@dataclass
class Deps:
    store: AuditStore
    trail: AuditTrail
    broker: NatsBroker
    settings: AuditSettings


async def raw_batch(message: StreamMessage[list[Msg]]) -> list[Msg]:
    """Decoder that hands the handler the raw messages: FastStream's own decoder parses
    the JSON of the whole batch up front, so one malformed body would fail all of it."""
    return message.raw_message


def retry_delay(messages: Sequence[Msg]) -> float:
    """Back off 2, 4, 8, 16 s: rides out a ClickHouse restart before MAX_DELIVER is spent."""
    delivered = max((m.metadata.num_delivered or 1) for m in messages)
    return min(30.0, 2.0**delivered)


async def store_batch(
    deps: Deps,
    messages: Sequence[Msg],
    event_type: type[E],
    to_row: Callable[[E], Row],
    insert: Callable[[Sequence[Row]], Awaitable[None]],
) -> None:
    parsed = parse_batch(messages, event_type, to_row)
    try:
        await insert(parsed.rows)
    except Exception as exc:
        delay = retry_delay(messages)
        log.warning(
            "insert.failed",
            event_type=event_type.__name__,
            rows=len(parsed.rows),
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
    log.debug(
        "batch.stored",
        event_type=event_type.__name__,
        rows=len(parsed.rows),
        dead_lettered=len(parsed.rejected),
        duplicates=parsed.duplicates,
    )


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    def batch_subscriber(subject: str, durable: str) -> Callable[[Handler], Any]:
        return router.subscriber(
            subject,
            stream=stream(subjects.EVENTS_STREAM),
            durable=durable,
            config=durable_config(),
            pull_sub=PullSub(
                batch_size=deps.settings.batch_size,
                timeout=deps.settings.batch_timeout_s,
                batch=True,
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=raw_batch,
        )

    @batch_subscriber(subjects.ALL_AUDIT_EVENTS, AUDIT_CONSUMER)
    async def store_audit_events(batch: NoCast[list[Msg]]) -> None:
        await store_batch(deps, batch, AuditRecorded, audit_row, deps.store.insert_audit)

    @batch_subscriber(subjects.ALL_COST_EVENTS, COST_CONSUMER)
    async def store_cost_events(batch: NoCast[list[Msg]]) -> None:
        await store_batch(deps, batch, CostRecorded, cost_row, deps.store.insert_cost)

    # A queue group: with several audit replicas each advisory is handled once.
    @router.subscriber(subjects.MAX_DELIVERIES_ADVISORY, queue=SERVICE)
    async def dead_letter_after_max_deliveries(advisory: deadletter.MaxDeliveriesAdvisory) -> None:
        await deadletter.on_advisory(deps.broker, advisory)

    @rpc(router, SERVICE, "query", QueryAudit, AuditPage, deps.trail)
    async def query(msg: QueryAudit) -> AuditPage:
        budget = deps.broker.connection.max_payload - REPLY_HEADROOM_BYTES
        rows, total = await queries.audit_page(deps.store, msg, budget)
        return reply_ok(AuditPage, msg, rows=rows, total=total)

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
        by_model, audit_events = await queries.usage(deps.store, msg, month)
        return reply_ok(
            UsageReport,
            msg,
            month=month,
            requests=sum(m.requests for m in by_model),
            cost_nanousd=sum(m.cost_nanousd for m in by_model),
            audit_events=audit_events,
            by_model=by_model,
        )

    return router
