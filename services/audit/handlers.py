"""audit's subscribers: batched event ingest, dead-letter advisories, ops verbs.

Ack-after-insert: the two ingest consumers (consumer.BatchConsumer, built here by
`batch_consumers`) ack a batch only after `store_batch` has returned, i.e. after the
ClickHouse insert and the dead-lettering of any malformed message have both
succeeded. A failed insert naks the batch with a growing delay; after MAX_DELIVER
attempts nats-server's advisory sends it to the dead-letter stream. Nothing is acked
that is not stored or dead-lettered. The ops verbs (query, export, verify, usage) live
in verbs.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from faststream.exceptions import NackMessage
from faststream.nats import ConsumerConfig, NatsMessage, NatsRouter
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from services.audit import deadletter
from services.audit.consumer import BatchConsumer
from services.audit.deps import SERVICE, Deps
from services.audit.ingest import ParsedBatch, parse_batch
from services.audit.settings import AuditSettings
from services.audit.verbs import add_verbs
from shared import subjects
from shared.bus import durable_config, pull_inbox
from shared.logging import get_logger
from shared.messages.audit import AuditRecorded
from shared.messages.base import Envelope
from shared.messages.metering import CostRecorded

__all__ = ["SERVICE", "Deps", "batch_consumers", "build_router", "configure_consumers"]

AUDIT_CONSUMER = "audit-audit-events"
COST_CONSUMER = "audit-cost-events"
# Batches a consumer may hold unacked at once (see consumer_config).
PIPELINE_BATCHES = 3

E = TypeVar("E", bound=Envelope)

log = get_logger("tenantry.audit")


def retry_delay(messages: Sequence[Msg]) -> float:
    """Back off 2, 4, 8, 16 s: rides out a ClickHouse restart before MAX_DELIVER is spent."""
    delivered = max((m.metadata.num_delivered or 1) for m in messages)
    return min(30.0, 2.0**delivered)


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


# The batch consumers and the subjects they filter on.
BATCH_CONSUMERS = {
    AUDIT_CONSUMER: subjects.ALL_AUDIT_EVENTS,
    COST_CONSUMER: subjects.ALL_COST_EVENTS,
}


def consumer_config(settings: AuditSettings) -> ConsumerConfig:
    """Room for the batch being fetched, the one queued and the one being written:
    at JetStream's default max_ack_pending (1,000) a fetch of more never fills."""
    return replace(
        durable_config(settings.ack_wait_s), max_ack_pending=PIPELINE_BATCHES * settings.batch_size
    )


async def configure_consumers(js: JetStreamContext, settings: AuditSettings) -> None:
    """Create the batch consumers, or update ones made by an earlier start: nats-py's
    pull_subscribe binds to an existing durable as it is, so a larger batch_size (or a
    new ack_wait) would otherwise never reach a consumer created before it. Run before
    the consumers start."""
    for durable, subject in BATCH_CONSUMERS.items():
        config = replace(
            consumer_config(settings), name=durable, durable_name=durable, filter_subject=subject
        )
        await js.add_consumer(subjects.EVENTS_STREAM, config=config)


def batch_consumers(deps: Deps) -> list[BatchConsumer[Any]]:
    """The ingest consumers, on the broker's connection (start them once it is up)."""

    # Parsing runs in the consumer's pull task, so it overlaps the previous batch's insert.
    def parse_audit(batch: list[Msg]) -> ParsedBatch[Msg, AuditRecorded]:
        return parse_batch(batch, AuditRecorded)

    async def store_audit(batch: list[Msg], parsed: ParsedBatch[Msg, AuditRecorded]) -> None:
        await store_parsed(deps, batch, parsed, AuditRecorded, deps.writer.write_audit)

    def parse_cost(batch: list[Msg]) -> ParsedBatch[Msg, CostRecorded]:
        return parse_batch(batch, CostRecorded)

    async def store_cost(batch: list[Msg], parsed: ParsedBatch[Msg, CostRecorded]) -> None:
        await store_parsed(deps, batch, parsed, CostRecorded, deps.writer.write_cost)

    def consumer(durable: str, prepare: Any, handle: Any) -> BatchConsumer[Any]:
        return BatchConsumer(
            deps.broker.connection,
            stream=subjects.EVENTS_STREAM,
            durable=durable,
            inbox_prefix=pull_inbox(SERVICE).decode(),
            batch_size=deps.settings.batch_size,
            timeout_s=deps.settings.batch_timeout_s,
            prepare=prepare,
            handle=handle,
        )

    return [
        consumer(AUDIT_CONSUMER, parse_audit, store_audit),
        consumer(COST_CONSUMER, parse_cost, store_cost),
    ]


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    # A queue group: with several audit replicas each advisory is handled once.
    @router.subscriber(subjects.MAX_DELIVERIES_ADVISORY, queue=SERVICE)
    async def dead_letter_after_max_deliveries(msg: NatsMessage) -> None:
        try:
            advisory = deadletter.MaxDeliveriesAdvisory.model_validate_json(msg.body)
        except ValidationError:
            log.warning("deadletter.advisory_unreadable", subject=msg.raw_message.subject)
            return
        await deadletter.on_advisory(deps.broker, advisory)

    add_verbs(router, deps)
    return router
