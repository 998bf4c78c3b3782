"""gateway's bootstrap: settings, broker, the bus-backed ports, the tenant config cache
and its feed, router."""

from __future__ import annotations

from services.gateway.handlers import SERVICE, Deps, build_router
from services.gateway.ports import BusPorts, Ports
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import TenantCache
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.feeds import TenantConfigFeed
from shared.service import Service


def bootstrap(
    settings: GatewaySettings | None = None,
    *,
    ports: Ports | None = None,
    cache: TenantCache | None = None,
) -> Service:
    """`cache` lets tests see what the gateway knows; it is fed (and used) only with
    the bus ports and `settings.config_cache` on."""
    settings = settings or GatewaySettings()
    broker = make_broker(settings, SERVICE)
    service = Service(SERVICE, settings, broker)
    if ports is None:
        if settings.config_cache:
            cache = cache if cache is not None else TenantCache()
            _follow_configs(service, cache, settings.config_load_timeout_s)
        else:
            cache = None
        ports = BusPorts(broker, settings.rpc_timeout_s, settings.model_timeout_s, cache)
    deps = Deps(settings=settings, broker=broker, ports=ports, trail=AuditTrail(broker, SERVICE))
    broker.include_router(build_router(deps))
    return service


def _follow_configs(service: Service, cache: TenantCache, load_timeout_s: float) -> None:
    feeds: list[TenantConfigFeed] = []

    async def open_feed() -> None:
        # Before the subscribers start, so the first request already hits the cache.
        feed = TenantConfigFeed(
            service.broker.connection.jetstream(),
            cache.replace_all,
            cache.apply,
            keep_stale=False,  # a cache must not answer for configs it cannot keep current
        )
        await feed.start(load_timeout_s)
        feeds.append(feed)

    async def close_feed() -> None:
        while feeds:
            await feeds.pop().stop()

    service.on_start.append(open_feed)
    service.on_stop.append(close_feed)
