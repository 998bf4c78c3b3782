"""gateway's composition root: the bus-backed ports, the tenant config cache and the feed
that keeps it current."""

from __future__ import annotations

from faststream.nats import NatsBroker

from services.gateway.handlers import SERVICE, Deps, handlers
from services.gateway.ports import BusPorts, Ports
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import TenantCache
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.feeds import TenantConfigFeed
from shared.service import Service, compose


async def bootstrap(
    settings: GatewaySettings,
    broker: NatsBroker,
    *,
    ports: Ports | None = None,
    cache: TenantCache | None = None,
) -> Deps:
    """Open what the gateway uses (on a connected broker) and return its Deps.

    With the bus ports and `settings.config_cache` on, tenant configs are answered from
    a cache that a KV watch keeps current, loaded before any subscriber starts so the
    first request already hits it; `cache` lets tests see what the gateway knows."""
    feed = None
    if ports is None:
        if settings.config_cache:
            cache = cache if cache is not None else TenantCache()
            feed = TenantConfigFeed(
                broker.connection.jetstream(),
                cache.replace_all,
                cache.apply,
                keep_stale=False,  # a cache must not answer for configs it cannot keep current
            )
            await feed.start(settings.config_load_timeout_s)
        else:
            cache = None
        ports = BusPorts(broker, settings.rpc_timeout_s, settings.model_timeout_s, cache)
    return Deps(
        settings=settings,
        broker=broker,
        ports=ports,
        trail=AuditTrail(broker, SERVICE),
        cache=cache,
        feed=feed,
    )


def make_service(
    settings: GatewaySettings | None = None,
    *,
    ports: Ports | None = None,
    cache: TenantCache | None = None,
) -> Service:
    settings = settings or GatewaySettings()
    broker = make_broker(settings, SERVICE)
    table = handlers(settings, AuditTrail(broker, SERVICE))

    async def root() -> Deps:
        return await bootstrap(settings, broker, ports=ports, cache=cache)

    return compose(SERVICE, settings, broker, table, root)
