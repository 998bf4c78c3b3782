"""Retrieval at scale: ingest chunks/s, search p50/p99 at 1k, 10k, 100k chunks in one
tenant's collection, and across 100 tenants.

In-process, not over the bus: the retrieval service's own code path (services/retrieval/
index.py: chunk, embed with the default HashingEmbedder, upsert; embed the query, search)
on Qdrant local mode, the embedded fallback, in a temporary folder (bench/retrieval_edge.py
measures the default, Qdrant Edge). Going through NATS adds
one request/reply (see bench/pipeline.py for the hop's cost) and would make a 100k ingest
measure the bus, not the index. Each document is one ~500-character chunk of pseudo-words.

Ingest is measured two ways. The service path (index.ingest: chunk, embed, upsert, then
a stale-chunk clean-up per document) for the first 1k chunks; that clean-up counts the
document's points with a payload filter, which local mode evaluates in Python over the
whole collection, so the service path slows down as the collection grows (108 chunks/s
at 1k, 18 at 10k when measured here) and cannot reach 100k in a bounded run. Beyond 1k
the collection is grown by bulk upserts of new chunks (embedded from a 10k-text pool,
then reused), the way a first load with no stale chunks could be written; the figures
are the embedder's and the store's own rates.

Qdrant local mode is a brute-force scan in Python/numpy (it warns above 20k points);
the 100k figure shows where that stops being fit for a request path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench.loadgen import percentiles
from bench.rig import document_text
from services.retrieval import index
from services.retrieval.adapters import QdrantStore, StoredChunk
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.embedding import HashingEmbedder
from services.retrieval.settings import RetrievalSettings
from shared.messages.retrieval import Document

SIZES = (1_000, 10_000, 100_000)
SERVICE_PATH_CHUNKS = 1_000  # through index.ingest, exactly as the service ingests
BATCH = 250  # documents per ingest call, as a client's bulk ingest would send
POOL = 10_000  # distinct texts embedded; beyond that, texts and vectors repeat
BULK = 5_000  # chunks per bulk upsert
BUDGET_S = 240.0  # stop growing the collection after this long, and say where it stopped
TENANTS = 100
PER_TENANT = 100
TOP_K = 4


def run(results_dir: Path) -> dict[str, Any]:
    return asyncio.run(_run())


async def _run() -> dict[str, Any]:
    logging.getLogger("qdrant_client").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    settings = RetrievalSettings()
    embedder = HashingEmbedder(settings.embed_dim)
    chunking = ChunkingConfig(
        max_chars=settings.chunk_max_chars,
        target_chars=settings.chunk_target_chars,
        overlap_chars=settings.chunk_overlap_chars,
    )
    rng = random.Random(11)
    results: dict[str, Any] = {
        "mode": "in-process: services.retrieval.index on Qdrant local mode",
        "embedder": embedder.name,
        "dim": embedder.dim,
        "top_k": TOP_K,
    }
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        store = QdrantStore.local(Path(tmp) / "qdrant")
        await store.open()
        try:
            one = "bench-one"
            docs = [_doc(rng, n) for n in range(SERVICE_PATH_CHUNKS)]
            started = time.perf_counter()
            for i in range(0, len(docs), BATCH):
                await index.ingest(store, embedder, chunking, one, docs[i : i + BATCH])
            results["ingest_service_path_chunks_per_s"] = round(
                len(docs) / (time.perf_counter() - started)
            )
            texts = [d.text for d in docs]
            pool = [document_text(rng, words=70) for _ in range(POOL)]
            started = time.perf_counter()
            vectors = embedder.embed(pool)
            embed_s = time.perf_counter() - started
            results["embed_chunks_per_s"] = round(POOL / embed_s)
            stored, upsert_s = len(docs), 0.0
            deadline = time.monotonic() + BUDGET_S
            for size in SIZES:
                while stored < size and time.monotonic() < deadline:
                    step = min(BULK, size - stored)
                    upsert_s += await _bulk(store, embedder, one, pool, vectors, stored, step)
                    stored += step
                results[f"one_tenant_{stored // 1000}k"] = {
                    "chunks": stored,
                    "search_ms": await _search(store, embedder, [one], texts, rng, size),
                }
            results["upsert_chunks_per_s"] = round((stored - len(docs)) / max(upsert_s, 1e-9))
            results["bulk_ingest_chunks_per_s"] = round(
                1 / (1 / results["embed_chunks_per_s"] + 1 / results["upsert_chunks_per_s"])
            )
            await store.drop(one)
            tids = [f"bench-t{t:03d}" for t in range(TENANTS)]
            for t, tid in enumerate(tids):
                await _bulk(store, embedder, tid, pool, vectors, t * PER_TENANT, PER_TENANT)
            results[f"{TENANTS}_tenants_x_{PER_TENANT}"] = {
                "chunks": TENANTS * PER_TENANT,
                "search_ms": await _search(store, embedder, tids, pool, rng, PER_TENANT),
            }
        finally:
            await store.close()
    return results


async def _bulk(
    store: QdrantStore,
    embedder: HashingEmbedder,
    tid: str,
    pool: list[str],
    vectors: Any,
    first: int,
    count: int,
) -> float:
    """Upsert `count` new chunks (texts and vectors reused from the pool), timed."""
    chunks = [
        StoredChunk(
            chunk_id=index.chunk_id(tid, f"d{n}", 0),
            tenant_id=tid,
            document_id=f"d{n}",
            chunk_index=0,
            text=pool[n % len(pool)],
            vector=vectors[n % len(pool)],
            metadata={},
        )
        for n in range(first, first + count)
    ]
    started = time.perf_counter()
    await store.upsert(tid, chunks, embedder.dim, embedder.name)
    return time.perf_counter() - started


def _doc(rng: random.Random, n: int) -> Document:
    return Document(document_id=f"d{n}", text=document_text(rng, words=70))


async def _search(
    store: QdrantStore,
    embedder: HashingEmbedder,
    tids: list[str],
    texts: list[str],
    rng: random.Random,
    size: int,
) -> dict[str, float]:
    """Queries are 8-word slices of stored chunks; each goes to a random tenant."""
    queries = []
    for _ in range((200 if size <= 10_000 else 50) + 10):
        words = rng.choice(texts).split()
        start = rng.randrange(max(1, len(words) - 8))
        queries.append(" ".join(words[start : start + 8]))
    timings = []
    for i, query in enumerate(queries):
        started = time.perf_counter()
        await index.search(store, embedder, rng.choice(tids), query, TOP_K)
        if i >= 10:  # the first few warm caches up
            timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)
