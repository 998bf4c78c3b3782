"""metering's composition root: the price table, the KV-backed store and the Meter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from faststream.nats import NatsBroker

from services.metering.adapters import KvMeteringStore, MeteringStore
from services.metering.handlers import HANDLERS, SERVICE, Deps
from services.metering.meter import Meter
from services.metering.pricing import DEFAULT_TABLE, PriceTable, load_price_table
from services.metering.settings import MeteringSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.messages.base import utcnow
from shared.service import Service, compose


def price_table(settings: MeteringSettings) -> PriceTable:
    return (
        load_price_table(settings.price_table_path) if settings.price_table_path else DEFAULT_TABLE
    )


async def bootstrap(
    settings: MeteringSettings,
    broker: NatsBroker,
    *,
    store: MeteringStore | None = None,
    prices: PriceTable | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Deps:
    """Open the metering bucket (on a connected broker) and return metering's Deps."""
    meter = Meter(
        store=store
        if store is not None
        else await KvMeteringStore.open(broker.connection.jetstream()),
        prices=prices if prices is not None else price_table(settings),
        reservation_ttl_s=settings.reservation_ttl_s,
        cas_attempts=settings.cas_attempts,
        clock=clock,
        tz=settings.zone(),
    )
    return Deps(meter=meter, trail=AuditTrail(broker, SERVICE), broker=broker)


def make_service(
    settings: MeteringSettings | None = None,
    *,
    store: MeteringStore | None = None,
    prices: PriceTable | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Service:
    settings = settings or MeteringSettings()
    # Read the price file now: a bad one stops the service before it charges anyone.
    if prices is None:
        prices = price_table(settings)
    broker = make_broker(settings, SERVICE)
    return compose(
        SERVICE,
        settings,
        broker,
        HANDLERS,
        lambda: bootstrap(settings, broker, store=store, prices=prices, clock=clock),
    )
