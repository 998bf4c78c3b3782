"""The onboarding saga and offboarding against the real services that hold tenant state:
promptconfig (KV), retrieval (Qdrant local), metering (KV) and access (credentials KV)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.access.app import make_service as access_app
from services.access.settings import AccessSettings
from services.finetune.app import make_service as finetune_app
from services.finetune.settings import FineTuneSettings
from services.metering.app import make_service as metering_app
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from services.retrieval.app import make_service as retrieval_app
from services.retrieval.settings import RetrievalSettings
from shared import subjects
from shared.bus import (
    CREDENTIALS_BUCKET,
    METERING_BUCKET,
    TENANT_VERSIONS_BUCKET,
    TENANTS_BUCKET,
    call,
    kv_keys,
)
from shared.messages.base import ErrorCode
from shared.messages.lifecycle import OnboardTenant, TenantOnboarded
from shared.messages.retrieval import Document, DocumentsIngested, IngestDocuments
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.service import Service


@pytest_asyncio.fixture(scope="module")
async def services(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Service]]:
    common = {"nats_url": nats_url, "data_dir": Path(tmp_path_factory.mktemp("onboarding"))}
    running = {
        "promptconfig": promptconfig_app(PromptConfigSettings(**common)),
        "retrieval": retrieval_app(RetrievalSettings(**common)),
        "metering": metering_app(MeteringSettings(**common)),
        "access": access_app(AccessSettings(**common)),
        "finetune": finetune_app(FineTuneSettings(**common)),  # offboarding removes its state
    }
    for service in running.values():
        await service.start()
    yield running
    for service in running.values():
        await service.stop()


async def _keys(broker: NatsBroker, bucket: str, tid: str) -> list[str]:
    kv = await broker.connection.jetstream().key_value(bucket)
    return [*await kv_keys(kv, tid), *await kv_keys(kv, f"{tid}.*")]


async def _remains(broker: NatsBroker, tid: str) -> dict[str, list[str]]:
    buckets = (TENANTS_BUCKET, TENANT_VERSIONS_BUCKET, METERING_BUCKET, CREDENTIALS_BUCKET)
    return {b: keys for b in buckets if (keys := await _keys(broker, b, tid))}


async def test_onboard_use_and_offboard(
    services: dict[str, Service],
    nats_url: str,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("onb")
    msg = OnboardTenant(
        tenant_id=tid, name="Umbrella Labs", tier=Tier.ENTERPRISE, admin_email="it@umbrella.example"
    )
    async with OpsClient(nats_url) as ops:
        done = await ops.onboard(msg)
        assert done.ok and done.created and done.password and done.user == f"tenant-{tid}"
        assert done.steps == ["config", "retrieval", "metering", "credentials", "audit", "event"]
        assert done.config and done.config.limits.requests_per_minute == 3_000  # tier default
        # Idempotent: the same request again creates nothing and shows no password.
        again = await ops.onboard(msg.model_copy(update={"event_id": "x" + msg.event_id[1:]}))
        assert again.ok and not again.created and again.password == ""
        remains = await _remains(client_broker, tid)
        assert set(remains) == {
            TENANTS_BUCKET,
            TENANT_VERSIONS_BUCKET,
            METERING_BUCKET,
            CREDENTIALS_BUCKET,
        }

        last = await client_broker.connection.jetstream().get_last_msg(
            subjects.EVENTS_STREAM, subjects.lifecycle_event(tid)
        )
        event = TenantOnboarded.model_validate_json(last.data or b"")
        assert (
            event.admin_email == "it@umbrella.example"
            and "password" not in (last.data or b"").decode()
        )

        # Put something in its collection, then offboard.
        retrieval_ingest = subjects.service("retrieval", "ingest", tid)
        ingested = await call(
            client_broker,
            retrieval_ingest,
            IngestDocuments(
                tenant_id=tid,
                documents=[Document(document_id="d", text="Umbrella Labs builds vaccines. " * 60)],
            ),
            DocumentsIngested,
            10,
        )
        assert ingested.ok and ingested.chunks >= 2

        receipt = await ops.offboard(tid)
        assert receipt.ok and receipt.existed
        assert receipt.removed["credentials"] == 1
        assert receipt.removed["chunks"] == ingested.chunks
        assert receipt.removed["metering_entries"] >= 1
        assert receipt.removed["config_versions"] == 1
        assert receipt.removed["finetune_items"] == 0
        assert await _remains(client_broker, tid) == {}
        gone = await ops.get_tenant(tid)
        assert gone.error and gone.error.code is ErrorCode.UNKNOWN_TENANT
        # Offboarding again is a harmless no-op.
        twice = await ops.offboard(tid)
        assert twice.ok and not twice.existed and set(twice.removed.values()) == {0}


async def test_a_service_down_mid_onboarding_leaves_nothing_behind(
    services: dict[str, Service],
    nats_url: str,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("half")
    await services["access"].stop()  # the credentials step will find nobody to answer
    try:
        async with OpsClient(nats_url) as ops:
            failed = await ops.onboard(
                OnboardTenant(tenant_id=tid, name="Half Made", tier=Tier.FREE)
            )
        assert failed.error and failed.error.code is ErrorCode.UNAVAILABLE
        assert "failed at step credentials" in failed.error.message
        assert "every completed step was undone" in failed.error.message
        assert await _remains(client_broker, tid) == {}
    finally:
        services["access"] = access_app(AccessSettings(nats_url=nats_url))
        await services["access"].start()
    async with OpsClient(nats_url) as ops:
        retried = await ops.onboard(OnboardTenant(tenant_id=tid, name="Half Made", tier=Tier.FREE))
        assert retried.ok and retried.created
        await ops.offboard(tid)
