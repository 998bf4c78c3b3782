"""One real request path through all seven services, in-process, on real parts:
nats-server, chDB, Qdrant local mode, and the real anthropic SDK against a local
Messages API server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.audit.app import make_service as audit_app
from services.audit.settings import AuditSettings
from services.gateway.app import make_service as gateway_app
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import TenantCache
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
from shared import subjects
from shared.client import TenantClient
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.base import ErrorCode
from shared.messages.completions import CompletionPublished
from shared.messages.retrieval import Document
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.service import Service
from shared.tenancy import UNATTRIBUTED
from tests.support.bus import as_tenant
from tests.support.messages_api import MessagesApiStub


@dataclass
class Running:
    services: list[Service]
    stub: MessagesApiStub
    nats_url: str
    cache: TenantCache  # the gateway's copy of the tenant configs


@pytest_asyncio.fixture(scope="module")
async def platform(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    data = tmp_path_factory.mktemp("platform")
    stub = MessagesApiStub().start()
    common = {"nats_url": nats_url, "data_dir": Path(data)}
    cache = TenantCache()
    services = [
        promptconfig_app(PromptConfigSettings(**common)),
        audit_app(AuditSettings(**common)),
        metering_app(MeteringSettings(**common)),
        retrieval_app(RetrievalSettings(**common)),
        leakage_app(LeakageSettings(**common)),
        llm_app(
            LlmSettings(
                **common, anthropic_api_key="sk-ant-test-0123456789", anthropic_base_url=stub.url
            )
        ),
        gateway_app(GatewaySettings(**common), cache=cache),
    ]
    for service in services:
        await service.start()
    yield Running(services, stub, nats_url, cache)
    for service in reversed(services):
        await service.stop()
    stub.stop()


@dataclass
class Tenant:
    tenant_id: str
    name: str
    documents: list[Document]


@pytest_asyncio.fixture(scope="module")
async def tenants(platform: Running) -> tuple[Tenant, Tenant]:
    import uuid

    suffix = uuid.uuid4().hex[:6]
    a = Tenant(
        f"rockets-{suffix}",
        "Roadrunner Rockets",
        [
            Document(
                document_id="refunds",
                text="Refunds for rocket skates are accepted within 45 days of delivery. "
                "The restocking fee for opened boosters is ten percent.",
            ),
            Document(
                document_id="skates-manual",
                text="Charge the rocket skates battery for three hours before the first ride.",
            ),
        ],
    )
    b = Tenant(
        f"travel-{suffix}",
        "Wanderlust Travel",
        [
            Document(
                document_id="per-diem",
                text="The daily meal allowance on business trips is 75 dollars. Hotels are "
                "capped at 220 dollars per night.",
            ),
            Document(
                document_id="flights",
                text="Book economy class for flights shorter than six hours.",
            ),
        ],
    )
    async with OpsClient(platform.nats_url) as ops:
        for t in (a, b):
            saved = await ops.save_tenant(t.tenant_id, default_profile(t.name, Tier.PRO))
            assert saved.ok, saved.error
    for t in (a, b):
        async with TenantClient(t.tenant_id, platform.nats_url) as client:
            ingested = await client.ingest(t.documents)
            assert ingested.ok, ingested.error
            assert ingested.documents == 2 and ingested.chunks >= 2
    return a, b


async def _poll(check: Callable[[], object], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def test_each_tenant_is_answered_from_its_own_documents_only(
    platform: Running, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    questions = {
        a.tenant_id: "How many days do I have to return rocket skates?",
        b.tenant_id: "What is the daily meal allowance on trips?",
    }
    answers: dict[str, CompletionPublished] = {}
    for tenant, other in ((a, b), (b, a)):
        platform.stub.clear()
        async with TenantClient(tenant.tenant_id, platform.nats_url) as client:
            if tenant is a:
                done = await client.ask(questions[tenant.tenant_id])  # durable stream path
            else:
                done = await client.ask_sync(questions[tenant.tenant_id])  # request/reply
        assert done.ok, done.error
        answers[tenant.tenant_id] = done
        own_docs = {d.document_id for d in tenant.documents}
        assert done.citations and {c.document_id for c in done.citations} <= own_docs
        # What reached the model: this tenant's prompt and passages, nothing of the other.
        [sent] = platform.stub.requests
        assert f"You are an AI assistant for {tenant.name}" in sent.system
        prompt = json.dumps(sent.body["messages"])
        assert tenant.documents[0].text[:40] in prompt
        for doc in other.documents:
            assert doc.text[:40] not in prompt
        assert other.name not in prompt and other.name not in sent.system
        # Real usage from the response shape, priced exactly.
        assert done.model == "claude-sonnet-4-5"
        assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
        assert (
            done.cost_nanousd == done.usage.input_tokens * 3_000 + done.usage.output_tokens * 15_000
        )

    async with OpsClient(platform.nats_url) as ops:
        for tenant in (a, b):
            done = answers[tenant.tenant_id]

            async def cost_landed(
                tid: str = tenant.tenant_id, want: int = done.cost_nanousd
            ) -> bool:
                report = await ops.usage(tid)
                return report.ok and report.requests == 1 and report.cost_nanousd == want

            await _poll(cost_landed)

            async def trail_landed(tid: str = tenant.tenant_id) -> bool:
                # Audit and cost events are written in separate batches: poll this too.
                page = await ops.audit(tid, limit=500)
                actions = {(r.service, r.action) for r in page.rows}
                return page.ok and ("gateway", "completion.create") in actions

            await _poll(trail_landed)
            # The request's trail arrives as one event (the gateway's row carries the
            # steps' rows) and is stored as one row per step, each its own service's.
            trail = await ops.audit_query(tenant.tenant_id, of_request=done.request_id)
            assert sorted((r.service, r.action, r.event_type) for r in trail.rows) == [
                ("gateway", "completion.create", "api_call"),
                ("llm", "model.invoke", "api_call"),
                ("retrieval", "chunks.search", "data_access"),
            ]
            page = await ops.audit(tenant.tenant_id, limit=500)
            # Every row of this tenant's trail is this tenant's: its request or its setup.
            other = b if tenant is a else a
            assert all(other.tenant_id not in r.details for r in page.rows)


async def test_unknown_tenant_gets_a_clear_error_and_an_audit_row(
    platform: Running, new_tenant_id: Callable[[str], str]
) -> None:
    ghost = new_tenant_id("ghost")
    async with TenantClient(ghost, platform.nats_url) as client:
        done = await client.ask("anyone there?")
    assert done.error and done.error.code is ErrorCode.UNKNOWN_TENANT
    assert "unknown tenant" in done.error.message
    async with OpsClient(platform.nats_url) as ops:

        async def denied() -> bool:
            page = await ops.audit(ghost, AuditEventType.ACCESS_DENIED)
            return page.ok and page.total >= 1

        await _poll(denied)


async def test_malformed_requests_get_clear_errors_and_service_keeps_serving(
    platform: Running, tenants: tuple[Tenant, Tenant], client_broker: NatsBroker
) -> None:
    a, _ = tenants
    nc = client_broker.connection
    # Durable path: the request id is recoverable, so the error arrives on its subject.
    sub = await nc.subscribe(subjects.completion(a.tenant_id, "bad-req-1"), max_msgs=1)
    body = json.dumps({"tenant_id": a.tenant_id, "request_id": "bad-req-1", "question": ""})
    async with as_tenant(platform.nats_url, a.tenant_id) as tenant_nc:
        await tenant_nc.jetstream().publish(subjects.request(a.tenant_id), body.encode())
        msg = await sub.next_msg(timeout=10)
        err = CompletionPublished.model_validate_json(msg.data)
        assert err.error and err.error.code is ErrorCode.MALFORMED_REQUEST
        assert "question" in err.error.message

        # Sync path: not JSON at all.
        reply = await tenant_nc.request(
            subjects.request_sync(a.tenant_id), b"\x00\xffnot json", timeout=10
        )
        err = CompletionPublished.model_validate_json(reply.data)
        assert err.error and err.error.code is ErrorCode.MALFORMED_REQUEST

    # A tenant token no validator accepts: refused, audited as unattributed, answered
    # in that token's own inbox namespace.
    bad_subject = subjects.request_sync("placeholder").replace("placeholder", "NOT_VALID")
    async with as_tenant(platform.nats_url, "NOT_VALID") as bad_nc:
        reply = await bad_nc.request(bad_subject, b"{}", timeout=10)
    err = CompletionPublished.model_validate_json(reply.data)
    assert err.error and err.error.code is ErrorCode.INVALID_TENANT
    assert err.tenant_id == UNATTRIBUTED
    last = await nc.jetstream().get_last_msg(
        subjects.EVENTS_STREAM, subjects.audit_event(UNATTRIBUTED)
    )
    row = AuditRecorded.model_validate_json(last.data or b"")
    assert row.event_type is AuditEventType.ACCESS_DENIED and "NOT_VALID" in str(row.details)

    # And the platform still answers.
    async with TenantClient(a.tenant_id, platform.nats_url) as client:
        done = await client.ask_sync("How long is the return window for rocket skates?")
    assert done.ok, done.error


async def test_identical_prompts_never_share_an_answer(
    platform: Running, tenants: tuple[Tenant, Tenant]
) -> None:
    """No response is cached across tenants: the same words get each tenant's own answer."""
    a, b = tenants
    question = "What do your documents say about refunds, meals and flights?"
    answers = {}
    for tenant in (a, b, a):
        platform.stub.clear()
        async with TenantClient(tenant.tenant_id, platform.nats_url) as client:
            done = await client.ask_sync(question)
        assert done.ok, done.error
        [sent] = platform.stub.requests  # every ask reached the model: nothing was replayed
        assert f"You are an AI assistant for {tenant.name}" in sent.system
        own = {d.document_id for d in tenant.documents}
        assert {c.document_id for c in done.citations} <= own
        answers.setdefault(tenant.tenant_id, []).append(done)
    assert answers[a.tenant_id][0].request_id != answers[a.tenant_id][1].request_id


