"""The VectorStore contract, run against every embedded backend: Qdrant Edge shards in a
worker process (the default) and qdrant-client's local mode (the fallback, and the same
adapter that talks to a Qdrant server). Then what only the Edge store promises: a shard
folder per tenant that deletion removes, lazy open/close, HNSW built in the background,
and nothing acknowledged lost when the worker is killed mid-ingest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from services.retrieval import index
from services.retrieval.adapters import (
    ChunkColumns,
    DimensionMismatch,
    EmbedderMismatch,
    QdrantStore,
    StoredChunk,
    VectorStore,
)
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.edge import EdgeStore
from services.retrieval.embedding import HashingEmbedder
from services.retrieval.shards import (
    INDEX_AFTER_UNINDEXED,
    PAYLOAD_INDEX_AFTER,
    FolderLocked,
    ShardSet,
    ShardStats,
)
from shared.messages.retrieval import Document

pytestmark = pytest.mark.integration

BACKENDS = ("edge", "local")
EMBEDDER = HashingEmbedder(256)
CHUNKING = ChunkingConfig(max_chars=200, target_chars=120, overlap_chars=0)
ROOT = Path(__file__).resolve().parents[2]

Opener = Callable[[Path], Awaitable[VectorStore]]


async def open_backend(kind: str, path: Path, **edge: int) -> VectorStore:
    store: EdgeStore | QdrantStore = (
        EdgeStore(path, **edge) if kind == "edge" else QdrantStore.local(path)
    )
    await store.open()
    return store


@pytest_asyncio.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    opened = await open_backend(request.param, tmp_path / "store")
    yield opened
    await opened.close()


def doc(document_id: str, text: str) -> Document:
    return Document(document_id=document_id, text=text)


def chunk(tenant_id: str, document_id: str, i: int, text: str) -> StoredChunk:
    return StoredChunk(
        chunk_id=index.chunk_id(tenant_id, document_id, i),
        tenant_id=tenant_id,
        document_id=document_id,
        chunk_index=i,
        text=text,
        vector=EMBEDDER.embed([text])[0],
    )


# --- the contract, for every backend ---------------------------------------------------


async def test_write_find_and_delete_with_counts(store: VectorStore) -> None:
    texts = [f"part {i} of the oven manual covers {w}" for i, w in enumerate("abcdef")]
    chunks = [chunk("acme", "manual", i, t) for i, t in enumerate(texts)]
    chunks.append(chunk("acme", "wifi", 0, "pair the thermostat with a 2.4 GHz network"))
    await store.upsert("acme", chunks, EMBEDDER.dim)

    hits = await store.search("acme", EMBEDDER.embed(["thermostat network pairing"])[0], 3)
    assert hits[0].document_id == "wifi" and hits[0].tenant_id == "acme"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].text == chunks[-1].text and hits[0].chunk_id == chunks[-1].chunk_id

    ids = [c.chunk_id for c in chunks[:2]] + [index.chunk_id("acme", "manual", 99)]
    assert await store.existing("acme", ids) == set(ids[:2])
    assert await store.existing("nobody", ids) == set()

    assert await store.delete_document("acme", "manual", from_index=4) == 2
    assert await store.existing("acme", [c.chunk_id for c in chunks[4:6]]) == set()
    assert await store.delete_document("acme", "manual") == 4
    assert await store.delete_document("acme", "manual") == 0
    assert await store.drop("acme") == (True, 1)
    assert await store.drop("acme") == (False, 0)
    assert await store.search("acme", EMBEDDER.embed(["thermostat"])[0], 3) == []


async def test_reingest_through_the_service_code_replaces_the_tail(store: VectorStore) -> None:
    long = doc("d", "\n\n".join(f"Paragraph {i} explains ovens and grills." for i in range(12)))
    first = await index.ingest(store, EMBEDDER, CHUNKING, "acme", [long])
    assert first.chunks > 2
    again = await index.ingest(store, EMBEDDER, CHUNKING, "acme", [doc("d", "Fridges only.")])
    assert again.stale_chunks_removed == first.chunks - 1
    hits = await index.search(store, EMBEDDER, "acme", "ovens grills fridges", 50)
    assert [h.text for h in hits] == ["Fridges only."]


async def test_create_is_idempotent_and_the_width_is_enforced(store: VectorStore) -> None:
    assert await store.create("acme", 256) is True
    assert await store.create("acme", 256) is False
    with pytest.raises(DimensionMismatch):
        await store.upsert("acme", [chunk("acme", "d", 0, "hello")], 128)
    with pytest.raises(DimensionMismatch):
        await store.create("acme", 128)
    assert await store.search("acme", EMBEDDER.embed(["hello"])[0], 5) == []


async def test_one_tenants_shard_never_answers_another_tenants_query(store: VectorStore) -> None:
    # Same document text in both tenants: only the shard decides whose chunks come back.
    text = "Acme's merger with Globex closes on the 3rd of May at 4.2 million."
    await store.upsert("acme", [chunk("acme", "secret", 0, text)], EMBEDDER.dim)
    await store.upsert("globex", [chunk("globex", "public", 0, text)], EMBEDDER.dim)
    await store.upsert("globex", [chunk("globex", "other", 0, "canteen menu")], EMBEDDER.dim)
    query = EMBEDDER.embed([text])[0]

    acme_hits = await store.search("acme", query, 10)
    globex_hits = await store.search("globex", query, 10)
    assert [(h.tenant_id, h.document_id) for h in acme_hits] == [("acme", "secret")]
    assert {h.tenant_id for h in globex_hits} == {"globex"}
    assert index.chunk_id("acme", "secret", 0) not in {h.chunk_id for h in globex_hits}
    assert await store.search("initech", query, 10) == []
    # Deleting one tenant's data leaves the other's alone.
    assert await store.drop("globex") == (True, 2)
    assert [h.document_id for h in await store.search("acme", query, 10)] == ["secret"]


async def test_a_collection_keeps_to_one_embedder(store: VectorStore) -> None:
    # Another embedder's vectors of the same width would be compared as if alike.
    hello = [chunk("acme", "d", 0, "hello")]
    query = EMBEDDER.embed(["hello"])[0]
    assert await store.create("acme", EMBEDDER.dim) is True  # provisioning: no embedder yet
    assert await store.search("acme", query, 5, "hashing-v2-256") == []
    await store.upsert("acme", hello, EMBEDDER.dim, "hashing-v2-256")  # the first labels it
    assert len(await store.search("acme", query, 5, "hashing-v2-256")) == 1
    with pytest.raises(EmbedderMismatch, match="hashing-v2-256"):
        await store.upsert("acme", hello, EMBEDDER.dim, "hashing-v3-256")
    with pytest.raises(EmbedderMismatch):
        await store.search("acme", query, 5, "hashing-v3-256")
    # Vectors written before collections were labelled are nobody's: refused.
    await store.upsert("old", [chunk("old", "d", 0, "hello")], EMBEDDER.dim)
    with pytest.raises(EmbedderMismatch, match="unrecorded"):
        await store.upsert("old", [chunk("old", "d", 1, "again")], EMBEDDER.dim, "hashing-v2-256")
    with pytest.raises(EmbedderMismatch):
        await store.search("old", query, 5, "hashing-v2-256")
    # Deleting the collection is the way to another embedder.
    assert await store.drop("acme") == (True, 1)
    await store.upsert("acme", hello, EMBEDDER.dim, "hashing-v3-256")
    assert len(await store.search("acme", query, 5, "hashing-v3-256")) == 1


@pytest.mark.parametrize("kind", BACKENDS)
async def test_the_embedder_label_survives_a_restart(kind: str, tmp_path: Path) -> None:
    first = await open_backend(kind, tmp_path / "s")
    try:
        await first.upsert("acme", [chunk("acme", "d", 0, "hi")], EMBEDDER.dim, "hashing-v2-256")
    finally:
        await first.close()
    again = await open_backend(kind, tmp_path / "s")
    try:
        with pytest.raises(EmbedderMismatch):
            await again.search("acme", EMBEDDER.embed(["hi"])[0], 5, "minilm-l6-v2")
        assert len(await again.search("acme", EMBEDDER.embed(["hi"])[0], 5, "hashing-v2-256")) == 1
    finally:
        await again.close()


@pytest.mark.parametrize("kind", BACKENDS)
async def test_restart_reloads_every_tenant(kind: str, tmp_path: Path) -> None:
    tenants = [f"t{n}" for n in range(6)]
    first = await open_backend(kind, tmp_path / "s", max_open=2)
    try:
        for n, tid in enumerate(tenants):
            await index.ingest(
                first, EMBEDDER, CHUNKING, tid, [doc(f"d{n}", f"tenant {tid} keeps topic {n}")]
            )
    finally:
        await first.close()
    again = await open_backend(kind, tmp_path / "s", max_open=2)
    try:
        for n, tid in enumerate(tenants):
            hits = await index.search(again, EMBEDDER, tid, f"topic {n}", 5)
            assert [(h.tenant_id, h.document_id) for h in hits] == [(tid, f"d{n}")]
    finally:
        await again.close()


# --- what only the Edge store promises ----------------------------------------------------


async def test_edge_drop_removes_the_shard_folder(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    await store.open()
    try:
        done = await index.ingest(
            store, EMBEDDER, CHUNKING, "acme", [doc("a", "one two"), doc("b", "three four")]
        )
        assert (tmp_path / "tenant_acme" / "edge_config.json").exists()
        assert await store.drop("acme") == (True, done.chunks)
        assert not (tmp_path / "tenant_acme").exists()
        assert sorted(os.listdir(tmp_path)) == [".lock"]
        assert (await store.stats()).shards_on_disk == 0
    finally:
        await store.close()


def test_edge_sweeps_half_created_and_half_dropped_shards(tmp_path: Path) -> None:
    shards = ShardSet(tmp_path)
    shards.upsert("whole", ChunkColumns.of([chunk("whole", "d", 0, "kept")]), EMBEDDER.dim)
    shards.close()
    torn = tmp_path / "tenant_torn"  # a crash between mkdir and the end of create
    (torn / "segments").mkdir(parents=True)
    (torn / ".creating").touch()
    (tmp_path / ".trash-0123").mkdir()  # a crash between rename and rmtree in drop
    shards = ShardSet(tmp_path)
    try:
        assert sorted(os.listdir(tmp_path)) == [".lock", "tenant_whole"]
        assert shards.existing("whole", [index.chunk_id("whole", "d", 0)])
        assert shards.search("torn", [1.0] * EMBEDDER.dim, 1) == []
    finally:
        shards.close()


def test_edge_indexes_payloads_once_a_shard_grows_and_deletes_work_either_way(
    tmp_path: Path,
) -> None:
    """Small shards have no payload index (a load would populate 8 MB of it): their
    deletes scan; past PAYLOAD_INDEX_AFTER points idle work adds the indexes."""
    small = [chunk("t", "small", i, f"small chunk {i}") for i in range(6)]
    big = [chunk("t", f"d{i % 50}", i // 50, f"chunk {i}") for i in range(PAYLOAD_INDEX_AFTER)]
    shards = ShardSet(tmp_path)
    try:
        shards.upsert("t", ChunkColumns.of(small), EMBEDDER.dim)
        shards.idle_work()
        assert shards.payload_indexed("t") is False
        assert shards.delete_document("t", "small", from_index=2) == 4
        shards.upsert("t", ChunkColumns.of(big), EMBEDDER.dim)
        while shards.idle_work():
            pass
        assert shards.payload_indexed("t") is True
        assert shards.delete_document("t", "d7", from_index=10) == 10
        assert shards.points("t")[0] == 2 + PAYLOAD_INDEX_AFTER - 10
    finally:
        shards.close()
    reopened = ShardSet(tmp_path)  # the load pre-reads the WAL; nothing is lost by it
    try:
        assert reopened.points("t")[0] == 2 + PAYLOAD_INDEX_AFTER - 10
        assert reopened.search("t", EMBEDDER.embed(["chunk 999"])[0], 1)[0].text == "chunk 999"
    finally:
        reopened.close()


async def test_edge_keeps_at_most_max_open_shards_and_reopens_cold_ones(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, max_open=2)
    await store.open()
    try:
        for n in range(6):
            await store.upsert(f"t{n}", [chunk(f"t{n}", "d", 0, f"fact {n}")], EMBEDDER.dim)
        # Beyond twice the limit, shards are closed on the spot...
        assert (await store.stats()).open_shards <= 4
        # ...and down to the limit once requests pause.
        stats = await wait_for_stats(store, lambda s: s.open_shards == 2)
        assert stats.shards_on_disk == 6 and stats.closed == 4
        for n in range(6):  # every cold shard comes back with its data
            hits = await store.search(f"t{n}", EMBEDDER.embed([f"fact {n}"])[0], 1)
            assert [h.tenant_id for h in hits] == [f"t{n}"]
        await wait_for_stats(store, lambda s: s.open_shards == 2)
    finally:
        await store.close()


async def wait_for_stats(
    store: EdgeStore, done: Callable[[ShardStats], bool], timeout_s: float = 30
) -> ShardStats:
    deadline = time.monotonic() + timeout_s
    while not done(stats := await store.stats()):
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.3)  # a pause in requests: when the worker closes cold shards
    return stats


async def test_edge_folder_is_held_by_one_worker_at_a_time(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    await store.open()
    try:
        second = EdgeStore(tmp_path)
        with pytest.raises(RuntimeError, match="FolderLocked"):
            await second.open()
        with pytest.raises(FolderLocked):
            ShardSet(tmp_path)
    finally:
        await store.close()
    ShardSet(tmp_path).close()  # released on close


# 384 is MiniLM's width: at 384, Qdrant's default threshold (10 MB of vectors) would
# wait for 6 500 points, and the index was never built for a 3 000-point shard.
@pytest.mark.parametrize("dim", [1024, 384])
async def test_edge_builds_the_hnsw_index_once_ingest_goes_quiet(dim: int, tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    await store.open()
    try:
        rng = np.random.default_rng(5)
        n = INDEX_AFTER_UNINDEXED + 1_000
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chunks = [
            StoredChunk(index.chunk_id("big", f"d{i}", 0), "big", f"d{i}", 0, f"t{i}", v)
            for i, v in enumerate(vectors)
        ]
        await store.upsert("big", chunks, dim)
        deadline = time.monotonic() + 120
        while (await store.points("big"))[1] < n:
            assert time.monotonic() < deadline, await store.points("big")
            await asyncio.sleep(0.5)
        assert await store.points("big") == (n, n)
        hits = await store.search("big", vectors[123], 1)  # found through the graph
        assert hits[0].document_id == "d123" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    finally:
        await store.close()


# --- crashes -------------------------------------------------------------------------------

# A client that upserts batch after batch into an Edge store, printing each batch once
# the store has acknowledged it, until it is killed.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import numpy as np
    from services.retrieval.adapters import StoredChunk
    from services.retrieval.edge import EdgeStore

    async def main() -> None:
        store = EdgeStore(Path(sys.argv[1]))
        await store.open()
        print("worker", store.pid, flush=True)
        rng = np.random.default_rng(1)
        batch = 0
        while True:
            vectors = rng.standard_normal((200, 64)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            chunks = [
                StoredChunk(f"00000000-0000-0000-{batch:04d}-{i:012d}", "crash", f"b{batch}",
                            i, f"batch {batch} chunk {i}", v)
                for i, v in enumerate(vectors)
            ]
            await store.upsert("crash", chunks, 64)
            print("acked", batch, flush=True)
            batch += 1

    asyncio.run(main())
    """
)


