"""gateway's bootstrap: settings, broker, the bus-backed ports, router."""

from __future__ import annotations

from services.gateway.handlers import SERVICE, Deps, build_router
from services.gateway.ports import BusPorts, Ports
from services.gateway.settings import GatewaySettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.service import Service


def bootstrap(settings: GatewaySettings | None = None, *, ports: Ports | None = None) -> Service:
    settings = settings or GatewaySettings()
    broker = make_broker(settings, SERVICE)
    deps = Deps(
        settings=settings,
        broker=broker,
        ports=ports or BusPorts(broker, settings.rpc_timeout_s, settings.model_timeout_s),
        trail=AuditTrail(broker, SERVICE),
    )
    broker.include_router(build_router(deps))
    return Service(SERVICE, settings, broker)
