"""A tenant chooses a message's reply subject, never where the platform writes.

Black-box, as the attack was found: tenant A, with only its own credentials, sends
requests on its own subjects with reply subjects aimed at tenant B's completions and
inboxes, at a stream subject and at the JetStream API. Nothing may arrive there, no
stream may grow, and each attempt is an access_denied audit row naming it. Then the
platform's own users: a service cannot publish outside its grant.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared import subjects
from shared.launcher import Platform
from shared.messages.access import CredentialsIssued
from shared.messages.audit import AuditEventType
from shared.messages.completions import CompletionPublished, CreateCompletion
from shared.messages.retrieval import Document, IngestDocuments
from tests.e2e.test_isolation import Violations, _connect_as, _ops, onboard

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(scope="module")
async def pair(platform: Platform) -> AsyncIterator[tuple[str, CredentialsIssued, str, str]]:
    suffix = uuid.uuid4().hex[:6]
    a, b = f"reply-a-{suffix}", f"reply-b-{suffix}"
    a_creds = await onboard(platform, a, "Alpha Analytics")
    await onboard(platform, b, "Beta Bakery")
    yield a, a_creds, b, suffix


def _service_login(platform: Platform, service: str) -> tuple[str, str]:
    assert platform._auth is not None
    return platform._auth.service_credentials(service)


async def _as_service(platform: Platform, service: str, errors: Violations) -> NatsClient:
    user, password = _service_login(platform, service)
    return await nats.connect(
        platform.nats_url,
        user=user,
        password=password,
        inbox_prefix=subjects.service_inbox_prefix(service),
        error_cb=errors.record,
        allow_reconnect=False,
    )


async def _count(js_nc: NatsClient, stream: str, subject: str) -> int:
    info = await js_nc.jetstream().stream_info(stream, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def test_forged_reply_subjects_are_refused_audited_and_nothing_arrives(
    platform: Platform, pair: tuple[str, CredentialsIssued, str, str]
) -> None:
    a, a_creds, b, suffix = pair
    forged_completion = subjects.completion(b, f"forged-{suffix}")
    targets = [
        forged_completion,  # B's completions (and the completions stream)
        f"{subjects.tenant_inbox_prefix(b)}.forged.{suffix}",  # B's reply inbox
        subjects.budget_event(b),  # a subject the events stream captures
        f"$JS.API.STREAM.PURGE.{subjects.COMPLETIONS_STREAM}",
        f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
        "_INBOX.gateway.not-yours",  # a platform inbox
    ]
    # Watchers: B's subscriber, as a client of B would be (ops may read B's inboxes
    # and completions), and stream counts through the gateway's own user.
    errors = Violations()
    async with _ops(platform) as ops:
        arrived: list[Msg] = []

        async def seen(msg: Msg) -> None:
            arrived.append(msg)

        await ops.nc.subscribe(subjects.completions(b), cb=seen)
        await ops.nc.subscribe(f"{subjects.tenant_inbox_prefix(b)}.>", cb=seen)
        await ops.nc.flush()
        gateway_nc = await _as_service(platform, "gateway", errors)
        before = {
            "completions": await _count(gateway_nc, subjects.COMPLETIONS_STREAM, forged_completion),
            "budget": await _count(gateway_nc, subjects.EVENTS_STREAM, subjects.budget_event(b)),
        }
        before_streams = {
            s: (await gateway_nc.jetstream().stream_info(s)).state.messages
            for s in (subjects.COMPLETIONS_STREAM,)
        }

        attacker = await _connect_as(platform, a, a_creds, errors)
        ask = CreateCompletion(tenant_id=a, question="When are the support hours?", top_k=0)
        ingest = IngestDocuments(
            tenant_id=a, documents=[Document(document_id="d", text="Forged ingest body.")]
        )
        sends = [
            (subjects.request_sync(a), ask.model_dump_json().encode()),
            (subjects.ingest(a), ingest.model_dump_json().encode()),
            (subjects.request(a), ask.model_dump_json().encode()),
        ]
        for subject, body in sends:
            for target in targets:
                await attacker.publish(subject, body, reply=target)
        await attacker.flush()

        # Every attempt is audited as access_denied, naming the reply subject.
        expected = len(sends) * len(targets)
        for _ in range(200):
            page = await ops.audit(a, AuditEventType.ACCESS_DENIED, limit=500)
            refused = [r for r in page.rows if "reply_subject" in r.details]
            if len(refused) >= expected:
                break
            await asyncio.sleep(0.1)
        assert len(refused) == expected, (len(refused), expected)
        named = [str(json.loads(r.details)["reply_subject"]) for r in refused]
        for target in targets:
            assert sum(target in n for n in named) == len(sends), target

        # Nothing arrived anywhere: not at B, not in any stream.
        await asyncio.sleep(0.5)
        assert arrived == []
        assert await _count(gateway_nc, subjects.COMPLETIONS_STREAM, forged_completion) == 0
        assert before["completions"] == 0
        assert (
            await _count(gateway_nc, subjects.EVENTS_STREAM, subjects.budget_event(b))
            == before["budget"]
        )
        # The request stream received nothing from the forged durable requests either,
        # and the completions stream was neither purged nor deleted.
        after = (await gateway_nc.jetstream().stream_info(subjects.COMPLETIONS_STREAM)).state
        assert after.messages >= before_streams[subjects.COMPLETIONS_STREAM]
        await gateway_nc.jetstream().stream_info(subjects.EVENTS_STREAM)  # still exists

        # A's own inbox still gets its answers, on every path.
        reply = await attacker.request(
            subjects.request_sync(a), ask.model_dump_json().encode(), timeout=30
        )
        assert CompletionPublished.model_validate_json(reply.data).ok
        ack = await attacker.jetstream().publish(
            subjects.request(a),
            ask.model_copy(update={"request_id": "own"}).model_dump_json().encode(),
        )
        assert ack.stream == subjects.REQUESTS_STREAM
        await attacker.close()
        await gateway_nc.close()
    assert not any("gateway" in s for s in errors.seen), errors.seen


async def test_a_service_cannot_publish_or_subscribe_outside_its_grant(
    platform: Platform, pair: tuple[str, CredentialsIssued, str, str]
) -> None:
    _, _, b, _ = pair
    errors = Violations()
    llm = await _as_service(platform, "llm", errors)
    try:
        for forbidden in (
            subjects.completion(b, "from-llm"),  # only the gateway answers tenants
            f"{subjects.tenant_inbox_prefix(b)}.x",
            subjects.cost_event(b),  # only metering writes cost
            subjects.service("promptconfig", "upsert", b),  # llm calls nobody
            f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.INFO.{subjects.REQUESTS_STREAM}",  # not its stream
            "$KV.tenantry-tenants.x",
        ):
            await llm.publish(forbidden, b"{}")
            await llm.flush()
            await errors.wait_for(f'publish to "{forbidden}"'.lower())
        for forbidden in (subjects.ALL_REQUESTS, "evt.>", "_INBOX.>", "svc.gateway.>"):
            await llm.subscribe(forbidden)
            await llm.flush()
            await errors.wait_for(f'subscription to "{forbidden}"'.lower())
    finally:
        await llm.close()
