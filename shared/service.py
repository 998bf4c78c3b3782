"""The runtime every service shares: start-up order, request/reply handlers, signals."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import uvloop
from faststream.nats import NatsBroker, NatsMessage

from shared import subjects
from shared.bus import ensure_topology
from shared.grants import GRANTS
from shared.handlers import Handlers, HasTrail, Rpc, Subscriber
from shared.intake import reply_ok, summarise_validation
from shared.logging import configure_logging, get_logger
from shared.natscompat import patch_pull_fetch_timeouts
from shared.settings import TenantrySettings

if TYPE_CHECKING:
    from shared.metrics import ServiceMetrics

__all__ = [
    "Handlers",
    "Rpc",
    "Service",
    "Subscriber",
    "compose",
    "reply_ok",
    "run",
    "summarise_validation",
]

D = TypeVar("D", bound=HasTrail)
Hook = Callable[[], Awaitable[None]]

log = get_logger("tenantry.service")


@dataclass
class Service:
    """A broker plus the outside clients it opens at start and closes at stop."""

    name: str
    settings: TenantrySettings
    broker: NatsBroker
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    # Run after the subscribers stopped but while still connected (e.g. to release a
    # lease held in KV); on_stop hooks run after the connection is closed.
    on_drained: list[Hook] = field(default_factory=list)
    # The Deps a composed service's bootstrap built, once started (tests look inside).
    deps: object = None
    # The process's /metrics, set by shared.health before start (None when it serves
    # none): for work the FastStream middleware does not see (audit's batch consumers).
    metrics: ServiceMetrics | None = None

    async def start(self) -> None:
        patch_pull_fetch_timeouts()  # without it, pulled messages can arrive 30 s late
        self._add_health()
        await self.broker.connect()
        grant = GRANTS.get(self.name)
        await ensure_topology(
            self.broker.connection.jetstream(),
            streams=grant.streams if grant else None,
            buckets=(*grant.buckets, *grant.reads_buckets) if grant else None,
        )
        for hook in self.on_start:
            await hook()
        # Subscribers start last, so no message arrives before the dependencies are ready.
        await self.broker.start()
        # nats-py's flush() writes its PING ahead of SUB commands still buffered, so one
        # flush can return before the server knows our subscriptions (measured: 4-9 "no
        # responders" per 100 fresh starts). A second flush orders after them.
        await self.broker.connection.flush()
        await self.broker.connection.flush()
        log.info("service.started", service=self.name)

    def _add_health(self) -> None:
        # Every replica answers, so a launcher can wait until each service is ready.
        @self.broker.subscriber(subjects.health(self.name))
        async def health(_: NatsMessage) -> bytes:
            return self.name.encode()

    async def stop(self) -> None:
        for subscriber in self.broker.subscribers:
            await subscriber.stop()  # no new messages; in-flight handlers finish
        for hook in self.on_drained:
            await hook()
        await self.broker.stop()
        for hook in reversed(self.on_stop):
            await hook()
        log.info("service.stopped", service=self.name)


def run(service: Service) -> None:
    """Entry point of `python -m services.<name>`: run until SIGINT/SIGTERM."""
    from shared import health  # the process's /livez, /readyz and /metrics endpoint

    configure_logging(service.settings.log_level, service.settings.log_format, service.name)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with health.serving(service) as status:
            await service.start()
            status.state = health.State.READY
            # Everything built at start-up (imports, SDK models, clients) lives as long as
            # the process: freeze it out of the garbage collector, whose full passes over it
            # took 30-100 ms (llm: 180k objects) and landed on whichever request was in flight.
            gc.collect()
            gc.freeze()
            try:
                await stop.wait()
            finally:
                status.state = health.State.STOPPING  # no new traffic while draining
                await service.stop()

    # uvloop: the event loop and socket I/O in C. Every request crosses seven processes
    # and ~14 NATS round trips, so loop overhead is paid many times over (bench: CPU
    # per request and added latency, bench/pipeline.py).
    uvloop.run(main())


@runtime_checkable
class Closes(Protocol):
    """Deps that own clients to close at stop implement this."""

    async def close(self) -> None: ...


@runtime_checkable
class Drains(Protocol):
    """Deps with work to finish while still connected (after the subscribers stopped,
    before the connection closes) implement this."""

    async def drain(self) -> None: ...


def compose(
    name: str,
    settings: TenantrySettings,
    broker: NatsBroker,
    handlers: Handlers[D],
    bootstrap: Callable[[], Awaitable[D]],
) -> Service:
    """A Service whose subscribers come from `handlers` and whose Deps `bootstrap` builds
    once connected (first of the start hooks); Deps that own clients are closed at stop,
    Deps with work to finish are drained while still connected."""
    service = Service(name, settings, broker)
    built: list[D] = []

    async def start() -> None:
        built.append(await bootstrap())
        service.deps = built[0]

    async def drain() -> None:
        if built and isinstance(built[0], Drains):
            await built[0].drain()

    async def stop() -> None:
        if built and isinstance(built[0], Closes):
            await built.pop().close()

    service.on_start.insert(0, start)
    service.on_drained.append(drain)
    service.on_stop.append(stop)
    # Registered now (not at start) so an unconnected service lists its subscribers.
    broker.include_router(handlers.router(lambda: built[0]))
    return service
