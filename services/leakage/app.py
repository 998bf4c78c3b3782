"""leakage's bootstrap: settings, broker, tenant directory, fingerprint index, their
feeds, and the detectors."""

from __future__ import annotations

from collections.abc import Sequence

from services.leakage.adapters import FingerprintFeed, KvTenantFeed
from services.leakage.canary import CanaryDetector
from services.leakage.content import MIN_MATCHES, FingerprintIndex, ForeignContentDetector
from services.leakage.detectors import Detector, ForeignChunkDetector, ForeignTenantDetector
from services.leakage.directory import TenantDirectory
from services.leakage.handlers import SERVICE, Deps, build_router
from services.leakage.pii import PiiDetector
from services.leakage.scanner import Scanner
from services.leakage.secret_patterns import SecretDetector
from services.leakage.settings import LeakageSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.canary import Canaries
from shared.service import Service


def default_detectors(
    directory: TenantDirectory,
    index: FingerprintIndex | None = None,
    canaries: Canaries | None = None,
    min_matches: int = MIN_MATCHES,
) -> list[Detector]:
    detectors: list[Detector] = [
        ForeignTenantDetector(directory),
        ForeignChunkDetector(),
        SecretDetector(),
        PiiDetector(),
    ]
    if index is not None:
        detectors.append(ForeignContentDetector(index, min_matches))
    if canaries is not None:
        detectors.append(CanaryDetector(canaries))
    return detectors


def bootstrap(
    settings: LeakageSettings | None = None,
    *,
    directory: TenantDirectory | None = None,
    index: FingerprintIndex | None = None,
    detectors: Sequence[Detector] | None = None,
    watch_registry: bool = True,
) -> Service:
    """`directory` and `index` let tests see (or pre-fill) what the service knows;
    `watch_registry=False` skips both feeds, for a fixed, pre-filled directory."""
    settings = settings or LeakageSettings()
    directory = directory if directory is not None else TenantDirectory()
    index = index if index is not None else FingerprintIndex()
    canaries = Canaries(settings.canary_secret.get_secret_value().encode())
    broker = make_broker(settings, SERVICE)
    if detectors is None:
        detectors = default_detectors(directory, index, canaries, settings.content_min_matches)
    scanner = Scanner(detectors, policies=directory.policy, canaries=canaries)
    service = Service(SERVICE, settings, broker)
    feeds: list[KvTenantFeed | FingerprintFeed] = []

    async def open_feeds() -> None:
        # Before the subscribers start, so the first scan already knows every tenant
        # and every document.
        js = broker.connection.jetstream()
        registry = KvTenantFeed(js, directory)
        await registry.start(settings.registry_load_timeout_s)
        feeds.append(registry)
        content = FingerprintFeed(js, index)
        await content.start(settings.fingerprint_load_timeout_s)
        feeds.append(content)

    async def close_feeds() -> None:
        while feeds:
            await feeds.pop().stop()

    if watch_registry:
        service.on_start.append(open_feeds)
        service.on_stop.append(close_feeds)
    broker.include_router(build_router(Deps(scanner=scanner, trail=AuditTrail(broker, SERVICE))))
    return service
