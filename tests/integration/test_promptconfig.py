from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest_asyncio
from faststream.nats import NatsBroker

from services.promptconfig.app import make_service
from services.promptconfig.settings import PromptConfigSettings
from services.promptconfig.tiers import DEFAULT_MODELS, TIER_LIMITS
from shared import subjects
from shared.bus import call
from shared.messages.base import ErrorCode
from shared.messages.tenants import (
    ResolveTenant,
    TenantProfile,
    TenantResolved,
    TenantUpserted,
    Tier,
    UpsertTenant,
)
from shared.service import Service
from shared.templates import DEFAULT_TEMPLATE


@pytest_asyncio.fixture(scope="module")
async def promptconfig(nats_url: str) -> AsyncIterator[Service]:
    service = make_service(PromptConfigSettings(nats_url=nats_url))
    await service.start()
    yield service
    await service.stop()


def profile(name: str, **overrides: object) -> TenantProfile:
    base = dict(
        name=name,
        tier=Tier.PRO,
        system_prompt_template=DEFAULT_TEMPLATE,
        custom_instructions="Be brief. {{tenant_id}} stays literal.",
        allowed_models=DEFAULT_MODELS,
        default_model=DEFAULT_MODELS[0],
        limits=TIER_LIMITS[Tier.PRO],
    )
    base.update(overrides)
    return TenantProfile.model_validate(base)


async def test_create_resolve_and_version(
    promptconfig: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("acme")
    saved = await call(
        client_broker,
        subjects.service("promptconfig", "upsert", tid),
        UpsertTenant(tenant_id=tid, profile=profile("Acme Corp")),
        TenantUpserted,
        5,
    )
    assert saved.ok and saved.created and saved.config and saved.config.version == 1
    again = await call(
        client_broker,
        subjects.service("promptconfig", "upsert", tid),
        UpsertTenant(tenant_id=tid, profile=profile("Acme Corp")),
        TenantUpserted,
        5,
    )
    assert again.ok and not again.created and again.config and again.config.version == 1
    resolved = await call(
        client_broker,
        subjects.service("promptconfig", "resolve", tid),
        ResolveTenant(tenant_id=tid),
        TenantResolved,
        5,
    )
    assert resolved.ok
    assert "Acme Corp (pro tier customer)" in resolved.system_prompt
    # Tenant text is inserted verbatim, never re-expanded.
    assert "{{tenant_id}} stays literal" in resolved.system_prompt


async def test_unknown_tenant_and_bad_template(
    promptconfig: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("nobody")
    resolved = await call(
        client_broker,
        subjects.service("promptconfig", "resolve", tid),
        ResolveTenant(tenant_id=tid),
        TenantResolved,
        5,
    )
    assert resolved.error and resolved.error.code is ErrorCode.UNKNOWN_TENANT
    bad = await call(
        client_broker,
        subjects.service("promptconfig", "upsert", tid),
        UpsertTenant(tenant_id=tid, profile=profile("X", system_prompt_template="Hi {{secret}}")),
        TenantUpserted,
        5,
    )
    assert bad.error and bad.error.code is ErrorCode.TEMPLATE_INVALID
    assert "secret" in bad.error.message


async def test_malformed_and_mismatched_requests_get_replies(
    promptconfig: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("m")
    raw = await client_broker.connection.request(
        subjects.service("promptconfig", "resolve", tid), b"{not json", timeout=5
    )
    reply = TenantResolved.model_validate_json(raw.data)
    assert reply.error and reply.error.code is ErrorCode.MALFORMED_REQUEST
    other = new_tenant_id("o")
    mismatched = await call(
        client_broker,
        subjects.service("promptconfig", "resolve", tid),
        ResolveTenant(tenant_id=other),
        TenantResolved,
        5,
    )
    assert mismatched.error and mismatched.error.code is ErrorCode.INVALID_TENANT
