"""promptconfig's bootstrap: settings, broker, KV-backed store, router."""

from __future__ import annotations

from services.promptconfig.adapters import KvTenantStore, TenantStore
from services.promptconfig.handlers import SERVICE, Deps, build_router
from services.promptconfig.lifecycle import LifecyclePorts
from services.promptconfig.ports import BusLifecyclePorts
from services.promptconfig.settings import PromptConfigSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.service import Service


def bootstrap(
    settings: PromptConfigSettings | None = None,
    *,
    store: TenantStore | None = None,
    ports: LifecyclePorts | None = None,
) -> Service:
    settings = settings or PromptConfigSettings()
    broker = make_broker(settings, SERVICE)
    deps = Deps(
        store=store,  # type: ignore[arg-type]  # opened in on_start when not given
        trail=AuditTrail(broker, SERVICE),
        ports=ports or BusLifecyclePorts(broker, settings.rpc_timeout_s),
    )
    service = Service(SERVICE, settings, broker)

    async def open_store() -> None:
        if deps.store is None:
            deps.store = await KvTenantStore.open(broker.connection.jetstream())

    service.on_start.append(open_store)
    broker.include_router(build_router(deps))
    return service
