"""audit's bootstrap: settings, broker, writer lease, ClickHouse store (schema applied at
start), router."""

from __future__ import annotations

import os
import signal
from typing import Any

from services.audit.adapters import AuditStore, ClickHouseStore
from services.audit.anchors import KvHeadAnchors
from services.audit.consumer import BatchConsumer
from services.audit.deps import SERVICE, Deps
from services.audit.handlers import batch_consumers, build_router, configure_consumers
from services.audit.lease import WriterLease
from services.audit.retention import RetentionPolicy, kv_tier_lookup
from services.audit.rows import COST_TABLE
from services.audit.settings import AuditSettings
from services.audit.writer import AuditWriter
from shared.audit import AuditTrail
from shared.bus import TENANTS_BUCKET, make_broker
from shared.service import Service


def _stop_process() -> None:
    # Lost the writer lease: stop gracefully (run() handles SIGTERM); an orchestrator
    # restarts the process, which then waits as a standby.
    os.kill(os.getpid(), signal.SIGTERM)


def bootstrap(
    settings: AuditSettings | None = None,
    *,
    store: AuditStore | None = None,
    single_writer_lease: bool = True,
) -> Service:
    settings = settings or AuditSettings()
    broker = make_broker(settings, SERVICE)
    retention = RetentionPolicy(settings.audit_retention_days, settings.audit_retention_by_tier)
    deps = Deps(
        # Opened in on_start, before any subscriber runs.
        store=store,  # type: ignore[arg-type]
        writer=AuditWriter(store, retention) if store else None,  # type: ignore[arg-type]
        lease=None,
        anchors=None,
        trail=AuditTrail(broker, SERVICE),
        broker=broker,
        settings=settings,
    )
    service = Service(SERVICE, settings, broker)
    owns_store = store is None

    async def take_lease() -> None:
        js = broker.connection.jetstream()
        retention.use_lookup(kv_tier_lookup(await js.key_value(TENANTS_BUCKET)))
        deps.anchors = await KvHeadAnchors.open(js)
        if deps.writer is not None:
            deps.writer = AuditWriter(deps.store, retention, deps.anchors)
        if single_writer_lease:
            deps.lease = await WriterLease.open(js, settings.writer_lease_s, _stop_process)
            await deps.lease.acquire()  # a standby waits here, before opening anything
        await configure_consumers(js, settings)

    async def open_store() -> None:
        if deps.store is None:
            # Only cost_events' TTL is table-wide; audit rows carry their own retention.
            retention_days = {COST_TABLE: settings.cost_retention_days}
            deps.store = await ClickHouseStore.open(
                settings.dsn(), settings.schema_dir, retention_days
            )
            deps.writer = AuditWriter(deps.store, retention, deps.anchors)

    async def close_store() -> None:
        # chDB allows one engine per process: close it so the process (or a test) can
        # open it again, here or at another path.
        if owns_store and deps.store is not None:
            await deps.store.close()
            deps.store = None  # type: ignore[assignment]

    async def release_lease() -> None:
        if deps.lease is not None:
            await deps.lease.release()

    consumers: list[BatchConsumer[Any]] = []

    async def start_consumers() -> None:
        consumers.extend(batch_consumers(deps))  # on the connection made at start
        for consumer in consumers:
            await consumer.start()

    async def stop_consumers() -> None:
        # Before the lease goes: the batches in hand are written and acked first.
        for consumer in consumers:
            await consumer.stop()

    service.on_start += [take_lease, open_store, start_consumers]
    # Stop order is reversed: close the store, then hand the lease over.
    service.on_drained += [stop_consumers, release_lease]  # need the bus: before it closes
    service.on_stop.append(close_store)
    broker.include_router(build_router(deps))
    return service
