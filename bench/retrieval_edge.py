"""Retrieval on the embedded default, Qdrant Edge (a shard per tenant, HNSW, in a worker
process): one tenant at 1k / 10k / 100k chunks, and many small tenants with lazy
open/close of cold shards.

    python -m bench retrieval_edge                # both parts
    python -m bench.retrieval_edge one 100000     # one tenant only, up to N chunks
    python -m bench.retrieval_edge many 1000 64   # N tenants, at most M shards open

In-process on the service's own code (services/retrieval/index.py: chunk, embed with
the default HashingEmbedder, upsert, probe for stale chunks; embed the query, search),
not over the bus (bench/pipeline.py measures the hop). Every chunk is a distinct ~500-
character document of pseudo-words, so the HNSW graph is built over 100k different
vectors (bench/retrieval.py, the local-mode baseline, reuses a 10k pool beyond 10k).
Queries are 8-word slices of stored chunks.

* ingest: wall time of index.ingest in batches of 250 documents, the way a client's
  bulk ingest arrives, BENCH_INGEST_IN_FLIGHT (2) requests at a time; `store_chunks_per_s`
  counts only the time spent waiting on the store (upsert and the stale-chunk probe).
* embedder: the service's (TENANTRY_EMBEDDER; hashing unless set).
* index: after each size the worker builds HNSW once requests pause; `index_wait_s` is
  how long until every point but the last <2 000 (searched brute force, by design) is
  in the graph, and searches issued meanwhile wait for the build (`search_ms_while_
  indexing`). Search figures are then taken on the built index.
* top1_exact_share: of 200 queries, how many get the exact best chunk (a numpy scan of
  every vector) as their first hit through the index: the price of the HNSW walk.
* memory: the worker's RssAnon (its own heap) and RssFile (mapped shard files: page
  cache the kernel can drop), open files, threads; and the shard folder on disk.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.loadgen import percentiles
from bench.rig import document_text
from services.retrieval import index
from services.retrieval.adapters import StoredChunk
from services.retrieval.app import make_embedder
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.edge import EdgeStore
from services.retrieval.embedding import Embedder
from services.retrieval.settings import RetrievalSettings
from services.retrieval.shards import INDEX_AFTER_UNINDEXED, ShardStats
from shared.messages.retrieval import Document

SIZES = (1_000, 10_000, 100_000)
BATCH = 250
IN_FLIGHT = int(os.environ.get("BENCH_INGEST_IN_FLIGHT", "2"))
TOP_K = 4
INDEX_WAIT_LIMIT_S = 600.0
SEARCHES = 300
EXACT_CHECKS = 200
TENANTS = 1_000
PER_TENANT = 20
MAX_OPEN = 64
ALL_OPEN_SAMPLE = 200  # shards held open at once to measure what an idle open shard costs


def run(results_dir: Path) -> dict[str, Any]:
    return asyncio.run(_run())


async def _run(part: str = "both", size: int = SIZES[-1], tenants: int = TENANTS) -> dict[str, Any]:
    settings = RetrievalSettings()  # TENANTRY_EMBEDDER=static ... benches another embedder
    embedder = make_embedder(settings)
    chunking = ChunkingConfig(
        max_chars=settings.chunk_max_chars,
        target_chars=settings.chunk_target_chars,
        overlap_chars=settings.chunk_overlap_chars,
    )
    results: dict[str, Any] = {
        "mode": "in-process: services.retrieval.index on EdgeStore (Qdrant Edge worker)",
        "embedder": embedder.name,
        "top_k": TOP_K,
        "load_at_start": _loadavg(),
    }
    if part in ("both", "one"):
        results["one_tenant"] = await _one_tenant(embedder, chunking, size)
    if part in ("both", "many"):
        results["many_tenants"] = await _many_tenants(embedder, tenants)
    results["load_at_end"] = _loadavg()
    return results


async def _one_tenant(embedder: Embedder, chunking: ChunkingConfig, largest: int) -> dict[str, Any]:
    rng = random.Random(11)
    out: dict[str, Any] = {}
    tid = "bench-one"
    texts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        store = EdgeStore(Path(tmp))
        await store.open()
        timed = _TimedStore(store)
        try:
            ingest_s = 0.0
            for size in (s for s in SIZES if s <= largest):
                while len(texts) < size:
                    # IN_FLIGHT batches at a time, as concurrent ingest requests would be:
                    # one embeds in the service while the worker writes another.
                    batches: list[list[Document]] = []
                    for _ in range(IN_FLIGHT):
                        count = min(BATCH, size - len(texts) - sum(map(len, batches)))
                        if count <= 0:
                            break
                        first = len(texts) + sum(map(len, batches))
                        batches.append(
                            [
                                Document(document_id=f"d{first + i}", text=document_text(rng, 70))
                                for i in range(count)
                            ]
                        )
                    started = time.perf_counter()
                    done = await asyncio.gather(
                        *(index.ingest(timed, embedder, chunking, tid, docs) for docs in batches)
                    )
                    ingest_s += time.perf_counter() - started
                    # One chunk per document, as designed.
                    assert sum(d.chunks for d in done) == sum(map(len, batches))
                    texts += [d.text for docs in batches for d in docs]
                step: dict[str, Any] = {
                    "chunks": len(texts),
                    "ingest_in_flight": IN_FLIGHT,
                    "ingest_chunks_per_s": round(len(texts) / ingest_s),
                    # Time waiting on the store, summed over the requests in flight.
                    "store_chunks_per_s": round(len(texts) / timed.seconds),
                    "load": _loadavg(),
                }
                step.update(await _wait_for_index(store, embedder, tid, texts, rng))
                step["search_ms"] = await _search(store, embedder, [tid], texts, rng, SEARCHES)
                step["top1_exact_share"] = await _top1_exact_share(store, embedder, tid, texts, rng)
                step.update(_worker(store, Path(tmp)))
                out[f"{size // 1000}k"] = step
        finally:
            await store.close()
    return out


class _TimedStore:
    """The store as index.ingest uses it, adding up the time spent waiting on it."""

    def __init__(self, store: EdgeStore) -> None:
        self.store = store
        self.seconds = 0.0

    async def upsert(
        self, tenant_id: str, chunks: Sequence[StoredChunk], dim: int, embedder: str | None = None
    ) -> None:
        started = time.perf_counter()
        await self.store.upsert(tenant_id, chunks, dim, embedder)
        self.seconds += time.perf_counter() - started

    async def existing(self, tenant_id: str, chunk_ids: Sequence[str]) -> set[str]:
        started = time.perf_counter()
        found = await self.store.existing(tenant_id, chunk_ids)
        self.seconds += time.perf_counter() - started
        return found

    async def delete_document(self, tenant_id: str, document_id: str, from_index: int = 0) -> int:
        started = time.perf_counter()
        removed = await self.store.delete_document(tenant_id, document_id, from_index)
        self.seconds += time.perf_counter() - started
        return removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def _wait_for_index(
    store: EdgeStore, embedder: Embedder, tid: str, texts: list[str], rng: random.Random
) -> dict[str, Any]:
    started = time.perf_counter()
    stalled: list[float] = []
    while True:
        points, indexed = await store.points(tid)
        if points - indexed < INDEX_AFTER_UNINDEXED:
            break
        if time.perf_counter() - started > INDEX_WAIT_LIMIT_S:
            return {"index_wait_s": None, "indexed_points": indexed, "index_timed_out": True}
        # A search now waits behind the index build: that wait is what a user would see.
        stalled.append((await _search(store, embedder, [tid], texts, rng, 1, warmup=0))["max"])
        await asyncio.sleep(0.5)
    return {
        "index_wait_s": round(time.perf_counter() - started, 1),
        "indexed_points": indexed,
        "search_ms_while_indexing": percentiles(stalled) if stalled else None,
    }


async def _top1_exact_share(
    store: EdgeStore, embedder: Embedder, tid: str, texts: list[str], rng: random.Random
) -> float:
    """Share of queries whose first hit through the index is the exact best chunk (a
    numpy scan over every chunk's vector): how much the HNSW walk's speed costs."""
    vectors = embedder.embed(texts)  # what the shard holds, in ingest order
    agree = 0
    for _ in range(EXACT_CHECKS):
        words = rng.choice(texts).split()
        start = rng.randrange(max(1, len(words) - 8))
        query = embedder.embed([" ".join(words[start : start + 8])])[0]
        best = int(np.argmax(vectors @ query))
        hits = await store.search(tid, query, TOP_K, embedder.name)
        agree += bool(hits) and hits[0].document_id == f"d{best}"
    return round(agree / EXACT_CHECKS, 3)


async def _many_tenants(embedder: Embedder, tenants: int) -> dict[str, Any]:
    rng = random.Random(5)
    pool = [document_text(rng, 70) for _ in range(tenants * PER_TENANT // 10 + 1)]
    vectors = embedder.embed(pool)
    out: dict[str, Any] = {"tenants": tenants, "chunks_per_tenant": PER_TENANT}
    tids = [f"bench-t{n:05d}" for n in range(tenants)]
    with tempfile.TemporaryDirectory(prefix="bench-edge-many-") as tmp:
        root = Path(tmp)
        # 1. What an idle open shard costs: the same worker with 0 and then N shards open.
        store = EdgeStore(root, max_open=ALL_OPEN_SAMPLE)
        await store.open()
        try:
            empty = _worker(store, root)
            started = time.perf_counter()
            for n, tid in enumerate(tids):
                await _fill(store, tid, pool, vectors, n, embedder.name)
            out["create_and_fill_ms_per_tenant"] = round(
                (time.perf_counter() - started) * 1000 / tenants, 1
            )
            await _settle(store, ALL_OPEN_SAMPLE)
            full = _worker(store, root)
            out[f"worker_{ALL_OPEN_SAMPLE}_open"] = full
            out["per_open_idle_shard"] = {
                key: round((full[key] - empty[key]) / ALL_OPEN_SAMPLE, 2)
                for key in ("rss_anon_mb", "rss_file_mb", "open_files", "threads")
            }
            out["disk_mb_per_shard"] = round(full["disk_mb"] / tenants, 2)
        finally:
            await store.close()
        # 2. Lazy: at most MAX_OPEN open; reopen cold shards on demand.
        store = EdgeStore(root, max_open=MAX_OPEN)
        started = time.perf_counter()
        await store.open()
        out["worker_start_s"] = round(time.perf_counter() - started, 2)
        try:
            texts = {tid: pool[(n * PER_TENANT) % len(pool)] for n, tid in enumerate(tids)}
            hot = tids[: MAX_OPEN // 2]
            before = await store.stats()
            out["search_ms_cold_tenant"] = await _search_each(store, embedder, tids[-200:], texts)
            out["cold_opens"] = _open_close_costs(before, await store.stats())
            # The hot set: opened once (their first search is a cold one), then measured.
            await _search_each(store, embedder, hot, texts)
            await _settle(store, MAX_OPEN)
            out["search_ms_hot_tenant"] = await _search(
                store, embedder, hot, [texts[t] for t in hot], rng, SEARCHES
            )
            out[f"worker_lazy_{MAX_OPEN}_open"] = _worker(store, root)
        finally:
            await store.close()
    return out


def _open_close_costs(before: ShardStats, after: ShardStats) -> dict[str, float]:
    """What the worker spent opening and closing shards between two stats."""
    opened, closed = after.opened - before.opened, after.closed - before.closed
    return {
        "opened": opened,
        "load_ms_mean": round((after.load_s - before.load_s) * 1000 / max(opened, 1), 1),
        "closed": closed,
        "closed_inline": after.closed_inline - before.closed_inline,
        "close_ms_mean": round((after.close_s - before.close_s) * 1000 / max(closed, 1), 1),
    }


async def _fill(
    store: EdgeStore, tid: str, pool: list[str], vectors: Any, n: int, embedder: str
) -> None:
    chunks = [
        StoredChunk(
            index.chunk_id(tid, f"d{i}", 0),
            tid,
            f"d{i}",
            0,
            pool[(n * PER_TENANT + i) % len(pool)],
            vectors[(n * PER_TENANT + i) % len(pool)],
        )
        for i in range(PER_TENANT)
    ]
    await store.upsert(tid, chunks, int(vectors.shape[1]), embedder)


async def _settle(store: EdgeStore, max_open: int) -> None:
    """Let the worker close what it defers to a pause in requests."""
    for _ in range(600):
        if (await store.stats()).open_shards <= max_open:
            return
        await asyncio.sleep(0.5)


async def _search_each(
    store: EdgeStore, embedder: Embedder, tids: list[str], texts: dict[str, str]
) -> dict[str, float]:
    """One search per tenant, each a shard not open at the time (load + search)."""
    timings = []
    for tid in tids:
        query = " ".join(texts[tid].split()[:8])
        started = time.perf_counter()
        hits = await index.search(store, embedder, tid, query, TOP_K)
        timings.append((time.perf_counter() - started) * 1000)
        assert hits and hits[0].tenant_id == tid
    return percentiles(timings)


async def _search(
    store: EdgeStore,
    embedder: Embedder,
    tids: list[str],
    texts: list[str],
    rng: random.Random,
    count: int,
    warmup: int = 10,
) -> dict[str, float]:
    timings = []
    for i in range(count + warmup):
        words = rng.choice(texts).split()
        start = rng.randrange(max(1, len(words) - 8))
        query = " ".join(words[start : start + 8])
        started = time.perf_counter()
        await index.search(store, embedder, rng.choice(tids), query, TOP_K)
        if i >= warmup:
            timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)


def _worker(store: EdgeStore, root: Path) -> dict[str, Any]:
    assert store.pid is not None
    proc = psutil.Process(store.pid)
    status = Path(f"/proc/{store.pid}/status").read_text().splitlines()
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status) if "kB" in v}
    disk = sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())
    return {
        "rss_anon_mb": round(kb["RssAnon"] / 1024, 1),
        "rss_file_mb": round(kb["RssFile"] / 1024, 1),
        "open_files": proc.num_fds(),
        "threads": proc.num_threads(),
        "disk_mb": round(disk / 2**20, 1),
    }


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


if __name__ == "__main__":
    import json

    part = sys.argv[1] if len(sys.argv) > 1 else "both"
    number = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if part == "many" and len(sys.argv) > 3:
        MAX_OPEN = int(sys.argv[3])
    result = asyncio.run(_run(part, size=number or SIZES[-1], tenants=number or TENANTS))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
