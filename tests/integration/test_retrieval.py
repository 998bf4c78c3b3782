"""retrieval over a real nats-server with a real Qdrant local-mode folder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from services.retrieval import index
from services.retrieval.adapters import DimensionMismatch, QdrantStore, StoredChunk
from services.retrieval.app import make_service as bootstrap
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.embedding import HashingEmbedder
from services.retrieval.recall import DEFAULT_SET, evaluate, load_set
from services.retrieval.settings import RetrievalSettings
from shared import subjects
from shared.bus import call
from shared.canary import Canaries
from shared.messages.base import Envelope, ErrorCode, Reply
from shared.messages.lifecycle import (
    DeprovisionTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantProvisioned,
)
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
from shared.service import Service

pytestmark = pytest.mark.integration

R = TypeVar("R", bound=Reply)
CANARIES = Canaries(RetrievalSettings().canary_secret.get_secret_value().encode())
VERBS = ("ingest", "search", "delete_document", "delete_collection")

# Measured 0.906 recall@5 (MRR 0.80) on tests/data/retrieval_labelled.json; the floor
# leaves room for one or two queries' worth of drift, not for a broken embedder.
RECALL_FLOOR = 0.80  # hashing-v2: 0.844; the hash seeds alone move it 0.84-0.96

ACME_DOCS = [
    Document(
        document_id="acme-wifi",
        text="The Acme thermostat joins 2.4 GHz wireless networks only. Hold the dial to pair.",
    ),
    Document(
        document_id="acme-handbook",
        text="\n\n".join(
            f"Section {i}. Acme staff book annual leave in the HR portal two weeks ahead. "
            "Unused days lapse at the end of March, except five carried over."
            for i in range(12)
        ),
        metadata={"source": "handbook"},
    ),
]
GLOBEX_DOCS = [
    Document(
        document_id="globex-wifi",
        text="Globex routers broadcast a combined wireless network; thermostat pairing uses WPS.",
    ),
]


@pytest_asyncio.fixture(scope="module")
async def retrieval(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    data = tmp_path_factory.mktemp("retrieval")
    service = bootstrap(RetrievalSettings(nats_url=nats_url, data_dir=data))
    await service.start()
    await wait_until_answering(nats_url)
    yield service
    await service.stop()


async def wait_until_answering(nats_url: str, timeout_s: float = 5.0) -> None:
    """Probe every verb until the service answers it.

    Service.start returning does not mean nats-server has its subscriptions: nats-py's
    flush() writes its PING straight to the socket, ahead of SUBs still in its buffer,
    so the first request can get "no responders" (seen ~5% of the time under load).
    An empty body is refused as malformed without touching the store or the audit trail.
    """
    probe = await nats.connect(nats_url)
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        for verb in VERBS:
            while True:
                try:
                    await probe.request(
                        subjects.service("retrieval", verb, "probe"), b"", timeout=1
                    )
                    break
                except nats.errors.NoRespondersError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.02)
    finally:
        await probe.close()


async def ask(broker: NatsBroker, verb: str, message: Envelope, reply: type[R]) -> R:
    subject = subjects.service("retrieval", verb, message.tenant_id)
    return await call(broker, subject, message, reply, 10)


async def test_each_tenant_searches_only_its_own_documents(
    retrieval: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    acme, globex = new_tenant_id("acme"), new_tenant_id("globex")
    done = await ask(
        client_broker,
        "ingest",
        IngestDocuments(tenant_id=acme, documents=ACME_DOCS),
        DocumentsIngested,
    )
    assert done.ok and done.documents == 2 and done.chunks > 2
    other = await ask(
        client_broker,
        "ingest",
        IngestDocuments(tenant_id=globex, documents=GLOBEX_DOCS),
        DocumentsIngested,
    )
    assert other.ok and other.chunks == 1

    query = "pair thermostat with wireless network"
    for tid, own in ((acme, "acme-"), (globex, "globex-")):
        found = await ask(
            client_broker, "search", SearchChunks(tenant_id=tid, query=query, top_k=50), ChunksFound
        )
        assert found.ok and found.chunks
        assert {c.tenant_id for c in found.chunks} == {tid}
        assert all(c.document_id.startswith(own) for c in found.chunks)
        assert found.chunks[0].document_id == f"{own}wifi"
        assert found.chunks == sorted(found.chunks, key=lambda c: c.score, reverse=True)

    found = await ask(
        client_broker,
        "search",
        SearchChunks(tenant_id=acme, query="carry over leave days", top_k=3),
        ChunksFound,
    )
    assert [c.document_id for c in found.chunks] == ["acme-handbook"] * 3


async def test_unknown_tenant_gets_an_empty_list(
    retrieval: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    found = await ask(
        client_broker,
        "search",
        SearchChunks(tenant_id=new_tenant_id("new"), query="anything"),
        ChunksFound,
    )
    assert found.ok and found.chunks == []


async def test_reingest_replaces_and_deletes_count_chunks(
    retrieval: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("re")
    first = await ask(
        client_broker,
        "ingest",
        IngestDocuments(tenant_id=tid, documents=ACME_DOCS),
        DocumentsIngested,
    )
    short = Document(
        document_id="acme-handbook", text="Leave is now booked by email to the office manager."
    )
    second = await ask(
        client_broker,
        "ingest",
        IngestDocuments(tenant_id=tid, documents=[short]),
        DocumentsIngested,
    )
    assert second.ok and second.chunks == 1
    found = await ask(
        client_broker,
        "search",
        SearchChunks(tenant_id=tid, query="book leave", top_k=50),
        ChunksFound,
    )
    handbook = [c for c in found.chunks if c.document_id == "acme-handbook"]
    # The longer version's tail is gone; the stored text carries the tenant's canary.
    assert [CANARIES.strip_own(tid, c.text) for c in handbook] == [short.text]
    assert all(CANARIES.token(tid) in c.text for c in handbook)
    assert len(found.chunks) == 2

    deleted = await ask(
        client_broker,
        "delete_document",
        DeleteDocument(tenant_id=tid, document_id="acme-wifi"),
        DocumentDeleted,
    )
    assert deleted.ok and deleted.chunks_deleted == 1
    again = await ask(
        client_broker,
        "delete_document",
        DeleteDocument(tenant_id=tid, document_id="acme-wifi"),
        DocumentDeleted,
    )
    assert again.ok and again.chunks_deleted == 0

    dropped = await ask(
        client_broker, "delete_collection", DeleteCollection(tenant_id=tid), CollectionDeleted
    )
    assert dropped.ok and dropped.existed and dropped.chunks_deleted == 1
    assert first.chunks > 1
    gone = await ask(
        client_broker, "delete_collection", DeleteCollection(tenant_id=tid), CollectionDeleted
    )
    assert gone.ok and not gone.existed
    empty = await ask(
        client_broker, "search", SearchChunks(tenant_id=tid, query="leave"), ChunksFound
    )
    assert empty.ok and empty.chunks == []


async def test_bad_requests_get_error_replies_and_the_service_keeps_going(
    retrieval: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("bad")
    raw = await client_broker.connection.request(
        subjects.service("retrieval", "search", tid), b"{not json", timeout=5
    )
    reply = ChunksFound.model_validate_json(raw.data)
    assert reply.error and reply.error.code is ErrorCode.MALFORMED_REQUEST

    body = json.dumps({"tenant_id": tid, "documents": []}).encode()
    raw = await client_broker.connection.request(
        subjects.service("retrieval", "ingest", tid), body, timeout=5
    )
    ingest_reply = DocumentsIngested.model_validate_json(raw.data)
    assert ingest_reply.error and ingest_reply.error.code is ErrorCode.MALFORMED_REQUEST
    assert "documents" in ingest_reply.error.message

    blank = IngestDocuments(
        tenant_id=tid, documents=[Document(document_id="blank", text="  \n\n ")]
    )
    refused = await ask(client_broker, "ingest", blank, DocumentsIngested)
    assert refused.error and refused.error.code is ErrorCode.MALFORMED_REQUEST

    mismatched = await call(
        client_broker,
        subjects.service("retrieval", "search", tid),
        SearchChunks(tenant_id=new_tenant_id("other"), query="x"),
        ChunksFound,
        5,
    )
    assert mismatched.error and mismatched.error.code is ErrorCode.INVALID_TENANT

    ok = await ask(
        client_broker, "search", SearchChunks(tenant_id=tid, query="still alive?"), ChunksFound
    )
    assert ok.ok


async def test_audit_events_carry_counts_never_text(
    retrieval: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("aud")
    events: list[dict[str, Any]] = []

    async def collect(msg: Msg) -> None:
        events.append(json.loads(msg.data))

    sub = await client_broker.connection.subscribe(subjects.audit_event(tid), cb=collect)
    secret_text = "Quarterly numbers: revenue 4.2 million, margin 31 percent."
    await ask(
        client_broker,
        "ingest",
        IngestDocuments(tenant_id=tid, documents=[Document(document_id="q3", text=secret_text)]),
        DocumentsIngested,
    )
    await ask(
        client_broker,
        "search",
        SearchChunks(tenant_id=tid, query="revenue margin quarter"),
        ChunksFound,
    )
    await ask(
        client_broker,
        "delete_document",
        DeleteDocument(tenant_id=tid, document_id="q3"),
        DocumentDeleted,
    )
    await ask(
        client_broker, "delete_collection", DeleteCollection(tenant_id=tid), CollectionDeleted
    )
    for _ in range(50):
        if len(events) >= 4:
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()

    kinds = [(e["event_type"], e["action"]) for e in events]
    assert kinds == [
        ("data_access", "documents.ingest"),
        ("data_access", "chunks.search"),
        ("deletion", "document.delete"),
        ("deletion", "collection.delete"),
    ]
    assert events[0]["details"]["chunks"] == 1
    assert events[1]["details"]["results"] == 1
    assert events[2]["details"]["chunks_deleted"] == 1
    dumped = json.dumps(events)
    assert "revenue" not in dumped and "margin" not in dumped


async def test_local_store_persists_and_the_service_releases_its_lock(
    nats_url: str, tmp_path: Path
) -> None:
    # Straight through the store: a second service here would share the queue group
    # with the module's one, and requests could land on either.
    embedder = HashingEmbedder()
    store = QdrantStore.local(tmp_path / "qdrant")
    await store.open()
    await index.ingest(store, embedder, ChunkingConfig(), "persist", GLOBEX_DOCS)
    await store.close()

    service = bootstrap(RetrievalSettings(nats_url=nats_url, data_dir=tmp_path))
    await service.start()  # opening the folder fails if the store above kept its lock
    await service.stop()

    reopened = QdrantStore.local(tmp_path / "qdrant")
    await reopened.open()  # ...and this fails if the service kept it
    try:
        hits = await index.search(reopened, embedder, "persist", "router pairing", 5)
        assert [h.document_id for h in hits] == ["globex-wifi"]
    finally:
        await reopened.close()


async def test_collection_built_with_another_width_is_refused(tmp_path: Path) -> None:
    store = QdrantStore.local(tmp_path)
    await store.open()
    try:
        vector = HashingEmbedder(64).embed(["hello"])[0]
        chunk = StoredChunk("00000000-0000-0000-0000-000000000001", "w", "d", 0, "hello", vector)
        await store.upsert("w", [chunk], 64)
        with pytest.raises(DimensionMismatch):
            await store.upsert("w", [chunk], 128)
    finally:
        await store.close()


async def test_recall_on_the_labelled_set_stays_above_the_floor(tmp_path: Path) -> None:
    report = await evaluate(load_set(DEFAULT_SET), tmp_path)
    assert report.queries >= 40 and report.documents >= 40
    assert report.recall_at_k >= RECALL_FLOOR, report.misses
    assert report.mrr >= 0.7


async def test_provision_and_deprovision_are_idempotent(
    retrieval: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("life")
    first = await ask(client_broker, "provision", ProvisionTenant(tenant_id=tid), TenantProvisioned)
    again = await ask(client_broker, "provision", ProvisionTenant(tenant_id=tid), TenantProvisioned)
    assert first.ok and first.created and again.ok and not again.created
    done = await ask(
        client_broker,
        "ingest",
        IngestDocuments(tenant_id=tid, documents=ACME_DOCS[:1]),
        DocumentsIngested,
    )
    assert done.ok, done.error
    gone = await ask(
        client_broker, "deprovision", DeprovisionTenant(tenant_id=tid), TenantDeprovisioned
    )
    assert gone.ok and gone.removed == done.chunks
    twice = await ask(
        client_broker, "deprovision", DeprovisionTenant(tenant_id=tid), TenantDeprovisioned
    )
    assert twice.ok and twice.removed == 0
