"""finetune's composition root: the job and artifact stores, the backends, the runner."""

from __future__ import annotations

from faststream.nats import NatsBroker

from services.finetune.backends import Backend, OfflineBackend
from services.finetune.handlers import HANDLERS, SERVICE, Deps
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
from shared.service import Service, compose

log = get_logger("tenantry.finetune")


def make_backends(settings: FineTuneSettings) -> dict[str, Backend]:
    """The offline backend always; the OpenAI-compatible one when it has a key."""
    backends: dict[str, Backend] = {"offline": OfflineBackend()}
    if settings.openai_api_key is not None:
        from services.finetune.openai_backend import OpenAIBackend

        backends["openai"] = OpenAIBackend.from_settings(settings)
    return backends


async def bootstrap(
    settings: FineTuneSettings,
    broker: NatsBroker,
    *,
    ports: Ports | None = None,
    backends: dict[str, Backend] | None = None,
) -> Deps:
    """Open the job and artifact stores (on a connected broker), start the runner, and
    return finetune's Deps (which stop the runner when drained)."""
    trail = AuditTrail(broker, SERVICE)
    ports = ports or BusPorts(broker, settings.rpc_timeout_s)
    chosen = backends if backends is not None else make_backends(settings)

    async def publish(event: Envelope, subject: str) -> None:
        await publish_event(broker, event, subject)

    js = broker.connection.jetstream()
    store = await JobStore.open(js)
    lifecycle = Lifecycle(store=store, trail=trail, publish=publish)
    runner = Runner(
        lifecycle=lifecycle,
        store=store,
        artifacts=ArtifactStore(js),
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
    await runner.start()
    log.info("finetune.backends", backends=",".join(sorted(chosen)), worker=runner.worker_id)
    return Deps(manager=manager, trail=trail, runner=runner)


def make_service(
    settings: FineTuneSettings | None = None,
    *,
    ports: Ports | None = None,
    backends: dict[str, Backend] | None = None,
) -> Service:
    settings = settings or FineTuneSettings()
    broker = make_broker(settings, SERVICE)
    return compose(
        SERVICE,
        settings,
        broker,
        HANDLERS,
        lambda: bootstrap(settings, broker, ports=ports, backends=backends),
    )
