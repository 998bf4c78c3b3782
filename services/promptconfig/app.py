"""promptconfig's bootstrap: settings, broker, KV-backed store, router."""

from __future__ import annotations

from services.promptconfig.adapters import KvTenantStore, TenantStore
from services.promptconfig.handlers import SERVICE, Deps, build_router
from services.promptconfig.settings import PromptConfigSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.service import Service


def bootstrap(
    settings: PromptConfigSettings | None = None, *, store: TenantStore | None = None
) -> Service:
    settings = settings or PromptConfigSettings()
    broker = make_broker(settings, SERVICE)
    deps = Deps(store=store, trail=AuditTrail(broker, SERVICE))  # type: ignore[arg-type]
    service = Service(SERVICE, settings, broker)

    async def open_store() -> None:
        if deps.store is None:
            deps.store = await KvTenantStore.open(broker.connection.jetstream())

    service.on_start.append(open_store)
    broker.include_router(build_router(deps))
    return service
