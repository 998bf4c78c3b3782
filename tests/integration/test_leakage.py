"""leakage over a real nats-server, fed live by promptconfig's tenant registry (JetStream KV)."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.leakage.app import make_service as bootstrap
from services.leakage.directory import TenantDirectory
from services.leakage.settings import LeakageSettings
from services.promptconfig.app import make_service as bootstrap_promptconfig
from services.promptconfig.settings import PromptConfigSettings
from services.promptconfig.tiers import DEFAULT_MODELS, TIER_LIMITS
from shared import subjects
from shared.bus import call
from shared.messages.leakage import ScanLocation, ScanText, TextScanned, Verdict
from shared.messages.tenants import (
    DeleteTenant,
    TenantDeleted,
    TenantProfile,
    TenantUpserted,
    Tier,
    UpsertTenant,
)
from shared.service import Service
from shared.templates import DEFAULT_TEMPLATE
from tests.support.bus import ready

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def promptconfig(nats_url: str, client_broker: NatsBroker) -> AsyncIterator[Service]:
    service = bootstrap_promptconfig(PromptConfigSettings(nats_url=nats_url))
    await service.start()
    await ready(client_broker, "promptconfig", "upsert")
    yield service
    await service.stop()


@pytest_asyncio.fixture(scope="module")
async def directory(
    nats_url: str, promptconfig: Service, client_broker: NatsBroker
) -> AsyncIterator[TenantDirectory]:
    """leakage's live tenant directory: the service runs for the module."""
    known = TenantDirectory()
    service = bootstrap(LeakageSettings(nats_url=nats_url), directory=known)
    await service.start()
    await ready(client_broker, "leakage", "scan")
    yield known
    await service.stop()


def unique_name(word: str) -> str:
    # Made-up words plus a random tag: no other test's tenant can share the name.
    return f"{word} {secrets.token_hex(3)}"


async def create_tenant(
    broker: NatsBroker, tid: str, name: str, aliases: list[str] = [], domains: list[str] = []
) -> None:
    profile = TenantProfile(
        name=name,
        tier=Tier.PRO,
        aliases=aliases,
        domains=domains,
        system_prompt_template=DEFAULT_TEMPLATE,
        allowed_models=DEFAULT_MODELS,
        default_model=DEFAULT_MODELS[0],
        limits=TIER_LIMITS[Tier.PRO],
    )
    saved = await call(
        broker,
        subjects.service("promptconfig", "upsert", tid),
        UpsertTenant(tenant_id=tid, profile=profile),
        TenantUpserted,
        5,
    )
    assert saved.ok, saved.error


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def scan(broker: NatsBroker, tid: str, text: str) -> TextScanned:
    reply = await call(
        broker,
        subjects.service("leakage", "scan", tid),
        ScanText(tenant_id=tid, location=ScanLocation.RESPONSE, text=text),
        TextScanned,
        5,
    )
    assert reply.ok, reply.error
    return reply


async def test_another_tenants_identity_blocks_and_own_is_fine(
    directory: TenantDirectory, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    a, b = new_tenant_id("quill"), new_tenant_id("brask")
    a_name, b_name = unique_name("Quillfeather Analytics"), unique_name("Braskholm")
    b_domain = f"braskholm-{secrets.token_hex(3)}.example"
    await create_tenant(client_broker, a, a_name)
    await create_tenant(client_broker, b, b_name, aliases=["Brask Shipping"], domains=[b_domain])
    await eventually(lambda: a in directory and b in directory)

    own = await scan(client_broker, a, f"{a_name} grew revenue by 12% this quarter.")
    assert own.verdict is Verdict.ALLOW and own.findings == []

    named = await scan(client_broker, a, f"Unlike {b_name.upper()}, we answer within a day.")
    assert named.verdict is Verdict.BLOCK and named.text == ""
    assert [(f.detector, f.kind) for f in named.findings] == [("foreign_tenant", "tenant_name")]

    mixed = await scan(client_broker, a, f"Mail ops@{b_domain} or ask Brask Shipping.")
    assert {f.kind for f in mixed.findings} == {"domain", "alias", "email"}
    assert mixed.verdict is Verdict.BLOCK

    # B may of course talk about itself.
    assert (await scan(client_broker, b, f"{b_name} at {b_domain}")).verdict is Verdict.ALLOW


async def test_secrets_are_redacted_over_the_bus(
    directory: TenantDirectory, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("sec")
    reply = await scan(client_broker, tid, "Deploy with AKIAIOSFODNN7EXAMPLE, then tell ops.")
    assert reply.verdict is Verdict.REDACT
    assert reply.text == "Deploy with [SECRET:aws_access_key], then tell ops."


async def test_tenants_created_and_deleted_later_are_picked_up_live(
    directory: TenantDirectory, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    a, late = new_tenant_id("early"), new_tenant_id("late")
    late_name = unique_name("Zorvath Mining")
    text = f"Our partner {late_name} supplies the ore."
    await create_tenant(client_broker, a, unique_name("Earlybird Ltd"))
    await eventually(lambda: a in directory)
    assert (await scan(client_broker, a, text)).verdict is Verdict.ALLOW

    await create_tenant(client_broker, late, late_name)
    await eventually(lambda: late in directory)
    assert (await scan(client_broker, a, text)).verdict is Verdict.BLOCK

    deleted = await call(
        client_broker,
        subjects.service("promptconfig", "delete", late),
        DeleteTenant(tenant_id=late),
        TenantDeleted,
        5,
    )
    assert deleted.ok and deleted.existed
    await eventually(lambda: late not in directory)
    assert (await scan(client_broker, a, text)).verdict is Verdict.ALLOW


async def test_a_restarted_service_loads_every_existing_tenant(
    nats_url: str,
    directory: TenantDirectory,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("known")
    await create_tenant(client_broker, tid, unique_name("Preexisting Partners"))
    await eventually(lambda: tid in directory)
    fresh = TenantDirectory()
    second = bootstrap(LeakageSettings(nats_url=nats_url), directory=fresh)
    await second.start()  # returns only after the first full load
    try:
        assert tid in fresh and len(fresh) == len(directory)
    finally:
        await second.stop()


async def test_scan_time_with_a_hundred_tenants(
    directory: TenantDirectory, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    ids = [new_tenant_id("bulk") for _ in range(100)]
    await asyncio.gather(
        *(
            create_tenant(
                client_broker,
                tid,
                unique_name(f"Bulkco{i}"),
                aliases=[f"Bulk Alias {i}"],
                domains=[f"{tid}.example"],
            )
            for i, tid in enumerate(ids)
        )
    )
    await eventually(lambda: all(tid in directory for tid in ids), timeout=20)
    sentence = "Quarterly revenue grew while support tickets fell, and the team shipped. "
    text = (sentence * 30)[:2048]
    await scan(client_broker, ids[0], text)  # first scan after the change builds the matcher
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        reply = await scan(client_broker, ids[0], text)
        timings.append(time.perf_counter() - started)
        assert reply.verdict is Verdict.ALLOW
    # Round trip over NATS, including JSON both ways; generous bound for a 2-core runner.
    assert statistics.median(timings) < 0.05
