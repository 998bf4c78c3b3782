"""retrieval's handlers: thin wrappers over the index functions, each leaving an audit event.

Audit details hold counts and ids only, never document text or query text. Ingest and
deletes also tell leakage what the tenant now holds (content fingerprints, durable on
evt.<tid>.fingerprints), so another tenant's response quoting it can be caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.retrieval import fingerprints, index
from services.retrieval.adapters import DimensionMismatch, VectorStore, collection_name
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.embedding import Embedder
from shared.audit import AuditTrail
from shared.canary import Canaries
from shared.intake import error_reply, reply_ok
from shared.messages.audit import AuditEventType, AuditStatus, DetailValue
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.leakage import FingerprintsChanged
from shared.messages.lifecycle import (
    DeprovisionTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantProvisioned,
)
from shared.messages.retrieval import (
    Chunk,
    ChunksFound,
    CollectionDeleted,
    DeleteCollection,
    DeleteDocument,
    DocumentDeleted,
    DocumentsIngested,
    IngestDocuments,
    SearchChunks,
)
from shared.service import Handlers, Rpc

SERVICE = "retrieval"
# Fingerprinting runs in a worker thread once a batch is big enough to matter.
_INLINE_FINGERPRINT_CHARS = 50_000

Publish = Callable[[FingerprintsChanged], Awaitable[None]]


@dataclass(frozen=True)
class Deps:
    store: VectorStore
    embedder: Embedder
    chunking: ChunkingConfig
    trail: AuditTrail
    # Durable publish of content fingerprints for leakage (evt.<tid>.fingerprints).
    publish: Publish
    canaries: Canaries | None = None
    # Only a store bootstrap opened is closed at stop; one passed in is the caller's.
    # Closing releases the embedded folder (local mode's lock, or the Edge worker).
    owns_store: bool = False

    async def close(self) -> None:
        if self.owns_store:
            await self.store.close()


async def ingest(msg: IngestDocuments, deps: Deps) -> DocumentsIngested:
    ids = [doc.document_id for doc in msg.documents]
    try:
        done = await index.ingest(
            deps.store, deps.embedder, deps.chunking, msg.tenant_id, msg.documents, deps.canaries
        )
    except (index.InvalidDocuments, DimensionMismatch) as exc:
        await _record_ingest(deps.trail, msg, ids, error=str(exc))
        code = (
            ErrorCode.MALFORMED_REQUEST
            if isinstance(exc, index.InvalidDocuments)
            else ErrorCode.CONFLICT
        )
        return error_reply(DocumentsIngested, msg, ErrorInfo(code=code, message=str(exc)))
    # After the store write: leakage must know what the tenant now holds. A failed
    # publish fails the request (the client retries; re-ingest is idempotent).
    if sum(len(doc.text) for doc in msg.documents) > _INLINE_FINGERPRINT_CHARS:
        events = await asyncio.to_thread(
            fingerprints.document_events, msg.tenant_id, msg.request_id, msg.documents
        )
    else:
        events = fingerprints.document_events(msg.tenant_id, msg.request_id, msg.documents)
    for event in events:  # in order: a big document's first event replaces, rest append
        await deps.publish(event)
    await _record_ingest(
        deps.trail,
        msg,
        ids,
        details={
            "documents": done.documents,
            "chunks": done.chunks,
            "stale_chunks_removed": done.stale_chunks_removed,
            "embedder": deps.embedder.name,
        },
    )
    return reply_ok(DocumentsIngested, msg, documents=done.documents, chunks=done.chunks)


async def search(msg: SearchChunks, deps: Deps) -> ChunksFound:
    hits = await index.search(deps.store, deps.embedder, msg.tenant_id, msg.query, msg.top_k)
    row = deps.trail.build_for(
        msg,
        event_type=AuditEventType.DATA_ACCESS,
        action="chunks.search",
        resource_type="collection",
        resource_id=collection_name(msg.tenant_id),
        details={
            "top_k": msg.top_k,
            "results": len(hits),
            "documents": len({hit.document_id for hit in hits}),
        },
    )
    carried = await deps.trail.publish_unless_carried(row, msg.audit_by_caller)
    chunks = [
        Chunk(
            tenant_id=hit.tenant_id,
            document_id=hit.document_id,
            chunk_id=hit.chunk_id,
            text=hit.text,
            score=hit.score,
        )
        for hit in hits
    ]
    return reply_ok(ChunksFound, msg, chunks=chunks, audit=carried)


async def delete_document(msg: DeleteDocument, deps: Deps) -> DocumentDeleted:
    removed = await index.delete_document(deps.store, msg.tenant_id, msg.document_id)
    await deps.publish(fingerprints.withdrawn(msg.tenant_id, msg.request_id, msg.document_id))
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action="document.delete",
        resource_type="document",
        resource_id=msg.document_id,
        details={"chunks_deleted": removed},
    )
    return reply_ok(DocumentDeleted, msg, chunks_deleted=removed)


async def delete_collection(msg: DeleteCollection, deps: Deps) -> CollectionDeleted:
    existed, removed = await _drop_collection(deps, msg, "collection.delete")
    return reply_ok(CollectionDeleted, msg, existed=existed, chunks_deleted=removed)


async def provision(msg: ProvisionTenant, deps: Deps) -> TenantProvisioned:
    created = await deps.store.create(msg.tenant_id, deps.embedder.dim)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.CONFIGURATION_CHANGE,
        action="collection.provision",
        resource_type="collection",
        resource_id=collection_name(msg.tenant_id),
        details={"created": created},
    )
    return reply_ok(TenantProvisioned, msg, created=created)


async def deprovision(msg: DeprovisionTenant, deps: Deps) -> TenantDeprovisioned:
    _, removed = await _drop_collection(deps, msg, "collection.deprovision")
    return reply_ok(TenantDeprovisioned, msg, removed=removed)


async def _record_ingest(
    trail: AuditTrail,
    msg: IngestDocuments,
    ids: list[str],
    *,
    error: str | None = None,
    details: dict[str, DetailValue] | None = None,
) -> None:
    await trail.record_for(
        msg,
        event_type=AuditEventType.DATA_ACCESS,
        action="documents.ingest",
        status=AuditStatus.FAILURE if error else AuditStatus.SUCCESS,
        error=error,
        resource_type="document",
        resource_id=ids[0] if len(ids) == 1 else "",
        details={**(details or {}), "document_ids": ",".join(ids)[:500]},
    )


async def _drop_collection(
    deps: Deps, msg: DeleteCollection | DeprovisionTenant, action: str
) -> tuple[bool, int]:
    """Drop the tenant's collection, withdraw its fingerprints, audit; idempotent."""
    existed, removed = await index.delete_collection(deps.store, msg.tenant_id)
    await deps.publish(fingerprints.withdrawn(msg.tenant_id, msg.request_id, None))
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action=action,
        resource_type="collection",
        resource_id=collection_name(msg.tenant_id),
        details={"existed": existed, "chunks_deleted": removed},
    )
    return existed, removed


HANDLERS = Handlers[Deps](
    SERVICE,
    rpcs=[
        Rpc("ingest", IngestDocuments, DocumentsIngested, ingest),
        Rpc("search", SearchChunks, ChunksFound, search),
        Rpc("delete_document", DeleteDocument, DocumentDeleted, delete_document),
        Rpc("delete_collection", DeleteCollection, CollectionDeleted, delete_collection),
        # Onboarding and offboarding (promptconfig's saga); both idempotent.
        Rpc("provision", ProvisionTenant, TenantProvisioned, provision),
        Rpc("deprovision", DeprovisionTenant, TenantDeprovisioned, deprovision),
    ],
)
