"""metering's bootstrap: settings, broker, price table, KV-backed store, router."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.metering.adapters import KvMeteringStore, MeteringStore
from services.metering.handlers import SERVICE, Deps, build_router
from services.metering.meter import Meter
from services.metering.pricing import DEFAULT_TABLE, PriceTable, load_price_table
from services.metering.settings import MeteringSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.messages.base import utcnow
from shared.service import Service


def bootstrap(
    settings: MeteringSettings | None = None,
    *,
    store: MeteringStore | None = None,
    prices: PriceTable | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Service:
    settings = settings or MeteringSettings()
    if prices is None:
        # Read the price file now: a bad one stops the service before it charges anyone.
        prices = (
            load_price_table(settings.price_table_path)
            if settings.price_table_path
            else DEFAULT_TABLE
        )
    broker = make_broker(settings, SERVICE)
    meter = Meter(
        store=store,  # type: ignore[arg-type]  # opened on start when not given
        prices=prices,
        reservation_ttl_s=settings.reservation_ttl_s,
        cas_attempts=settings.cas_attempts,
        clock=clock,
        tz=settings.zone(),
    )
    deps = Deps(meter=meter, trail=AuditTrail(broker, SERVICE), broker=broker)
    service = Service(SERVICE, settings, broker)

    async def open_store() -> None:
        if meter.store is None:
            meter.store = await KvMeteringStore.open(broker.connection.jetstream())

    service.on_start.append(open_store)
    broker.include_router(build_router(deps))
    return service
