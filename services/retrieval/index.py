"""Retrieval logic: ingest, search and delete within one tenant's collection. No broker here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.retrieval.adapters import Hit, StoredChunk, VectorStore
from services.retrieval.chunking import ChunkingConfig, chunk_text
from services.retrieval.embedding import Embedder
from shared.canary import Canaries
from shared.logging import get_logger
from shared.messages.retrieval import Document

log = get_logger("tenantry.retrieval.index")

# Chunk ids are uuid5 of tenant/document/index: re-ingesting a document overwrites its
# chunks in place, and every replica computes the same id for the same chunk.
CHUNK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "tenantry:retrieval:chunk")

# Ingest embeds in a worker thread once there is enough text for it to matter.
_INLINE_EMBED_CHARS = 20_000
# Chunks embedded per group; groups are written while the next is embedded.
_PIPELINE_CHUNKS = 128


class InvalidDocuments(ValueError):
    """A request the store must not act on; the message is safe to show the client."""


@dataclass(frozen=True)
class Ingested:
    documents: int
    chunks: int
    stale_chunks_removed: int


def chunk_id(tenant_id: str, document_id: str, index: int) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{tenant_id}/{document_id}/{index}"))


async def ingest(
    store: VectorStore,
    embedder: Embedder,
    chunking: ChunkingConfig,
    tenant_id: str,
    documents: Sequence[Document],
    canaries: Canaries | None = None,
) -> Ingested:
    """(Re)index documents. New chunks are written before stale ones are removed, so a
    re-ingested document is never briefly missing from search.

    With `canaries`, each stored chunk's text ends with the tenant's canary token (the
    vector is of the text without it, so search quality is unchanged)."""
    seen: set[str] = set()
    per_document: list[tuple[Document, list[str]]] = []
    for doc in documents:
        if doc.document_id in seen:
            raise InvalidDocuments(f"document_id {doc.document_id!r} appears more than once")
        seen.add(doc.document_id)
        texts = chunk_text(doc.text, chunking)
        if not texts:
            raise InvalidDocuments(f"document {doc.document_id!r} has no text to index")
        per_document.append((doc, texts))

    pieces = [(doc, i, piece) for doc, texts in per_document for i, piece in enumerate(texts)]
    await _embed_and_store(store, embedder, tenant_id, pieces, canaries)

    # Ids 0..n-1 were just overwritten; a chunk with id n exists only if a longer
    # version was stored before. Probing that one id per document is a look-up by id;
    # the filtered delete (a scan in Qdrant local mode) runs only for those that had one.
    beyond = {
        chunk_id(tenant_id, doc.document_id, len(texts)): (doc.document_id, len(texts))
        for doc, texts in per_document
    }
    stale = 0
    for probe in await store.existing(tenant_id, list(beyond)):
        document_id, length = beyond[probe]
        stale += await store.delete_document(tenant_id, document_id, from_index=length)
    return Ingested(documents=len(per_document), chunks=len(pieces), stale_chunks_removed=stale)


async def _embed_and_store(
    store: VectorStore,
    embedder: Embedder,
    tenant_id: str,
    pieces: list[tuple[Document, int, str]],
    canaries: Canaries | None,
) -> None:
    """Embed and upsert in groups, the store writing one group while the next is
    embedded (it works in another thread or process); every write is done on return."""
    writing: asyncio.Future[None] | None = None
    try:
        for start in range(0, len(pieces), _PIPELINE_CHUNKS):
            group = pieces[start : start + _PIPELINE_CHUNKS]
            texts = [piece for _, _, piece in group]
            if sum(map(len, texts)) > _INLINE_EMBED_CHARS:
                vectors = await asyncio.to_thread(embedder.embed, texts)
            else:
                vectors = embedder.embed(texts)
            chunks = [
                StoredChunk(
                    chunk_id=chunk_id(tenant_id, doc.document_id, i),
                    tenant_id=tenant_id,
                    document_id=doc.document_id,
                    chunk_index=i,
                    text=canaries.plant(tenant_id, piece) if canaries else piece,
                    vector=vector,
                    metadata=dict(doc.metadata),
                )
                for (doc, i, piece), vector in zip(group, vectors, strict=True)
            ]
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(
                store.upsert(tenant_id, chunks, embedder.dim, embedder.name)
            )
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            await asyncio.wait([writing])  # a write in flight ends either way


async def search(
    store: VectorStore, embedder: Embedder, tenant_id: str, query: str, top_k: int
) -> list[Hit]:
    vector = embedder.embed([query])[0]
    if not vector.any():
        return []  # only stop words or punctuation: nothing to match on
    hits = await store.search(tenant_id, vector, top_k, embedder.name)
    own = [hit for hit in hits if hit.tenant_id == tenant_id]
    if len(own) != len(hits):
        # Cannot happen with per-tenant collections; if it ever does, the foreign chunks
        # are dropped here (the last check before text leaves the service) and logged.
        log.error("retrieval.foreign_chunks_dropped", dropped=len(hits) - len(own))
    return own


async def delete_document(store: VectorStore, tenant_id: str, document_id: str) -> int:
    return await store.delete_document(tenant_id, document_id)


async def delete_collection(store: VectorStore, tenant_id: str) -> tuple[bool, int]:
    return await store.drop(tenant_id)
