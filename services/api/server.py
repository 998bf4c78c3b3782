"""The HTTP server: uvicorn inside the service's own event loop, started by bootstrap and
stopped (in-flight requests finished) before the bus is drained."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette


class _Server(uvicorn.Server):
    """The service owns the signals (shared.service.run), not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """One Starlette app served on host:port; start() returns once it listens."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_level="warning", access_log=False
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if task.done():
                task.result()  # raises why it could not start (e.g. port in use)
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        self._task = task

    async def stop(self) -> None:
        """Finish in-flight requests, take no new ones; a second call does nothing."""
        task, self._task = self._task, None
        if task is not None:
            self._server.should_exit = True
            await task

    @property
    def port(self) -> int:
        """The port actually bound (the setting may be 0: any free port)."""
        for s in self._server.servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return 0
