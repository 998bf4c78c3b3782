"""api's bootstrap: the keys bucket, the gateway port and the HTTP server, all started
and stopped with the service (HTTP stops taking requests before the bus is drained)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from services.api.adapters import Gateway, KeyLookup
from services.api.handlers import SERVICE, Deps, build_app
from services.api.settings import ApiSettings
from shared.audit import AuditTrail
from shared.bus import API_KEYS_BUCKET, make_broker
from shared.logging import get_logger
from shared.service import Service

log = get_logger("tenantry.api")


class _Server(uvicorn.Server):
    """uvicorn inside the service's own event loop: the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bootstrap(settings: ApiSettings | None = None) -> Service:
    settings = settings or ApiSettings()
    broker = make_broker(settings, SERVICE)
    service = Service(SERVICE, settings, broker)
    running: list[tuple[_Server, asyncio.Task[None]]] = []

    async def open_door() -> None:
        nc = broker.connection
        gateway = Gateway(nc, settings.request_timeout_s)
        await gateway.start()
        keys = KeyLookup(await nc.jetstream().key_value(API_KEYS_BUCKET))
        deps = Deps(settings, keys, gateway, AuditTrail(broker, SERVICE))
        config = uvicorn.Config(
            build_app(deps),
            host=settings.api_host,
            port=settings.api_port,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start (e.g. port in use)
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        running.append((server, task))
        log.info("api.listening", host=settings.api_host, port=bound_port(server))

    async def close_door() -> None:
        while running:
            server, task = running.pop()
            server.should_exit = True  # finishes in-flight requests, takes no new ones
            await task

    service.on_start.append(open_door)
    service.on_drained.append(close_door)
    return service


def bound_port(server: uvicorn.Server) -> int:
    """The port actually bound (the setting may be 0: any free port)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return 0
