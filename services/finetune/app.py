"""finetune's bootstrap: settings, broker, stores (opened at start), backends, runner, router."""

from __future__ import annotations

from services.finetune.backends import Backend, OfflineBackend
from services.finetune.handlers import SERVICE, Deps, build_router
from services.finetune.jobs import Lifecycle
from services.finetune.manage import Manager
from services.finetune.ports import BusPorts, Ports
from services.finetune.runner import Runner
from services.finetune.settings import FineTuneSettings
from shared.audit import AuditTrail
from shared.bus import make_broker, publish_event
from shared.finetune_store import ArtifactStore, JobStore
from shared.logging import get_logger
from shared.messages.base import Envelope
from shared.service import Service

log = get_logger("tenantry.finetune")


def make_backends(settings: FineTuneSettings) -> dict[str, Backend]:
    """The offline backend always; the OpenAI-compatible one when it has a key."""
    backends: dict[str, Backend] = {"offline": OfflineBackend()}
    if settings.openai_api_key is not None:
        from services.finetune.openai_backend import OpenAIBackend

        backends["openai"] = OpenAIBackend.from_settings(settings)
    return backends


def bootstrap(
    settings: FineTuneSettings | None = None,
    *,
    ports: Ports | None = None,
    backends: dict[str, Backend] | None = None,
) -> Service:
    return build(settings, ports=ports, backends=backends)[0]


def build(
    settings: FineTuneSettings | None = None,
    *,
    ports: Ports | None = None,
    backends: dict[str, Backend] | None = None,
) -> tuple[Service, Runner]:
    """The service and its runner (tests reach the runner to simulate a crash)."""
    settings = settings or FineTuneSettings()
    broker = make_broker(settings, SERVICE)
    trail = AuditTrail(broker, SERVICE)
    service = Service(SERVICE, settings, broker)
    ports = ports or BusPorts(broker, settings.rpc_timeout_s)
    chosen = backends if backends is not None else make_backends(settings)

    async def publish(event: Envelope, subject: str) -> None:
        await publish_event(broker, event, subject)

    # Stores need the connection: built empty here, filled in at start.
    store = JobStore(None)  # type: ignore[arg-type]
    lifecycle = Lifecycle(store=store, trail=trail, publish=publish)
    runner = Runner(
        lifecycle=lifecycle,
        store=store,
        artifacts=ArtifactStore(None),  # type: ignore[arg-type]
        backends=chosen,
        ports=ports,
        settings=settings,
    )
    manager = Manager(
        store=store,
        artifacts=runner.artifacts,
        lifecycle=lifecycle,
        runner=runner,
        ports=ports,
        trail=trail,
        backends=chosen,
        default_backend=settings.finetune_backend,
    )

    async def open_stores() -> None:
        js = broker.connection.jetstream()
        store.kv = (await JobStore.open(js)).kv
        runner.artifacts.js = js
        await runner.start()
        log.info("finetune.backends", backends=",".join(sorted(chosen)), worker=runner.worker_id)

    async def stop_runner() -> None:
        await runner.stop()

    service.on_start.append(open_stores)
    service.on_drained.append(stop_runner)
    broker.include_router(build_router(Deps(manager=manager, trail=trail)))
    return service, runner
