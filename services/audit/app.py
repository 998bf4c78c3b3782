"""audit's composition root: the writer lease, the KV head anchors, the ClickHouse store
(schema applied at open), the writer and the batch consumers."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from services.audit.adapters import AuditStore, ClickHouseStore
from services.audit.anchors import KvHeadAnchors
from services.audit.consumer import BatchConsumer
from services.audit.handlers import (
    AUDIT_CONSUMER,
    BATCH_CONSUMERS,
    COST_CONSUMER,
    HANDLERS,
    SERVICE,
    Deps,
    consumer_config,
    store_audit,
    store_cost,
)
from services.audit.ingest import ParsedBatch, parse_batch
from services.audit.lease import WriterLease
from services.audit.retention import RetentionPolicy, kv_tier_lookup
from services.audit.rows import COST_TABLE
from services.audit.settings import AuditSettings
from services.audit.writer import AuditWriter
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import TENANTS_BUCKET, make_broker, pull_inbox
from shared.messages.audit import AuditRecorded
from shared.messages.metering import CostRecorded
from shared.service import Service, compose

if TYPE_CHECKING:
    from shared.metrics import ServiceMetrics


def _stop_process() -> None:
    # Lost the writer lease: stop gracefully (run() handles SIGTERM); an orchestrator
    # restarts the process, which then waits as a standby.
    os.kill(os.getpid(), signal.SIGTERM)


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

    async def write_audit(batch: list[Msg], parsed: ParsedBatch[Msg, AuditRecorded]) -> None:
        await store_audit(batch, parsed, deps)

    def parse_cost(batch: list[Msg]) -> ParsedBatch[Msg, CostRecorded]:
        return parse_batch(batch, CostRecorded)

    async def write_cost(batch: list[Msg], parsed: ParsedBatch[Msg, CostRecorded]) -> None:
        await store_cost(batch, parsed, deps)

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
        consumer(AUDIT_CONSUMER, parse_audit, write_audit),
        consumer(COST_CONSUMER, parse_cost, write_cost),
    ]


async def bootstrap(
    settings: AuditSettings,
    broker: NatsBroker,
    *,
    store: AuditStore | None = None,
    single_writer_lease: bool = True,
    metrics: ServiceMetrics | None = None,
) -> Deps:
    """On a connected broker: take the writer lease (a standby waits here, before opening
    the store), open the store unless one is given, start the batch consumers, and return
    audit's Deps (which stop the consumers and release the lease when drained, and close
    a store they opened)."""
    js = broker.connection.jetstream()
    retention = RetentionPolicy(settings.audit_retention_days, settings.audit_retention_by_tier)
    retention.use_lookup(kv_tier_lookup(await js.key_value(TENANTS_BUCKET)))
    anchors = await KvHeadAnchors.open(js)
    lease = None
    if single_writer_lease:
        lease = await WriterLease.open(js, settings.writer_lease_s, _stop_process)
        await lease.acquire()  # a standby waits here, before opening anything
    await configure_consumers(js, settings)
    owns_store = store is None
    if store is None:
        # Only cost_events' TTL is table-wide; audit rows carry their own retention.
        retention_days = {COST_TABLE: settings.cost_retention_days}
        store = await ClickHouseStore.open(settings.dsn(), settings.schema_dir, retention_days)
    deps = Deps(
        store=store,
        writer=AuditWriter(store, retention, anchors),
        trail=AuditTrail(broker, SERVICE),
        broker=broker,
        settings=settings,
        lease=lease,
        anchors=anchors,
        owns_store=owns_store,
        metrics=metrics,
    )
    # Started last, on the connection made at start: nothing is written before the
    # store and the lease are in place. The consumers hold the Deps built just above.
    deps = replace(deps, consumers=tuple(batch_consumers(deps)))
    for consumer in deps.consumers:
        await consumer.start()
    return deps


def make_service(
    settings: AuditSettings | None = None,
    *,
    store: AuditStore | None = None,
    single_writer_lease: bool = True,
) -> Service:
    settings = settings or AuditSettings()
    broker = make_broker(settings, SERVICE)

    async def start() -> Deps:
        # service.metrics is set by shared.health before the service starts (or not
        # at all when it serves no /metrics).
        return await bootstrap(
            settings,
            broker,
            store=store,
            single_writer_lease=single_writer_lease,
            metrics=service.metrics,
        )

    service = compose(SERVICE, settings, broker, HANDLERS, start)
    return service
