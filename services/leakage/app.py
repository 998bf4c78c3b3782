"""leakage's bootstrap: settings, broker, tenant directory and its KV feed, detectors."""

from __future__ import annotations

from collections.abc import Sequence

from services.leakage.adapters import KvTenantFeed
from services.leakage.detectors import Detector, ForeignChunkDetector, ForeignTenantDetector
from services.leakage.directory import TenantDirectory
from services.leakage.handlers import SERVICE, Deps, build_router
from services.leakage.scanner import Scanner
from services.leakage.secret_patterns import SecretDetector
from services.leakage.settings import LeakageSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.service import Service


def default_detectors(directory: TenantDirectory) -> list[Detector]:
    return [ForeignTenantDetector(directory), ForeignChunkDetector(), SecretDetector()]


def bootstrap(
    settings: LeakageSettings | None = None,
    *,
    directory: TenantDirectory | None = None,
    detectors: Sequence[Detector] | None = None,
    watch_registry: bool = True,
) -> Service:
    """`directory` lets tests see (or pre-fill) what the service knows about tenants;
    `watch_registry=False` skips the KV feed for a fixed, pre-filled directory."""
    settings = settings or LeakageSettings()
    directory = directory if directory is not None else TenantDirectory()
    broker = make_broker(settings, SERVICE)
    scanner = Scanner(detectors if detectors is not None else default_detectors(directory))
    service = Service(SERVICE, settings, broker)
    feeds: list[KvTenantFeed] = []

    async def open_feed() -> None:
        # Before the subscribers start, so the first scan already knows every tenant.
        feed = KvTenantFeed(broker.connection.jetstream(), directory)
        await feed.start(settings.registry_load_timeout_s)
        feeds.append(feed)

    async def close_feed() -> None:
        while feeds:
            await feeds.pop().stop()

    if watch_registry:
        service.on_start.append(open_feed)
        service.on_stop.append(close_feed)
    broker.include_router(build_router(Deps(scanner=scanner, trail=AuditTrail(broker, SERVICE))))
    return service
