"""leakage's composition root: the tenant directory and fingerprint index, the feeds
that keep them current, and the detectors."""

from __future__ import annotations

from collections.abc import Sequence

from faststream.nats import NatsBroker

from services.leakage.canary import CanaryDetector
from services.leakage.content import MIN_MATCHES, FingerprintIndex, ForeignContentDetector
from services.leakage.detectors import Detector, ForeignChunkDetector, ForeignTenantDetector
from services.leakage.directory import TenantDirectory
from services.leakage.feeds import FingerprintFeed, KvTenantFeed
from services.leakage.handlers import HANDLERS, SERVICE, Deps
from services.leakage.pii import PiiDetector
from services.leakage.scanner import Scanner
from services.leakage.secret_patterns import SecretDetector
from services.leakage.settings import LeakageSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.canary import Canaries
from shared.feeds import Feed
from shared.service import Service, compose


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


async def bootstrap(
    settings: LeakageSettings,
    broker: NatsBroker,
    *,
    directory: TenantDirectory | None = None,
    index: FingerprintIndex | None = None,
    detectors: Sequence[Detector] | None = None,
    watch_registry: bool = True,
) -> Deps:
    """Open leakage's feeds (on a connected broker) and return its Deps. `directory` and
    `index` let tests see (or pre-fill) what the service knows; `watch_registry=False`
    skips both feeds, for a fixed, pre-filled directory."""
    directory = directory if directory is not None else TenantDirectory()
    index = index if index is not None else FingerprintIndex()
    canaries = Canaries(settings.canary_secret.get_secret_value().encode())
    if detectors is None:
        detectors = default_detectors(directory, index, canaries, settings.content_min_matches)
    scanner = Scanner(detectors, policies=directory.policy, canaries=canaries)
    feeds: list[Feed] = []
    if watch_registry:
        # Loaded before the subscribers start, so the first scan already knows every
        # tenant and every document.
        js = broker.connection.jetstream()
        registry = KvTenantFeed(js, directory)
        await registry.start(settings.registry_load_timeout_s)
        feeds.append(registry)
        content = FingerprintFeed(js, index)
        try:
            await content.start(settings.fingerprint_load_timeout_s)
        except BaseException:
            await registry.stop()
            raise
        feeds.append(content)
    return Deps(scanner=scanner, trail=AuditTrail(broker, SERVICE), feeds=tuple(feeds))


def make_service(
    settings: LeakageSettings | None = None,
    *,
    directory: TenantDirectory | None = None,
    index: FingerprintIndex | None = None,
    detectors: Sequence[Detector] | None = None,
    watch_registry: bool = True,
) -> Service:
    settings = settings or LeakageSettings()
    broker = make_broker(settings, SERVICE)
    return compose(
        SERVICE,
        settings,
        broker,
        HANDLERS,
        lambda: bootstrap(
            settings,
            broker,
            directory=directory,
            index=index,
            detectors=detectors,
            watch_registry=watch_registry,
        ),
    )
