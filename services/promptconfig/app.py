"""promptconfig's composition root: the KV-backed tenant store and the saga's ports."""

from __future__ import annotations

from faststream.nats import NatsBroker

from services.promptconfig.adapters import KvTenantStore, TenantStore
from services.promptconfig.handlers import HANDLERS, SERVICE, Deps
from services.promptconfig.lifecycle import LifecyclePorts
from services.promptconfig.ports import BusLifecyclePorts
from services.promptconfig.settings import PromptConfigSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.service import Service, compose


async def bootstrap(
    settings: PromptConfigSettings,
    broker: NatsBroker,
    *,
    store: TenantStore | None = None,
    ports: LifecyclePorts | None = None,
) -> Deps:
    """Open what promptconfig uses (on a connected broker) and return its Deps."""
    return Deps(
        store=store or await KvTenantStore.open(broker.connection.jetstream()),
        trail=AuditTrail(broker, SERVICE),
        ports=ports or BusLifecyclePorts(broker, settings.rpc_timeout_s),
    )


def make_service(
    settings: PromptConfigSettings | None = None,
    *,
    store: TenantStore | None = None,
    ports: LifecyclePorts | None = None,
) -> Service:
    settings = settings or PromptConfigSettings()
    broker = make_broker(settings, SERVICE)
    return compose(
        SERVICE,
        settings,
        broker,
        HANDLERS,
        lambda: bootstrap(settings, broker, store=store, ports=ports),
    )
