"""Several services in one process, for small installs: `python -m shared.cohost gateway,llm`
(or `all`). The embedded launcher runs it for TENANTRY_COHOST (shared.launcher).

Each hosted service is exactly the unit `python -m services.<name>` runs: its own Service
(broker, NATS connection, NATS user and password, subjects, subscribers), its own
settings and its own health. They share the process, one uvloop event loop, and one
/livez, /readyz, /metrics endpoint that reports each of them. Every service can still be
deployed alone; nothing in services/ knows whether it is co-hosted.

Settings: each service reads the process's environment as it would alone, with its own
variables on top: `TENANTRY_<SERVICE>__<NAME>` is `TENANTRY_<NAME>` for that service only
(`TENANTRY_GATEWAY__NATS_USER`, `TENANTRY_LLM__NATS_PASSWORD_FILE`, ...). Credentials must
come that way: a process-wide TENANTRY_NATS_USER would give several services one user,
merging their permissions, so it is refused. Once every service's settings are read the
scoped variables are dropped from the environment, so a child process one service
starts (retrieval's Qdrant Edge worker) never inherits another's password.

Per process, not per service: the log level (the most verbose of the hosted services')
and audit's Unix nice (TENANTRY_CPU_NICE), which is not applied here because it would
lower every service in the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import importlib
import logging
import os
import signal
import sys
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

import structlog
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from shared.health import Health, HealthGroup, HealthServer, State
from shared.launcher import SERVICES
from shared.logging import configure_logging, get_logger
from shared.service import Service
from shared.settings import TenantrySettings

PREFIX = "TENANTRY_"
SCOPE = "__"
# Set for the whole process, these would be one NATS user for every hosted service.
SHARED_CREDENTIALS = (
    "TENANTRY_NATS_USER",
    "TENANTRY_NATS_PASSWORD",
    "TENANTRY_NATS_PASSWORD_FILE",
)

log = get_logger("tenantry.cohost")


class CohostError(Exception):
    """What cannot be co-hosted as asked; the message names the service, never a secret."""


class StartFailed(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


def parse_names(text: str) -> tuple[str, ...]:
    """`gateway,llm` or `all`, in start order (shared.launcher.SERVICES)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return SERVICES
    if not names:
        raise CohostError("name the services to host: a comma-separated list, or all")
    unknown = sorted({n for n in names if n not in SERVICES})
    if unknown:
        raise CohostError(f"no service {', '.join(unknown)} (services: {', '.join(SERVICES)})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CohostError(f"{', '.join(twice)} named more than once")
    return tuple(n for n in SERVICES if n in names)


def scoped(service: str, var: str) -> str:
    """`TENANTRY_NATS_USER` for `gateway` alone: `TENANTRY_GATEWAY__NATS_USER`."""
    if not var.startswith(PREFIX):
        raise ValueError(f"{var} is not a TENANTRY_ variable")
    return f"{PREFIX}{service.upper()}{SCOPE}{var.removeprefix(PREFIX)}"


def _scope_prefixes() -> tuple[str, ...]:
    return tuple(f"{PREFIX}{name.upper()}{SCOPE}" for name in SERVICES)


def service_environ(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment `service` reads its settings from: the process's without any
    service's scoped variables, with its own (unscoped) on top."""
    own = f"{PREFIX}{service.upper()}{SCOPE}"
    env = {k: v for k, v in environ.items() if not k.upper().startswith(_scope_prefixes())}
    for key, value in environ.items():
        if key.upper().startswith(own):
            env[PREFIX + key[len(own) :]] = value
    return env


def forget_scoped(environ: typing.MutableMapping[str, str]) -> None:
    for key in [k for k in environ if k.upper().startswith(_scope_prefixes())]:
        del environ[key]


def check_credentials(names: tuple[str, ...], environ: Mapping[str, str]) -> None:
    shared = [var for var in SHARED_CREDENTIALS if environ.get(var)]
    if len(names) > 1 and shared:
        raise CohostError(
            f"{shared[0]} is set for the whole process, so {', '.join(names)} would share "
            f"one NATS user: give each service its own ({scoped(names[0], shared[0])}, ...)"
        )


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    # Settings read os.environ when built; nothing else runs yet (no loop, no threads).
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_class(make_service: Callable[..., Service]) -> type[TenantrySettings]:
    """The settings class a service's `make_service(settings)` takes."""
    hint = typing.get_type_hints(make_service).get("settings")
    for candidate in (*typing.get_args(hint), hint):
        if isinstance(candidate, type) and issubclass(candidate, TenantrySettings):
            return candidate
    raise CohostError(f"{make_service.__module__}.make_service takes no settings")


def build(names: tuple[str, ...], environ: Mapping[str, str] | None = None) -> list[Service]:
    """Each service as its own Service, with settings read from its own environment."""
    environ = dict(os.environ if environ is None else environ)
    check_credentials(names, environ)
    services: list[Service] = []
    for name in names:
        try:
            make_service = importlib.import_module(f"services.{name}.app").make_service
            cls = settings_class(make_service)
            with _environ(service_environ(name, environ)):
                services.append(make_service(cls()))
        except CohostError:
            raise
        except Exception as exc:  # settings errors hide their input (no secrets)
            raise CohostError(f"{name}: {type(exc).__name__}: {exc}") from exc
    endpoints = {(s.settings.http_host, s.settings.http_port) for s in services}
    if len(endpoints) > 1:
        raise CohostError(
            "one health/metrics endpoint per process: TENANTRY_HTTP_PORT and "
            "TENANTRY_HTTP_HOST must be the same for every hosted service"
        )
    return services


class _Merged:
    """Every hosted service's metrics as one exposition: same-named families joined (each
    sample already carries its `service` label), so no family is declared twice."""

    def __init__(self, registries: Iterable[CollectorRegistry]) -> None:
        self.registries = list(registries)

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        for registry in self.registries:
            for family in registry.collect():
                into = families.get(family.name)
                if into is None:
                    into = Metric(family.name, family.documentation, family.type, family.unit)
                    families[family.name] = into
                into.samples.extend(family.samples)
        return list(families.values())


def merged_exposition(registries: Iterable[CollectorRegistry]) -> Callable[[], tuple[bytes, str]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(registries))
    return lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)


@asynccontextmanager
async def serving(services: list[Service]) -> AsyncIterator[HealthGroup]:
    """shared.health.serving for several services: one endpoint, each one's metrics and
    traces under its own name."""
    from shared import tracing
    from shared.metrics import ServiceMetrics

    group = HealthGroup([Health.of(s) for s in services])
    providers = []
    if tracing.enabled():
        for service in services:
            provider = tracing.provider_for(service.name)
            tracing.instrument(service, provider)
            providers.append(provider)
    server: HealthServer | None = None
    settings = services[0].settings
    if settings.http_port is not None:
        registries = []
        for service in services:
            metrics = ServiceMetrics(service.name)
            metrics.instrument(service)
            registries.append(metrics.registry)
        server = HealthServer(group, merged_exposition(registries))
        await server.start(settings.http_host, settings.http_port)
    try:
        yield group
    except BaseException:
        group.set_state(State.FAILED)
        raise
    finally:
        if server is not None:
            await server.stop()
        for provider in providers:
            tracing.shutdown(provider)


def _context(service: str) -> contextvars.Context:
    # Tasks a service starts (its subscribers) inherit this: their log lines name it.
    context = contextvars.copy_context()
    context.run(structlog.contextvars.bind_contextvars, service=service)
    return context


async def start_all(
    services: list[Service], group: HealthGroup, contexts: dict[str, contextvars.Context]
) -> None:
    """Start every service at once (as separate processes would); the first failure
    cancels the others' starts and is raised naming its service."""

    async def start(service: Service, health: Health) -> None:
        await service.start()
        health.state = State.READY

    tasks = {
        asyncio.create_task(start(s, h), name=f"start-{s.name}", context=contexts[s.name]): s
        for s, h in zip(services, group.members, strict=True)
    }
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failed = [t for t in tasks if t in done and not t.cancelled() and t.exception()]
    if not failed:
        return
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    first = failed[0]
    exc = first.exception()
    raise StartFailed(tasks[first].name, f"{type(exc).__name__}: {exc}")


async def stop_all(services: list[Service], contexts: dict[str, contextvars.Context]) -> list[str]:
    """Stop in reverse start order (the front door drains first, while what it calls
    still answers); every service is stopped even if one fails. The failed ones' names."""
    failed = []
    for service in reversed(services):
        try:
            await asyncio.create_task(service.stop(), context=contexts[service.name])
        except Exception as exc:
            log.error("cohost.stop_failed", service=service.name, error=type(exc).__name__)
            failed.append(service.name)
    return failed


async def serve(services: list[Service], stop: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or `stop`), as shared.service.run does for one service.
    Exit code: 0 after a clean stop, 1 when a service failed to start or to stop."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve(services, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(services: list[Service], stop: asyncio.Event) -> int:
    contexts = {s.name: _context(s.name) for s in services}
    names = [s.name for s in services]
    async with serving(services) as group:
        try:
            await start_all(services, group, contexts)
        except StartFailed as exc:
            log.error("cohost.start_failed", service=exc.service, error=exc.reason)
            group.set_state(State.FAILED)
            await stop_all(services, contexts)
            return 1
        log.info("cohost.started", services=names)
        # As shared.service.run: what start-up built lives as long as the process.
        gc.collect()
        gc.freeze()
        try:
            await stop.wait()
        finally:
            group.set_state(State.STOPPING)
            failed = await stop_all(services, contexts)
    log.info("cohost.stopped", services=names, failed=failed)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m shared.cohost SERVICE,SERVICE,... | all\n")
        return 2
    try:
        services = build(parse_names(argv[0]))
    except CohostError as exc:
        configure_logging()
        log.error("cohost.refused", error=str(exc))
        return 2
    forget_scoped(os.environ)
    levels = [logging.getLevelNamesMapping()[s.settings.log_level] for s in services]
    configure_logging(
        logging.getLevelName(min(levels)), services[0].settings.log_format, service=""
    )
    structlog.contextvars.bind_contextvars(cohost="+".join(s.name for s in services))
    # One loop for every hosted service: uvloop, as shared.service.run.
    return uvloop.run(serve(services))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
