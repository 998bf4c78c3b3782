"""Other tenants' content over a real nats-server: retrieval (real Qdrant local mode)
publishes fingerprints and plants canaries; leakage replays and applies them live."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import nats.errors
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.leakage.app import make_service as leakage_app
from services.leakage.content import FingerprintIndex
from services.leakage.settings import LeakageSettings
from services.retrieval.app import make_service as retrieval_app
from services.retrieval.settings import RetrievalSettings
from shared import subjects
from shared.bus import call
from shared.canary import PREFIX
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.base import Envelope, Reply
from shared.messages.leakage import ScanLocation, ScanText, TextScanned, Verdict
from shared.messages.retrieval import (
    ChunksFound,
    CollectionDeleted,
    DeleteCollection,
    DeleteDocument,
    Document,
    DocumentDeleted,
    DocumentsIngested,
    IngestDocuments,
    SearchChunks,
)
from tests.support.bus import ready

pytestmark = pytest.mark.integration

SECRET = "integration-canary-secret"
MEMO = (
    "The credit committee approved a revolving facility for the shipyard client on the "
    "condition that the debt service coverage ratio stays above one point three five at "
    "every quarterly test date. The facility is secured by a first charge over the dry dock "
    "and an assignment of the two largest vessel construction contracts."
)
QUOTE = (
    "The facility is secured by a first charge over the dry dock and an assignment of the "
    "two largest vessel construction contracts."
)


@pytest_asyncio.fixture(scope="module")
async def services(
    nats_url: str, client_broker: NatsBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FingerprintIndex]:
    retrieval = retrieval_app(
        RetrievalSettings(
            nats_url=nats_url,
            data_dir=tmp_path_factory.mktemp("leakage-content"),
            canary_secret=SECRET,
        )
    )
    index = FingerprintIndex()
    leakage = leakage_app(LeakageSettings(nats_url=nats_url, canary_secret=SECRET), index=index)
    await retrieval.start()
    await leakage.start()
    await ready(client_broker, "retrieval", "ingest")
    await ready(client_broker, "leakage", "scan")
    yield index
    await leakage.stop()
    await retrieval.stop()


async def ask(
    broker: NatsBroker, service: str, verb: str, msg: Envelope, reply: type[Reply]
) -> Reply:
    return await call(broker, subjects.service(service, verb, msg.tenant_id), msg, reply, 10)


async def scan(broker: NatsBroker, tid: str, text: str) -> TextScanned:
    msg = ScanText(tenant_id=tid, location=ScanLocation.RESPONSE, text=text)
    reply = await ask(broker, "leakage", "scan", msg, TextScanned)
    assert isinstance(reply, TextScanned) and reply.ok, reply.error
    return reply


async def verdict_becomes(
    broker: NatsBroker, tid: str, text: str, want: Verdict, timeout: float = 5.0
) -> TextScanned:
    deadline = time.monotonic() + timeout
    while True:
        reply = await scan(broker, tid, text)
        if reply.verdict is want:
            return reply
        assert time.monotonic() < deadline, f"verdict stayed {reply.verdict}"
        await asyncio.sleep(0.05)


async def ingest(broker: NatsBroker, tid: str, doc_id: str, text: str) -> None:
    msg = IngestDocuments(tenant_id=tid, documents=[Document(document_id=doc_id, text=text)])
    done = await ask(broker, "retrieval", "ingest", msg, DocumentsIngested)
    assert done.ok, done.error


async def test_a_quote_is_blocked_once_ingested_and_allowed_once_deleted(
    services: FingerprintIndex, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    bank, shop = new_tenant_id("bank"), new_tenant_id("shop")
    answer = f"Sure. {QUOTE} Let me know if you need more."
    assert (await scan(client_broker, shop, answer)).verdict is Verdict.ALLOW

    await ingest(client_broker, bank, "credit-memo", MEMO)
    blocked = await verdict_becomes(client_broker, shop, answer, Verdict.BLOCK)
    assert {(f.detector, f.kind) for f in blocked.findings} == {
        ("foreign_content", "quoted_document")
    }
    # The owner may quote its own memo.
    assert (await scan(client_broker, bank, answer)).verdict is Verdict.ALLOW

    deleted = await ask(
        client_broker,
        "retrieval",
        "delete_document",
        DeleteDocument(tenant_id=bank, document_id="credit-memo"),
        DocumentDeleted,
    )
    assert deleted.ok
    await verdict_becomes(client_broker, shop, answer, Verdict.ALLOW)


async def test_dropping_a_collection_withdraws_its_fingerprints(
    services: FingerprintIndex, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    bank, shop = new_tenant_id("bank"), new_tenant_id("shop")
    await ingest(client_broker, bank, "memo", MEMO)
    await verdict_becomes(client_broker, shop, QUOTE, Verdict.BLOCK)
    dropped = await ask(
        client_broker,
        "retrieval",
        "delete_collection",
        DeleteCollection(tenant_id=bank),
        CollectionDeleted,
    )
    assert dropped.ok
    await verdict_becomes(client_broker, shop, QUOTE, Verdict.ALLOW)


async def test_a_canary_in_retrieved_text_is_caught_in_another_tenants_traffic(
    services: FingerprintIndex, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    bank, shop = new_tenant_id("bank"), new_tenant_id("shop")
    await ingest(client_broker, bank, "memo", "Dry dock inspections happen every spring.")
    found = await ask(
        client_broker,
        "retrieval",
        "search",
        SearchChunks(tenant_id=bank, query="dry dock inspections"),
        ChunksFound,
    )
    assert isinstance(found, ChunksFound) and found.chunks
    leaked = found.chunks[0].text
    assert PREFIX in leaked  # stored text carries the owner's canary
    reply = await scan(client_broker, shop, f"Inspections: {leaked}")
    assert reply.verdict is Verdict.BLOCK
    assert ("canary", "foreign_canary") in {(f.detector, f.kind) for f in reply.findings}
    own = await scan(client_broker, bank, f"Inspections: {leaked}")
    assert own.verdict is Verdict.ALLOW and PREFIX not in own.text  # cut from own response


async def test_a_restarted_replica_replays_every_fingerprint_before_serving(
    nats_url: str,
    services: FingerprintIndex,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    bank = new_tenant_id("bank")
    await ingest(client_broker, bank, "memo", MEMO)
    await verdict_becomes(client_broker, new_tenant_id("shop"), QUOTE, Verdict.BLOCK)
    fresh = FingerprintIndex()
    second = leakage_app(LeakageSettings(nats_url=nats_url, canary_secret=SECRET), index=fresh)
    await second.start()  # returns only after the backlog is applied
    try:
        assert len(fresh) == len(services) > 0
    finally:
        await second.stop()


async def test_every_finding_is_an_audit_event_without_the_matched_text(
    services: FingerprintIndex, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("audited")
    email, key = "ana@shop.example", "AKIAZ7QK3TLM5RWX9PNB"
    received: list[AuditRecorded] = []
    sub = await client_broker.connection.subscribe(subjects.audit_event(tid))
    try:
        reply = await scan(client_broker, tid, f"Mail {email}, key {key}.")
        assert reply.verdict is Verdict.REDACT
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                msg = await sub.next_msg(timeout=0.5)
                received.append(AuditRecorded.model_validate_json(msg.data))
    finally:
        await sub.unsubscribe()
    items = sorted(
        (e.details["detector"], e.details["kind"], e.details["start"], e.details["end"])
        for e in received
        if e.action == "leakage.finding"
    )
    assert items == [("pii", "email", 5, 21), ("secret", "aws_access_key", 27, 47)]
    assert [e.details["findings"] for e in received if e.action == "leakage.scan"] == [2]
    for event in received:
        assert event.event_type is AuditEventType.LEAKAGE_DETECTED
        assert email not in event.model_dump_json() and key not in event.model_dump_json()
