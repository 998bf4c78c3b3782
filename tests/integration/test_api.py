"""The HTTP door with the official SDKs, unchanged, as the clients.

The whole request path runs for real behind it (nats-server, every service in-process,
the offline model answering from each tenant's own passages): create, stream, usage,
models, every error class, two tenants kept apart, a revoked key refused at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import pytest_asyncio

from services.access.app import make_service as access_app
from services.access.settings import AccessSettings
from services.api.app import make_service as api_app
from services.api.settings import ApiSettings
from services.audit.app import make_service as audit_app
from services.audit.settings import AuditSettings
from services.gateway.app import make_service as gateway_app
from services.gateway.settings import GatewaySettings
from services.leakage.app import make_service as leakage_app
from services.leakage.settings import LeakageSettings
from services.llm.app import make_service as llm_app
from services.llm.settings import LlmSettings
from services.metering.app import make_service as metering_app
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from services.promptconfig.tiers import default_profile
from services.retrieval.app import make_service as retrieval_app
from services.retrieval.settings import RetrievalSettings
from shared import natsserver, subjects
from shared.bus import call
from shared.client import TenantClient
from shared.messages.apikeys import ApiKeyIssued, ApiKeyRevoked, IssueApiKey, RevokeApiKey
from shared.messages.lifecycle import OnboardTenant
from shared.messages.retrieval import Document
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.service import Service

pytestmark = pytest.mark.integration


@dataclass
class Door:
    url: str
    nats_url: str
    services: dict[str, Service]


@dataclass
class Tenant:
    tenant_id: str
    key: str
    key_id: str


@pytest_asyncio.fixture(scope="module")
async def door(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Door]:
    common = {"nats_url": nats_url, "data_dir": Path(tmp_path_factory.mktemp("api"))}
    port = natsserver.free_port()
    services = {
        "promptconfig": promptconfig_app(PromptConfigSettings(**common)),
        "access": access_app(AccessSettings(**common)),
        "audit": audit_app(AuditSettings(**common)),
        "metering": metering_app(MeteringSettings(**common)),
        "retrieval": retrieval_app(RetrievalSettings(**common)),
        "leakage": leakage_app(LeakageSettings(**common)),
        "llm": llm_app(LlmSettings(**common, anthropic_api_key=None)),  # offline model
        "gateway": gateway_app(GatewaySettings(**common)),
        "api": api_app(ApiSettings(**common, api_port=port)),
    }
    for service in services.values():
        await service.start()
    yield Door(f"http://127.0.0.1:{port}", nats_url, services)
    for service in reversed(services.values()):
        await service.stop()


async def _onboard(door: Door, prefix: str, name: str, text: str, rpm: int = 600) -> Tenant:
    tid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    async with OpsClient(door.nats_url) as ops:
        done = await ops.onboard(OnboardTenant(tenant_id=tid, name=name, tier=Tier.PRO))
        assert done.ok, done.error
        profile = default_profile(name, Tier.PRO)
        limits = profile.limits.model_copy(update={"requests_per_minute": rpm})
        saved = await ops.save_tenant(tid, profile.model_copy(update={"limits": limits}))
        assert saved.ok, saved.error
        key = await call(
            ops.nc,
            subjects.service("access", "key_issue", tid),
            IssueApiKey(tenant_id=tid, name="tests"),
            ApiKeyIssued,
            10,
        )
        assert key.ok and key.key.startswith(f"tnty_{tid}_"), key.error
    async with TenantClient(tid, door.nats_url) as client:
        ingested = await client.ingest([Document(document_id="handbook", text=text)])
        assert ingested.ok, ingested.error
    return Tenant(tid, key.key, key.key_id)


Pair = tuple[Tenant, Tenant]


@pytest_asyncio.fixture(scope="module")
async def tenants(door: Door) -> Pair:
    a = await _onboard(
        door, "api-a", "Alpha Rockets", "Alpha Rockets takes back unused jet boots for 45 days."
    )
    b = await _onboard(
        door, "api-b", "Beta Travel", "Beta Travel staff may spend 75 dollars a day on meals."
    )
    return a, b


def _anthropic(door: Door, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=door.url, max_retries=0)


def _openai(door: Door, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"{door.url}/v1", max_retries=0)


MODEL = "claude-sonnet-4-5"  # on every PRO tenant's allow-list (the offline model answers)
# Document texts are this module's own: leakage fingerprints every ingested document
# for the whole test session, and another module's tenant with the same sentence would
# make each look like the other's content.
ASK = [{"role": "user", "content": "For how long are unused jet boots taken back?"}]


async def test_anthropic_sdk_creates_and_streams(door: Door, tenants: Pair) -> None:
    a, _ = tenants
    client = _anthropic(door, a.key)
    message = await client.messages.create(model=MODEL, max_tokens=300, messages=ASK)
    assert message.role == "assistant" and message.type == "message"
    assert "45 days" in message.content[0].text  # from A's own document
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.model == "offline-extractive" and message.stop_reason == "end_turn"

    async with client.messages.stream(model=MODEL, max_tokens=300, messages=ASK) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text
    assert "45 days" in final.content[0].text
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


async def test_openai_sdk_creates_and_streams(door: Door, tenants: Pair) -> None:
    a, _ = tenants
    client = _openai(door, a.key)
    done = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, *ASK],  # type: ignore[list-item]
    )
    assert "45 days" in (done.choices[0].message.content or "")
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.total_tokens == (
        done.usage.prompt_tokens + done.usage.completion_tokens
    )
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert "45 days" in text and finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_models_lists_only_the_tenants_own(door: Door, tenants: Pair) -> None:
    a, _ = tenants
    expected = default_profile("x", Tier.PRO).allowed_models
    listed = [m.id async for m in _openai(door, a.key).models.list()]
    assert listed == expected
    listed = [m.id async for m in _anthropic(door, a.key).models.list()]
    assert listed == expected


async def test_tenants_are_kept_apart(door: Door, tenants: Pair) -> None:
    a, b = tenants
    answer = await _anthropic(door, b.key).messages.create(
        model=MODEL, max_tokens=300, messages=ASK
    )
    # B asks A's question: B's passages only, never A's refund policy.
    assert "45 days" not in answer.content[0].text
    # A key edited to name another tenant finds nothing: the tenant is the key's own.
    forged = a.key.replace(a.tenant_id, b.tenant_id, 1)
    with pytest.raises(anthropic.AuthenticationError):
        await _anthropic(door, forged).messages.create(model=MODEL, max_tokens=50, messages=ASK)
    # A header naming a tenant changes nothing either.
    client = anthropic.AsyncAnthropic(
        api_key=b.key,
        base_url=door.url,
        max_retries=0,
        default_headers={"x-tenant-id": a.tenant_id, "x-tenantry-tenant": a.tenant_id},
    )
    answer = await client.messages.create(model=MODEL, max_tokens=300, messages=ASK)
    assert "45 days" not in answer.content[0].text


async def test_every_error_class(door: Door, tenants: Pair) -> None:
    a, _ = tenants
    ac, oc = _anthropic(door, a.key), _openai(door, a.key)
    for bad_key in ("", "sk-nonsense", f"tnty_{a.tenant_id}_000000000000_guess"):
        with pytest.raises(anthropic.AuthenticationError):
            await _anthropic(door, bad_key or "x").messages.create(
                model=MODEL, max_tokens=5, messages=ASK
            )
        with pytest.raises(openai.AuthenticationError):
            await _openai(door, bad_key or "x").chat.completions.create(
                model=MODEL,
                messages=ASK,  # type: ignore[arg-type]
            )
    with pytest.raises(anthropic.NotFoundError):
        await ac.messages.create(model="no-such-model", max_tokens=5, messages=ASK)
    with pytest.raises(openai.NotFoundError):
        await oc.chat.completions.create(model="no-such-model", messages=ASK)  # type: ignore[arg-type]
    image = [{"role": "user", "content": [{"type": "image", "source": {}}]}]
    with pytest.raises(anthropic.BadRequestError, match="only text"):
        await ac.messages.create(model=MODEL, max_tokens=5, messages=image)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="last message must be from the user"):
        await oc.chat.completions.create(
            model=MODEL,
            messages=[{"role": "assistant", "content": "hi"}],
        )
    huge = [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]
    with pytest.raises(anthropic.APIStatusError) as too_large:
        await ac.messages.create(model=MODEL, max_tokens=5, messages=huge)  # type: ignore[arg-type]
    assert too_large.value.status_code == 413


async def test_rate_limit_is_429_with_retry_after(door: Door) -> None:
    slow = await _onboard(door, "api-rl", "Slow Co", "Slow Co ships on Mondays.", rpm=1)
    client = _anthropic(door, slow.key)
    await client.messages.create(model=MODEL, max_tokens=50, messages=ASK)
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model=MODEL, max_tokens=50, messages=ASK)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError) as limited_oai:
        await _openai(door, slow.key).chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
        )
    assert int(limited_oai.value.response.headers["retry-after"]) >= 1


async def test_a_revoked_key_is_refused_at_once(door: Door, tenants: Pair) -> None:
    leaving = await _onboard(door, "api-rv", "Revoked Co", "Revoked Co is closed.")
    client = _anthropic(door, leaving.key)
    assert (await client.messages.create(model=MODEL, max_tokens=50, messages=ASK)).content
    async with OpsClient(door.nats_url) as ops:
        revoked = await call(
            ops.nc,
            subjects.service("access", "key_revoke", leaving.tenant_id),
            RevokeApiKey(tenant_id=leaving.tenant_id, key_id=leaving.key_id),
            ApiKeyRevoked,
            10,
        )
    assert revoked.ok and revoked.existed
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(model=MODEL, max_tokens=50, messages=ASK)


async def test_no_gateway_is_overloaded_not_a_hang(door: Door, tenants: Pair) -> None:
    """Last in this module: it stops the gateway (and starts it again)."""
    a, _ = tenants
    gateway = door.services["gateway"]
    await gateway.stop()
    try:
        with pytest.raises(anthropic.OverloadedError):
            await _anthropic(door, a.key).messages.create(model=MODEL, max_tokens=5, messages=ASK)
        with pytest.raises(openai.InternalServerError) as unavailable:
            await _openai(door, a.key).chat.completions.create(
                model=MODEL,
                messages=ASK,  # type: ignore[arg-type]
            )
        assert unavailable.value.status_code == 503
    finally:
        door.services["gateway"] = gateway_app(GatewaySettings(nats_url=door.nats_url))
        await door.services["gateway"].start()
    async with httpx.AsyncClient(base_url=door.url) as raw:
        assert (await raw.get("/v1/models")).status_code == 401
