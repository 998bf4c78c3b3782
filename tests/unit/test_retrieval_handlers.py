"""retrieval's handlers with an in-memory vector store: no Qdrant, no broker."""

from __future__ import annotations

from typing import Any, cast

from services.retrieval.chunking import ChunkingConfig
from services.retrieval.embedding import HashingEmbedder
from services.retrieval.handlers import Deps, delete_document, ingest, provision, search
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode
from shared.messages.leakage import FingerprintsChanged, FingerprintScope
from shared.messages.lifecycle import ProvisionTenant
from shared.messages.retrieval import DeleteDocument, Document, IngestDocuments, SearchChunks
from tests.support.handlers import recording_trail
from tests.unit.test_retrieval_index import FakeVectorStore


def make() -> tuple[Deps, list[FingerprintsChanged], list[Any]]:
    trail, events = recording_trail("retrieval")
    published: list[FingerprintsChanged] = []

    async def publish(event: FingerprintsChanged) -> None:
        published.append(event)

    deps = Deps(
        store=cast(Any, FakeVectorStore()),
        embedder=HashingEmbedder(256),
        chunking=ChunkingConfig(max_chars=120, target_chars=80, overlap_chars=0),
        trail=trail,
        publish=publish,
    )
    return deps, published, events


WIFI = Document(document_id="wifi", text="Connect the thermostat to a 2.4 GHz wireless network.")


async def test_ingest_publishes_fingerprints_then_search_finds_it_and_both_are_audited() -> None:
    deps, published, events = make()
    await provision(ProvisionTenant(tenant_id="acme"), deps)
    done = await ingest(IngestDocuments(tenant_id="acme", documents=[WIFI]), deps)
    assert done.ok and (done.documents, done.chunks) == (1, 1)
    assert [(e.tenant_id, e.document_id) for e in published] == [("acme", "wifi")]
    found = await search(SearchChunks(tenant_id="acme", query="thermostat wireless"), deps)
    assert [c.document_id for c in found.chunks] == ["wifi"]
    assert [e.action for e in events] == [
        "collection.provision",
        "documents.ingest",
        "chunks.search",
    ]
    assert events[-1].event_type is AuditEventType.DATA_ACCESS
    assert events[-1].request_id == found.request_id


async def test_a_refused_ingest_is_an_error_reply_audited_as_failure_and_publishes_nothing() -> (
    None
):
    deps, published, events = make()
    twice = IngestDocuments(tenant_id="acme", documents=[WIFI, WIFI])
    reply = await ingest(twice, deps)
    assert reply.error is not None and reply.error.code is ErrorCode.MALFORMED_REQUEST
    assert published == [] and events[-1].status is AuditStatus.FAILURE


async def test_deleting_a_document_withdraws_its_fingerprints() -> None:
    deps, published, _ = make()
    await ingest(IngestDocuments(tenant_id="acme", documents=[WIFI]), deps)
    gone = await delete_document(DeleteDocument(tenant_id="acme", document_id="wifi"), deps)
    assert gone.chunks_deleted == 1
    assert published[-1].scope is FingerprintScope.DOCUMENT and not published[-1].fingerprints


async def test_a_search_whose_caller_records_the_trail_hands_its_row_back() -> None:
    deps, _, events = make()
    await provision(ProvisionTenant(tenant_id="acme"), deps)
    await ingest(IngestDocuments(tenant_id="acme", documents=[WIFI]), deps)
    before = len(events)
    ask = SearchChunks(tenant_id="acme", query="thermostat", audit_by_caller=True)
    found = await search(ask, deps)
    assert len(events) == before  # nothing published: the gateway carries it
    assert found.audit is not None and found.audit.action == "chunks.search"
    assert found.audit.event_type is AuditEventType.DATA_ACCESS
    assert (found.audit.tenant_id, found.audit.request_id) == ("acme", ask.request_id)
    assert found.audit.details["results"] == 1
