"""audit's bootstrap: settings, broker, ClickHouse store (schema applied at start), router."""

from __future__ import annotations

from services.audit.adapters import AuditStore, ClickHouseStore
from services.audit.handlers import SERVICE, Deps, build_router
from services.audit.rows import AUDIT_TABLE, COST_TABLE
from services.audit.settings import AuditSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.service import Service


def bootstrap(settings: AuditSettings | None = None, *, store: AuditStore | None = None) -> Service:
    settings = settings or AuditSettings()
    broker = make_broker(settings, SERVICE)
    deps = Deps(
        # Opened in on_start, before any subscriber runs.
        store=store,  # type: ignore[arg-type]
        trail=AuditTrail(broker, SERVICE),
        broker=broker,
        settings=settings,
    )
    service = Service(SERVICE, settings, broker)
    owns_store = store is None

    async def open_store() -> None:
        if deps.store is None:
            retention = {
                AUDIT_TABLE: settings.audit_retention_days,
                COST_TABLE: settings.cost_retention_days,
            }
            deps.store = await ClickHouseStore.open(settings.dsn(), settings.schema_dir, retention)

    async def close_store() -> None:
        # chDB allows one engine per process: close it so the process (or a test) can
        # open it again, here or at another path.
        if owns_store and deps.store is not None:
            await deps.store.close()
            deps.store = None  # type: ignore[assignment]

    service.on_start.append(open_store)
    service.on_stop.append(close_store)
    broker.include_router(build_router(deps))
    return service
