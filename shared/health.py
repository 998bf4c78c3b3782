"""A service's HTTP endpoint for orchestrators and Prometheus: /livez, /readyz, /metrics.

Why HTTP and not an exec probe: Kubernetes and Prometheus both speak it natively, an
HTTP probe costs the service one tiny request (an exec probe would start a Python
interpreter in the container every period, ~50 ms of CPU each), and Prometheus needs
an HTTP port for /metrics anyway. `python -m shared.probe` wraps the same endpoint for
compose, whose healthchecks can only exec.

- /livez: the event loop answers (a stuck loop cannot serve this) and the service has
  not failed. A liveness failure means "restart me".
- /readyz: started, connected to NATS (a PING round trip within a second), every
  subscriber running, and each outside dependency the settings name answering: the
  Qdrant server for retrieval, the ClickHouse server for audit. Embedded stores live in
  the process, so they need no check. A readiness failure means "send me no traffic";
  it says which check failed, never a URL or a secret.

Off unless TENANTRY_HTTP_PORT is set: the embedded mode runs eight processes on one
machine, which need no ports of their own. A process that hosts several services
(shared.cohost) serves one endpoint reporting each of them (HealthGroup).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.service import Service

Check = Callable[[], Awaitable[None]]

CHECK_TIMEOUT_S = 1.0
log = get_logger("tenantry.health")


class State(StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


class CheckFailed(Exception):
    """A readiness check's answer; its message is shown to the prober, so no secrets."""


async def http_status(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> int:
    """Status code of GET url (HTTP/1.0, no body read): enough for /readyz and /ping."""
    parts = urlsplit(url)
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls else 80)
    path = parts.path or "/"

    async def get() -> int:
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
        fields = status_line.split()
        if len(fields) < 2 or not fields[1].isdigit():
            raise CheckFailed("not an HTTP answer")
        return int(fields[1])

    return await asyncio.wait_for(get(), timeout_s)


def _http_check(name: str, url: str) -> Check:
    async def check() -> None:
        try:
            status = await http_status(url)
        except (OSError, TimeoutError) as exc:
            raise CheckFailed(f"{name} unreachable ({type(exc).__name__})") from None
        if status != 200:
            raise CheckFailed(f"{name} answered {status}")

    return check


def dependency_checks(settings: object) -> dict[str, Check]:
    """Outside servers this service's settings point at (duck-typed: base settings have none)."""
    checks: dict[str, Check] = {}
    qdrant_url = getattr(settings, "qdrant_url", None)
    if qdrant_url is not None:
        checks["qdrant"] = _http_check("qdrant", str(qdrant_url).rstrip("/") + "/readyz")
    dsn = getattr(settings, "dsn", None)
    if callable(dsn):
        parts = urlsplit(str(dsn()))
        if parts.scheme in ("http", "https"):
            # /ping needs no credentials, so the URL built here holds none.
            port = f":{parts.port}" if parts.port else ""
            url = f"{parts.scheme}://{parts.hostname}{port}/ping"
            checks["clickhouse"] = _http_check("clickhouse", url)
    return checks


@dataclass
class Health:
    """What /livez and /readyz report for one service process."""

    service: Service
    state: State = State.STARTING
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.service.name

    @classmethod
    def of(cls, service: Service) -> Health:
        health = cls(service)
        health.checks = {"nats": health._nats, **dependency_checks(service.settings)}
        return health

    async def _nats(self) -> None:
        broker = self.service.broker
        try:
            nc = broker.connection
        except Exception:  # FastStream raises when not connected yet
            raise CheckFailed("nats not connected") from None
        if not nc.is_connected:
            raise CheckFailed("nats not connected")
        try:
            await nc.flush(timeout=1)
        except Exception:
            raise CheckFailed("nats does not answer") from None
        stopped = [s for s in broker.subscribers if not s.running]
        if stopped:
            raise CheckFailed(f"{len(stopped)} subscriber(s) not running")

    def live(self) -> tuple[bool, dict[str, Any]]:
        return self.state is not State.FAILED, {"state": self.state.value}

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        if self.state is not State.READY:
            return False, {"state": self.state.value}
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), CHECK_TIMEOUT_S + 0.5) for n in names),
            return_exceptions=True,
        )
        report: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if result is None:
                report[name] = "ok"
            elif isinstance(result, CheckFailed):
                report[name] = str(result)
            else:
                report[name] = f"failed ({type(result).__name__})"
        ok = all(v == "ok" for v in report.values())
        return ok, {"state": self.state.value, "checks": report}


@dataclass
class HealthGroup:
    """The health of several services hosted in one process (shared.cohost): alive while
    none has failed, ready when every one is; the report holds each service's own."""

    members: list[Health]

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.members)

    def set_state(self, state: State) -> None:
        for member in self.members:
            member.state = state

    def live(self) -> tuple[bool, dict[str, Any]]:
        reports = {m.name: m.live() for m in self.members}
        ok = all(alive for alive, _ in reports.values())
        return ok, {"services": {name: report for name, (_, report) in reports.items()}}

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        results = await asyncio.gather(*(m.ready() for m in self.members))
        ok = all(ready for ready, _ in results)
        services = {m.name: report for m, (_, report) in zip(self.members, results, strict=True)}
        return ok, {"services": services}


class Reporter(Protocol):
    """What the endpoint reports: one service (Health) or several in one process."""

    @property
    def name(self) -> str: ...

    def live(self) -> tuple[bool, dict[str, Any]]: ...

    async def ready(self) -> tuple[bool, dict[str, Any]]: ...


Metrics = Callable[[], tuple[bytes, str]]


class HealthServer:
    """asyncio HTTP/1.0 server on the service's own loop (so /livez proves the loop runs)."""

    def __init__(self, health: Reporter, metrics: Metrics | None = None) -> None:
        self.health = health
        self.metrics = metrics
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("health.listening", port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            # Drain the headers; nothing in them matters here.
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass
            fields = request.decode("latin-1").split()
            path = fields[1].split("?")[0] if len(fields) >= 2 else ""
            status, body, ctype = await self._route(fields[0] if fields else "", path)
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a prober that went away
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> tuple[str, bytes, str]:
        if method != "GET":
            return "405 Method Not Allowed", b"", "text/plain"
        if path == "/livez":
            ok, report = self.health.live()
        elif path == "/readyz":
            ok, report = await self.health.ready()
        elif path == "/metrics" and self.metrics is not None:
            body, ctype = self.metrics()
            return "200 OK", body, ctype
        else:
            return "404 Not Found", b"", "text/plain"
        report["service"] = self.health.name
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, json.dumps(report).encode(), "application/json"


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[Health]:
    """The process's health and metrics endpoint, and its tracing, around a service's life.

    Started before the service connects, so /livez answers during a slow start (KV
    replay, schema) while /readyz still says "starting"; stopped after it has drained.
    """
    from shared import tracing
    from shared.metrics import ServiceMetrics

    health = Health.of(service)
    settings = service.settings
    server: HealthServer | None = None
    traces = None
    if tracing.enabled():
        traces = tracing.provider_for(service.name)
        tracing.instrument(service, traces)  # before the broker starts its subscribers
    if settings.http_port is not None:
        metrics = ServiceMetrics(service.name)
        metrics.instrument(service)
        server = HealthServer(health, metrics.exposition)
        await server.start(settings.http_host, settings.http_port)
    try:
        yield health
    except BaseException:
        health.state = State.FAILED
        raise
    finally:
        if server is not None:
            await server.stop()
        if traces is not None:
            tracing.shutdown(traces)
