"""index logic against an in-memory VectorStore fake: no Qdrant, no broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from services.retrieval import index
from services.retrieval.adapters import Hit, StoredChunk
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.embedding import HashingEmbedder
from shared.messages.retrieval import Document

pytestmark = pytest.mark.unit

SMALL = ChunkingConfig(max_chars=120, target_chars=80, overlap_chars=0)
EMBEDDER = HashingEmbedder(256)


class FakeVectorStore:
    """Per-tenant dicts of chunks; cosine is a dot product as vectors are unit length."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, StoredChunk]] = {}
        self.dims: dict[str, int] = {}
        self.embedders: dict[str, str | None] = {}

    async def upsert(
        self,
        tenant_id: str,
        chunks: Sequence[StoredChunk],
        dim: int,
        embedder: str | None = None,
    ) -> None:
        collection = self.collections.setdefault(tenant_id, {})
        self.dims.setdefault(tenant_id, dim)
        self.embedders[tenant_id] = embedder
        for chunk in chunks:
            collection[chunk.chunk_id] = chunk

    async def create(self, tenant_id: str, dim: int) -> bool:
        existed = tenant_id in self.collections
        self.collections.setdefault(tenant_id, {})
        self.dims.setdefault(tenant_id, dim)
        return not existed

    async def existing(self, tenant_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return set(chunk_ids) & set(self.collections.get(tenant_id, {}))

    async def delete_document(self, tenant_id: str, document_id: str, from_index: int = 0) -> int:
        collection = self.collections.get(tenant_id, {})
        doomed = [
            cid
            for cid, c in collection.items()
            if c.document_id == document_id and c.chunk_index >= from_index
        ]
        for cid in doomed:
            del collection[cid]
        return len(doomed)

    async def search(
        self,
        tenant_id: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        embedder: str | None = None,
    ) -> list[Hit]:
        assert embedder == self.embedders.get(tenant_id, embedder)
        scored = sorted(
            self.collections.get(tenant_id, {}).values(),
            key=lambda c: float(c.vector @ vector),
            reverse=True,
        )
        return [
            Hit(
                c.chunk_id,
                c.tenant_id,
                c.document_id,
                c.chunk_index,
                c.text,
                float(c.vector @ vector),
            )
            for c in scored[:limit]
        ]

    async def drop(self, tenant_id: str) -> tuple[bool, int]:
        collection = self.collections.pop(tenant_id, None)
        return collection is not None, len(collection or {})

    async def close(self) -> None:
        pass


def long_text(topic: str, sentences: int) -> str:
    return " ".join(f"Part {i} explains {topic} in some detail." for i in range(sentences))


async def test_ingest_then_search_finds_the_right_document() -> None:
    store = FakeVectorStore()
    docs = [
        Document(document_id="wifi", text="Connect the thermostat to a 2.4 GHz wireless network."),
        Document(document_id="refund", text="Annual plans are refunded pro rata."),
    ]
    done = await index.ingest(store, EMBEDDER, SMALL, "acme", docs)
    assert (done.documents, done.chunks, done.stale_chunks_removed) == (2, 2, 0)
    hits = await index.search(store, EMBEDDER, "acme", "thermostat wireless setup", 1)
    assert [h.document_id for h in hits] == ["wifi"]
    assert hits[0].tenant_id == "acme"
    assert store.dims["acme"] == 256
    assert store.embedders["acme"] == EMBEDDER.name  # searches then name it too (asserted)


async def test_a_big_ingest_is_embedded_and_written_in_groups_all_before_it_returns() -> None:
    store = FakeVectorStore()
    written: list[int] = []
    upsert = store.upsert

    async def counting(tenant_id: str, chunks: Sequence[StoredChunk], *args: object) -> None:
        await asyncio.sleep(0.01)  # a store slower than the embedder
        await upsert(tenant_id, chunks, *args)  # type: ignore[arg-type]
        written.append(len(chunks))

    store.upsert = counting  # type: ignore[method-assign]
    docs = [Document(document_id=f"d{i}", text=f"topic {i} in brief") for i in range(300)]
    done = await index.ingest(store, EMBEDDER, SMALL, "acme", docs)
    assert written == [128, 128, 44] and done.chunks == 300
    assert len(store.collections["acme"]) == 300


async def test_a_failed_group_write_fails_the_ingest() -> None:
    store = FakeVectorStore()

    async def failing(*args: object) -> None:
        raise RuntimeError("disk full")

    store.upsert = failing  # type: ignore[method-assign]
    docs = [Document(document_id=f"d{i}", text=f"topic {i}") for i in range(200)]
    with pytest.raises(RuntimeError, match="disk full"):
        await index.ingest(store, EMBEDDER, SMALL, "acme", docs)


async def test_chunk_ids_are_deterministic_and_scoped_to_tenant_and_document() -> None:
    assert index.chunk_id("a", "doc", 0) == index.chunk_id("a", "doc", 0)
    ids = {index.chunk_id(t, d, i) for t in ("a", "b") for d in ("x", "y") for i in (0, 1)}
    assert len(ids) == 8


async def test_reingest_replaces_old_chunks_including_a_longer_tail() -> None:
    store = FakeVectorStore()
    await index.ingest(
        store, EMBEDDER, SMALL, "acme", [Document(document_id="d", text=long_text("ovens", 12))]
    )
    before = len(store.collections["acme"])
    assert before > 3
    done = await index.ingest(
        store, EMBEDDER, SMALL, "acme", [Document(document_id="d", text=long_text("fridges", 2))]
    )
    assert done.stale_chunks_removed == before - done.chunks
    texts = [c.text for c in store.collections["acme"].values()]
    assert len(texts) == done.chunks
    assert all("fridges" in t for t in texts)


async def test_duplicate_and_empty_documents_are_refused_before_writing() -> None:
    store = FakeVectorStore()
    with pytest.raises(index.InvalidDocuments, match="more than once"):
        await index.ingest(
            store,
            EMBEDDER,
            SMALL,
            "acme",
            [Document(document_id="d", text="one"), Document(document_id="d", text="two")],
        )
    with pytest.raises(index.InvalidDocuments, match="no text"):
        await index.ingest(store, EMBEDDER, SMALL, "acme", [Document(document_id="e", text=" \n ")])
    assert store.collections == {}


async def test_tenants_only_ever_see_their_own_chunks() -> None:
    store = FakeVectorStore()
    await index.ingest(
        store, EMBEDDER, SMALL, "acme", [Document(document_id="a", text="acme secret roadmap")]
    )
    await index.ingest(
        store, EMBEDDER, SMALL, "globex", [Document(document_id="g", text="globex roadmap")]
    )
    hits = await index.search(store, EMBEDDER, "globex", "secret roadmap", 10)
    assert {h.tenant_id for h in hits} == {"globex"}
    assert await index.search(store, EMBEDDER, "initech", "roadmap", 10) == []


async def test_foreign_hits_from_a_misbehaving_store_are_dropped() -> None:
    store = FakeVectorStore()
    await index.ingest(store, EMBEDDER, SMALL, "acme", [Document(document_id="a", text="roadmap")])
    planted = replace(
        next(iter(store.collections["acme"].values())), chunk_id="x", tenant_id="evil"
    )
    store.collections["acme"]["x"] = planted
    hits = await index.search(store, EMBEDDER, "acme", "roadmap", 10)
    assert [h.tenant_id for h in hits] == ["acme"]


async def test_stop_word_only_query_returns_nothing_without_searching() -> None:
    store = FakeVectorStore()
    await index.ingest(
        store, EMBEDDER, SMALL, "acme", [Document(document_id="a", text="the roadmap")]
    )
    assert await index.search(store, EMBEDDER, "acme", "the of and", 5) == []


async def test_delete_document_and_collection_report_counts() -> None:
    store = FakeVectorStore()
    await index.ingest(
        store,
        EMBEDDER,
        SMALL,
        "acme",
        [
            Document(document_id="a", text=long_text("ovens", 8)),
            Document(document_id="b", text="x y"),
        ],
    )
    a_chunks = sum(c.document_id == "a" for c in store.collections["acme"].values())
    assert await index.delete_document(store, "acme", "a") == a_chunks
    assert await index.delete_document(store, "acme", "a") == 0
    assert await index.delete_collection(store, "acme") == (True, 1)
    assert await index.delete_collection(store, "acme") == (False, 0)
