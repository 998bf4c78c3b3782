"""The vector store: one small interface, backed by Qdrant (server, or local mode in a folder).

Each tenant has its own collection, named from the validated tenant id, so a search
can only ever scan that tenant's points; every query also filters on the stored
tenant_id as a second line of defence.

qdrant-client's local mode is synchronous pure Python (its async client only wraps the
same blocking code), keeps a SQLite connection that must stay on the thread that opened
it, and is not thread-safe. So every call runs on one dedicated worker thread: the event
loop never blocks, and calls are serialised. A server needs no such care, so it gets a
few threads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from shared.logging import get_logger
from shared.tenancy import validate_tenant_id

T = TypeVar("T")
log = get_logger("tenantry.retrieval.store")

UPSERT_BATCH = 256


def collection_name(tenant_id: str) -> str:
    return f"tenant_{validate_tenant_id(tenant_id)}"


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as written to the store."""

    chunk_id: str
    tenant_id: str
    document_id: str
    chunk_index: int
    text: str
    vector: npt.NDArray[np.float32]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkColumns:
    """Chunks as columns, their vectors as one float32 matrix: how a batch crosses to
    the Edge worker (one buffer to pickle, one `tolist` there, instead of an array per
    chunk)."""

    chunk_ids: list[str]
    tenant_ids: list[str]
    document_ids: list[str]
    chunk_indexes: list[int]
    texts: list[str]
    metadata: list[dict[str, str]]
    vectors: npt.NDArray[np.float32]

    @classmethod
    def of(cls, chunks: Sequence[StoredChunk]) -> ChunkColumns:
        return cls(
            [c.chunk_id for c in chunks],
            [c.tenant_id for c in chunks],
            [c.document_id for c in chunks],
            [c.chunk_index for c in chunks],
            [c.text for c in chunks],
            [c.metadata for c in chunks],
            np.stack([c.vector for c in chunks]).astype(np.float32, copy=False)
            if chunks
            else np.zeros((0, 0), dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def payloads(self) -> list[dict[str, Any]]:
        """The payload stored with each point (the same in every backend)."""
        return [
            {
                "tenant_id": tenant_id,
                "document_id": document_id,
                "chunk_index": chunk_index,
                "text": text,
                "metadata": metadata,
            }
            for tenant_id, document_id, chunk_index, text, metadata in zip(
                self.tenant_ids,
                self.document_ids,
                self.chunk_indexes,
                self.texts,
                self.metadata,
                strict=True,
            )
        ]


@dataclass(frozen=True)
class Hit:
    """A chunk as found by a search; tenant_id is what was stored with it."""

    chunk_id: str
    tenant_id: str
    document_id: str
    chunk_index: int
    text: str
    score: float


class DimensionMismatch(Exception):
    """The tenant's collection was built with a different embedding width."""


class EmbedderMismatch(DimensionMismatch):
    """The tenant's collection holds another embedder's vectors (same width or not):
    comparing them with this embedder's would rank by noise, so the store refuses."""


def embedder_to_record(recorded: str | None, wanted: str | None, empty: Callable[[], bool]) -> bool:
    """Whether to record `wanted` as the collection's embedder now (it has none and
    holds no points). Raises EmbedderMismatch if its vectors are another embedder's,
    or are unlabelled (written before embedders were recorded). `wanted=None` checks
    nothing (tools and tests that write raw vectors)."""
    if wanted is None or recorded == wanted:
        return False
    if recorded is None and empty():
        return True
    raise EmbedderMismatch(
        f"collection holds vectors of {recorded or 'an earlier, unrecorded embedder'}; "
        f"this service embeds with {wanted}: delete the collection and ingest again"
    )


class VectorStore(Protocol):
    async def upsert(
        self,
        tenant_id: str,
        chunks: Sequence[StoredChunk],
        dim: int,
        embedder: str | None = None,
    ) -> None:
        """Write chunks, creating the tenant's collection (cosine, `dim` wide) if needed.
        With `embedder`, the collection records it and refuses another's vectors."""

    async def create(self, tenant_id: str, dim: int) -> bool:
        """Create the tenant's (empty) collection; False if it already existed."""

    async def delete_document(self, tenant_id: str, document_id: str, from_index: int = 0) -> int:
        """Remove the document's chunks with chunk_index >= from_index; return how many."""

    async def existing(self, tenant_id: str, chunk_ids: Sequence[str]) -> set[str]:
        """Which of these chunk ids are stored (a look-up by id, no scan)."""

    async def search(
        self,
        tenant_id: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        embedder: str | None = None,
    ) -> list[Hit]:
        """Best matches from the tenant's collection; [] if it has none. With
        `embedder`, refuses a collection that holds another embedder's vectors."""

    async def drop(self, tenant_id: str) -> tuple[bool, int]:
        """Delete the tenant's collection: (whether it existed, chunks it held)."""

    async def close(self) -> None: ...


class QdrantStore:
    def __init__(self, factory: Callable[[], QdrantClient], *, local: bool) -> None:
        self._factory = factory
        self._local = local
        self._executor = ThreadPoolExecutor(
            max_workers=1 if local else 4, thread_name_prefix="qdrant"
        )
        self._client: QdrantClient | None = None
        # Collections known to hold `embedder`'s vectors (recorded in their metadata),
        # so a search checks it once, not on every call.
        self._checked: dict[str, str] = {}

    @classmethod
    def local(cls, path: Path) -> QdrantStore:
        path.mkdir(parents=True, exist_ok=True)
        return cls(lambda: QdrantClient(path=str(path)), local=True)

    @classmethod
    def server(cls, url: str, api_key: str | None = None, timeout_s: int = 10) -> QdrantStore:
        return cls(lambda: QdrantClient(url=url, api_key=api_key, timeout=timeout_s), local=False)

    async def open(self) -> None:
        # Built on the worker thread, so local mode's SQLite connection belongs to it.
        try:
            self._client = await self._run(self._factory)
        except BaseException:
            self._executor.shutdown(wait=False)  # e.g. the folder is locked by another process
            raise

    async def close(self) -> None:
        if self._client is not None:
            await self._run(self._client.close)
            self._client = None
        self._executor.shutdown(wait=True)

    async def upsert(
        self,
        tenant_id: str,
        chunks: Sequence[StoredChunk],
        dim: int,
        embedder: str | None = None,
    ) -> None:
        await self._call(self._upsert, collection_name(tenant_id), chunks, dim, embedder)

    async def create(self, tenant_id: str, dim: int) -> bool:
        return await self._call(self._create, collection_name(tenant_id), dim)

    async def delete_document(self, tenant_id: str, document_id: str, from_index: int = 0) -> int:
        return await self._call(
            self._delete_document, collection_name(tenant_id), document_id, from_index
        )

    async def existing(self, tenant_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return await self._call(self._existing, collection_name(tenant_id), list(chunk_ids))

    async def search(
        self,
        tenant_id: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        embedder: str | None = None,
    ) -> list[Hit]:
        return await self._call(self._search, tenant_id, vector, limit, embedder)

    async def drop(self, tenant_id: str) -> tuple[bool, int]:
        return await self._call(self._drop, collection_name(tenant_id))

    # --- blocking halves, run on the worker thread -------------------------------------

    def _upsert(
        self,
        client: QdrantClient,
        name: str,
        chunks: Sequence[StoredChunk],
        dim: int,
        embedder: str | None,
    ) -> None:
        self._ensure_collection(client, name, dim, embedder)
        for start in range(0, len(chunks), UPSERT_BATCH):
            batch = ChunkColumns.of(chunks[start : start + UPSERT_BATCH])
            client.upsert(
                name,
                points=[
                    qm.PointStruct(id=chunk_id, vector=vector, payload=payload)
                    for chunk_id, vector, payload in zip(
                        batch.chunk_ids, batch.vectors.tolist(), batch.payloads(), strict=True
                    )
                ],
                wait=True,
            )

    def _create(self, client: QdrantClient, name: str, dim: int) -> bool:
        existed = client.collection_exists(name)
        self._ensure_collection(client, name, dim)
        return not existed

    def _ensure_collection(
        self, client: QdrantClient, name: str, dim: int, embedder: str | None = None
    ) -> None:
        if client.collection_exists(name):
            config = client.get_collection(name).config
            params = config.params.vectors
            size = params.size if isinstance(params, qm.VectorParams) else None
            if size != dim:
                raise DimensionMismatch(
                    f"collection holds {size}-wide vectors, embedder makes {dim}"
                )
            self._check_embedder(client, name, embedder, config.metadata)
            return
        try:
            # DOT, not COSINE: every Embedder returns L2-normalised rows, so the scores
            # are the same, but Qdrant's local mode re-normalises the whole collection
            # in place on every cosine search (bench: 266 ms p50 at 100k chunks).
            # Collections made before keep COSINE; both rank identically.
            client.create_collection(
                name,
                vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.DOT),
                metadata={"embedder": embedder} if embedder else None,
            )
        except (UnexpectedResponse, ValueError):
            # Another replica created it first (server: 409; local: ValueError). Fine if so.
            if not client.collection_exists(name):
                raise
        if not self._local:
            # Deletes filter on these; local mode scans anyway and warns about indexes.
            for key, schema in (
                ("document_id", qm.PayloadSchemaType.KEYWORD),
                ("chunk_index", qm.PayloadSchemaType.INTEGER),
                ("tenant_id", qm.PayloadSchemaType.KEYWORD),
            ):
                client.create_payload_index(name, key, field_schema=schema)

    def _check_embedder(
        self,
        client: QdrantClient,
        name: str,
        embedder: str | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        """The collection's metadata names the embedder of its vectors (a server needs
        collection metadata, Qdrant 1.16 or later)."""
        if embedder is None or self._checked.get(name) == embedder:
            return
        recorded = (metadata or {}).get("embedder")
        if embedder_to_record(recorded, embedder, lambda: client.count(name).count == 0):
            client.update_collection(name, metadata={"embedder": embedder})
        self._checked[name] = embedder

    def _existing(self, client: QdrantClient, name: str, chunk_ids: list[str]) -> set[str]:
        if not chunk_ids or not client.collection_exists(name):
            return set()
        found = client.retrieve(name, ids=chunk_ids, with_payload=False, with_vectors=False)
        return {str(point.id) for point in found}

    def _delete_document(
        self, client: QdrantClient, name: str, document_id: str, from_index: int
    ) -> int:
        if not client.collection_exists(name):
            return 0
        conditions: list[qm.Condition] = [
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=document_id))
        ]
        if from_index > 0:
            conditions.append(qm.FieldCondition(key="chunk_index", range=qm.Range(gte=from_index)))
        selector = qm.Filter(must=conditions)
        count = client.count(name, count_filter=selector, exact=True).count
        if count:
            client.delete(name, points_selector=qm.FilterSelector(filter=selector), wait=True)
        return count

    def _search(
        self,
        client: QdrantClient,
        tenant_id: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        embedder: str | None,
    ) -> list[Hit]:
        name = collection_name(tenant_id)
        if not client.collection_exists(name):
            return []
        if embedder is not None and self._checked.get(name) != embedder:
            metadata = client.get_collection(name).config.metadata
            if embedder_to_record(
                (metadata or {}).get("embedder"), embedder, lambda: client.count(name).count == 0
            ):
                return []  # empty and unlabelled: nothing to find (the first ingest labels it)
            self._checked[name] = embedder
        # The collection is the tenant's own; on a server the tenant_id filter is a cheap
        # indexed second check. Local mode evaluates filters in Python per point (8x the
        # cost of the scan itself), so there index.search checks each hit's owner instead.
        owner = qm.Filter(
            must=[qm.FieldCondition(key="tenant_id", match=qm.MatchValue(value=tenant_id))]
        )
        response = client.query_points(
            name,
            query=vector,
            query_filter=None if self._local else owner,
            limit=limit,
            with_payload=True,
        )
        return [_hit(point) for point in response.points]

    def _drop(self, client: QdrantClient, name: str) -> tuple[bool, int]:
        if not client.collection_exists(name):
            return False, 0
        count = client.count(name, exact=True).count
        client.delete_collection(name)
        self._checked.pop(name, None)
        return True, count

    # --- plumbing ----------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        client = self._client
        if client is None:
            raise RuntimeError("QdrantStore used before open()")
        return await self._run(functools.partial(fn, client, *args))

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)


def _hit(point: qm.ScoredPoint) -> Hit:
    payload: dict[str, Any] = point.payload or {}
    return Hit(
        chunk_id=str(point.id),
        tenant_id=str(payload.get("tenant_id", "")),
        document_id=str(payload.get("document_id", "")),
        chunk_index=int(payload.get("chunk_index", 0)),
        text=str(payload.get("text", "")),
        score=float(point.score),
    )