async def test_the_next_request_sees_a_config_change_and_a_deleted_tenant_is_refused(
    platform: Running, new_tenant_id: Callable[[str], str]
) -> None:
    """The gateway answers from its watched copy of the tenants bucket; the watch delivers
    promptconfig's KV write before promptconfig replies to the save, so the request sent
    after the reply already sees it. No polling here on purpose."""
    tid = new_tenant_id("live")
    profile = default_profile("Initrode", Tier.PRO, custom_instructions="Be formal.")
    async with OpsClient(platform.nats_url) as ops, TenantClient(tid, platform.nats_url) as client:
        assert (await ops.save_tenant(tid, profile)).ok
        cached = platform.cache.get(tid)
        assert cached is not None and cached.config.version == 1

        platform.stub.clear()
        done = await client.ask_sync("Anything?")
        assert done.ok, done.error
        [sent] = platform.stub.requests
        assert "You are an AI assistant for Initrode" in sent.system
        assert "Be formal." in sent.system

        changed = profile.model_copy(update={"custom_instructions": "Be playful."})
        assert (await ops.save_tenant(tid, changed)).ok
        platform.stub.clear()
        done = await client.ask("Anything?")  # the durable path this time
        assert done.ok, done.error
        [sent] = platform.stub.requests
        assert "Be playful." in sent.system and "Be formal." not in sent.system

        deleted = await ops.delete_tenant(tid)
        assert deleted.ok and deleted.existed
        assert tid not in platform.cache
        platform.stub.clear()
        for refused in (await client.ask_sync("Still there?"), await client.ask("And now?")):
            assert refused.error and refused.error.code is ErrorCode.UNKNOWN_TENANT
        assert platform.stub.requests == []
