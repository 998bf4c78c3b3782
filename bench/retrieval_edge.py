"""Retrieval on the embedded default, Qdrant Edge (a shard per tenant, HNSW, in a worker
process): one tenant at 1k / 10k / 100k chunks, and many small tenants with lazy
open/close of cold shards.

    python -m bench retrieval_edge                # both parts
    python -m bench.retrieval_edge one 100000     # one tenant only, up to N chunks
    python -m bench.retrieval_edge many 1000 64   # N tenants, at most M shards open
    python -m bench.retrieval_edge many 10000 256 # the 10k-tenant plan (~13 min, 3.6 GB)
    BENCH_EDGE_CORPUS=real BENCH_EDGE_EF=128,512,1024 python -m bench.retrieval_edge one
                                                  # real text; each size searched per ef

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
* many: tenants are created and filled one after another (first and last 1,000 timed
  apart), then the worker is restarted over every shard on disk; COLD_SAMPLE tenants
  drawn from the whole range are searched once each (every one must answer from its
  own shard), then MAX_OPEN others are opened and searched while exactly that many are
  open.
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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import _real_text
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
# BENCH_EDGE_CORPUS=real: documentation prose from the installed packages (bench/_real_text.py)
# instead of pseudo-words; BENCH_EDGE_EF=128,512,1024 also searches each size >= 10k with
# those hnsw_ef; BENCH_EDGE_HNSW_M / _EF_CONSTRUCT / _HNSW_EF: the shard's graph and search.
CORPUS = os.environ.get("BENCH_EDGE_CORPUS", "synthetic")
EF_SWEEP = [int(ef) for ef in os.environ.get("BENCH_EDGE_EF", "").split(",") if ef]
HNSW_M = int(os.environ.get("BENCH_EDGE_HNSW_M", "16"))
EF_CONSTRUCT = int(os.environ.get("BENCH_EDGE_EF_CONSTRUCT", "100"))
HNSW_EF = int(os.environ.get("BENCH_EDGE_HNSW_EF", "0"))  # 0: the service's default
BATCH = 250
IN_FLIGHT = int(os.environ.get("BENCH_INGEST_IN_FLIGHT", "2"))
TOP_K = 4
INDEX_WAIT_LIMIT_S = 600.0
SEARCHES = 300
EXACT_CHECKS = 200
TENANTS = int(os.environ.get("BENCH_EDGE_TENANTS", "1000"))
PER_TENANT = 20
MAX_OPEN = int(os.environ.get("BENCH_EDGE_MAX_OPEN", "64"))
COLD_SAMPLE = 500  # cold tenants searched after the restart, drawn from the whole range
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
    out: dict[str, Any] = {"corpus": CORPUS, "hnsw_m": HNSW_M, "ef_construct": EF_CONSTRUCT}
    sizes = [s for s in SIZES if s <= largest]
    real: list[str] = []
    if CORPUS == "real":
        real = _real_text.chunks(sizes[-1])
        out["real_text"] = {"chunks": len(real), "mean_chars": round(_mean(map(len, real)))}
        # The largest size becomes what the installed text gives, if it gives less.
        sizes = sorted({min(s, len(real)) for s in sizes})
        if len(real) < SIZES[0]:
            out["skipped"] = (
                f"BENCH_EDGE_CORPUS=real: the installed documentation gives {len(real)} chunks "
                f"of prose, fewer than {SIZES[0]} (see bench/_real_text.py for its sources)"
            )
            return out
    tid = "bench-one"
    texts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        store = _edge_store(Path(tmp))
        await store.open()
        timed = _TimedStore(store)
        try:
            ingest_s = 0.0
            for size in sizes:
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
                                Document(
                                    document_id=f"d{first + i}",
                                    text=real[first + i] if real else document_text(rng, 70),
                                )
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
                exact = _Exact(embedder, texts, timed.vectors, random.Random(size))
                step.update(await exact.check(store, tid))
                step.update(_worker(store, Path(tmp)))
                if EF_SWEEP and size >= 10_000:
                    # The same shard searched with other hnsw_ef: a worker each (ef is the
                    # worker's setting), the same queries for every ef.
                    await store.close()
                    step["by_hnsw_ef"] = {}
                    for ef in EF_SWEEP:
                        swept = _edge_store(Path(tmp), hnsw_ef=ef)
                        await swept.open()
                        try:
                            step["by_hnsw_ef"][ef] = {
                                "search_ms": await _search(
                                    swept, embedder, [tid], texts, rng, SEARCHES
                                ),
                                **await exact.check(swept, tid),
                                "load": _loadavg(),
                            }
                        finally:
                            await swept.close()
                    store = _edge_store(Path(tmp))
                    await store.open()
                    timed.store = store
                out[f"{size // 1000}k"] = step
        finally:
            await store.close()
    return out


def _edge_store(root: Path, **settings: int) -> EdgeStore:
    return EdgeStore(
        root,
        hnsw_m=HNSW_M,
        ef_construct=EF_CONSTRUCT,
        **({"hnsw_ef": HNSW_EF} if HNSW_EF else {}) | settings,
    )


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / max(len(items), 1)


class _TimedStore:
    """The store as index.ingest uses it, adding up the time spent waiting on it."""

    def __init__(self, store: EdgeStore) -> None:
        self.store = store
        self.seconds = 0.0
        self.vectors: dict[str, Any] = {}  # by document id: what the shard holds

    async def upsert(
        self, tenant_id: str, chunks: Sequence[StoredChunk], dim: int, embedder: str | None = None
    ) -> None:
        started = time.perf_counter()
        await self.store.upsert(tenant_id, chunks, dim, embedder)
        self.seconds += time.perf_counter() - started
        self.vectors.update((chunk.document_id, chunk.vector) for chunk in chunks)

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


class _Exact:
    """The exact answers to EXACT_CHECKS queries (a numpy scan of every chunk's vector),
    to score what a search through the index returns: top1_exact_share (its first hit is
    the exact best chunk) and recall_at_4 (share of the exact best 4 among its 4 hits):
    the price of the HNSW walk."""

    def __init__(
        self, embedder: Embedder, texts: list[str], vectors: dict[str, Any], rng: random.Random
    ) -> None:
        matrix = np.stack([vectors[f"d{i}"] for i in range(len(texts))])
        queries = []
        for _ in range(EXACT_CHECKS):
            words = rng.choice(texts).split()
            start = rng.randrange(max(1, len(words) - 8))
            queries.append(" ".join(words[start : start + 8]))
        self.queries = embedder.embed(queries)
        self.embedder = embedder.name
        scores = matrix @ self.queries.T  # chunks x queries
        best = np.argpartition(-scores, TOP_K, axis=0)[:TOP_K].T
        self.best = [
            [f"d{i}" for i in row[np.argsort(-scores[row, q])]] for q, row in enumerate(best)
        ]

    async def check(self, store: EdgeStore, tid: str) -> dict[str, float]:
        first = found = 0
        for query, best in zip(self.queries, self.best, strict=True):
            hits = [hit.document_id for hit in await store.search(tid, query, TOP_K, self.embedder)]
            first += bool(hits) and hits[0] == best[0]
            found += len(set(hits) & set(best))
        return {
            "top1_exact_share": round(first / len(self.best), 3),
            "recall_at_4": round(found / (TOP_K * len(self.best)), 3),
        }


async def _many_tenants(embedder: Embedder, tenants: int) -> dict[str, Any]:
    rng = random.Random(5)
    pool = [document_text(rng, 70) for _ in range(tenants * PER_TENANT // 10 + 1)]
    vectors = embedder.embed(pool)
    out: dict[str, Any] = {
        "tenants": tenants,
        "chunks_per_tenant": PER_TENANT,
        "max_open": MAX_OPEN,
    }
    tids = [f"bench-t{n:05d}" for n in range(tenants)]
    with tempfile.TemporaryDirectory(prefix="bench-edge-many-") as tmp:
        root = Path(tmp)
        # 1. What an idle open shard costs: the same worker with 0 and then N shards open.
        store = EdgeStore(root, max_open=ALL_OPEN_SAMPLE)
        await store.open()
        try:
            empty = _worker(store, root)
            fills: list[float] = []
            started = time.perf_counter()
            for n, tid in enumerate(tids):
                began = time.perf_counter()
                await _fill(store, tid, pool, vectors, n, embedder.name)
                fills.append((time.perf_counter() - began) * 1000)
            out["create_and_fill_ms_per_tenant"] = round(
                (time.perf_counter() - started) * 1000 / tenants, 1
            )
            # Does creating a tenant get slower as the folder fills? First and last 1,000.
            out["create_and_fill_ms"] = {
                "first_1000": percentiles(fills[:1000]),
                "last_1000": percentiles(fills[-1000:]),
            }
            out["load_after_fill"] = _loadavg()
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
        # 2. A restart with every shard on disk, then lazy: at most MAX_OPEN open, cold
        # shards reopened on demand.
        store = EdgeStore(root, max_open=MAX_OPEN)
        started = time.perf_counter()
        await store.open()
        out["worker_start_s"] = round(time.perf_counter() - started, 2)
        try:
            texts = {tid: pool[(n * PER_TENANT) % len(pool)] for n, tid in enumerate(tids)}
            after_start = await store.stats()
            out["after_restart"] = {
                "shards_on_disk": after_start.shards_on_disk,
                "open_shards": after_start.open_shards,
            }
            assert after_start.shards_on_disk == tenants
            # Cold tenants from the whole range, right after the restart: each must answer
            # from its own shard, with its own chunk first.
            sample = rng.sample(tids, min(COLD_SAMPLE, tenants))
            before = await store.stats()
            cold, own_first = await _search_each(store, embedder, sample, texts)
            out["search_ms_cold_tenant"] = cold
            out["cold_sample_answered"] = len(sample)
            out["cold_sample_own_chunk_first"] = own_first
            out["cold_opens"] = _open_close_costs(before, await store.stats())
            out["load_after_cold"] = _loadavg()
            # The hot set: MAX_OPEN tenants opened once (their first search is a cold one),
            # then measured with exactly the cap open.
            asked = set(sample)
            hot = rng.sample(
                [t for t in tids if t not in asked], min(MAX_OPEN, tenants - len(asked))
            )
            await _search_each(store, embedder, hot, texts)
            await _settle(store, MAX_OPEN)
            out[f"worker_lazy_{MAX_OPEN}_open"] = _worker(store, root)
            out["search_ms_hot_tenant"] = await _search(
                store, embedder, hot, [texts[t] for t in hot], rng, SEARCHES
            )
            out["open_after_hot"] = (await store.stats()).open_shards
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
) -> tuple[dict[str, float], int]:
    """One search per tenant, each a shard not open at the time (load + search); and how
    many of them had their own first chunk (the query's source) as the first hit."""
    timings = []
    own_first = 0
    for tid in tids:
        query = " ".join(texts[tid].split()[:8])
        started = time.perf_counter()
        hits = await index.search(store, embedder, tid, query, TOP_K)
        timings.append((time.perf_counter() - started) * 1000)
        assert hits and all(hit.tenant_id == tid for hit in hits)
        own_first += hits[0].document_id == "d0"
    return percentiles(timings), own_first


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