def start_writer(path: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first[0] == "worker", first
    return proc, int(first[1])


def read_acks(proc: subprocess.Popen[str], at_least: int) -> list[int]:
    assert proc.stdout is not None
    acked: list[int] = []
    while len(acked) < at_least:
        line = proc.stdout.readline()
        assert line, "writer exited early"
        acked.append(int(line.split()[1]))
    return acked


def wait_gone(pid: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # dead, not yet reaped by its parent
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still running")


async def assert_batches_stored(path: Path, batches: list[int]) -> None:
    store = EdgeStore(path)
    await store.open()
    try:
        for batch in batches:
            ids = [f"00000000-0000-0000-{batch:04d}-{i:012d}" for i in range(200)]
            assert await store.existing("crash", ids) == set(ids), f"batch {batch} lost"
    finally:
        await store.close()


async def test_edge_worker_killed_mid_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    proc, worker = start_writer(tmp_path)
    try:
        acked = read_acks(proc, 5)
        os.kill(worker, signal.SIGKILL)  # the process holding the shards, mid-stream
        wait_gone(worker)
    finally:
        proc.kill()
        proc.wait()
    await assert_batches_stored(tmp_path, acked)


async def test_a_killed_worker_is_replaced_and_the_call_goes_through(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    await store.open()
    try:
        await store.upsert("acme", [chunk("acme", "d", 0, "pair the thermostat")], EMBEDDER.dim)
        first = store.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_gone(first)  # our own child: dead once it is a zombie
        hits = await store.search("acme", EMBEDDER.embed(["thermostat"])[0], 1)
        assert [h.document_id for h in hits] == ["d"]  # answered by a new worker
        assert store.restarts == 1 and store.pid not in (None, first)
    finally:
        await store.close()


async def test_edge_worker_outlives_no_killed_service(tmp_path: Path) -> None:
    proc, worker = start_writer(tmp_path)
    acked = read_acks(proc, 3)
    proc.kill()  # the service dies; its worker sees end-of-file, closes and exits
    proc.wait()
    wait_gone(worker)
    await assert_batches_stored(tmp_path, acked)
