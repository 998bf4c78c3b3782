"""One Qdrant Edge shard per tenant, in one folder: the engine behind the embedded store.

Qdrant Edge (`qdrant-edge-py`) is Qdrant's own engine in-process: segments, WAL, payload
indexes and HNSW. Each tenant gets its own shard folder, `<root>/tenant_<tid>`, named from
the validated id, so a search can only ever read that tenant's points (the embedded
form of the one-collection-per-tenant guarantee).

This class is synchronous and single-threaded on purpose: qdrant-edge-py 0.9.0 holds
the GIL in every call (measured: a 20k-point optimize stalls every other Python thread
for its whole 12 s), so it runs in a worker process of its own (see edge.py), never on
the service's event loop.

* Shards open lazily and the least recently used ones are closed above `max_open`,
  so thousands of tenants do not hold thousands of open shards (each open shard keeps a
  search thread, a file and, small, ~0.4 MB of mapped segment files).
* `create` marks the folder until the shard is complete, and `drop` renames the folder
  away before deleting it: a crash half-way leaves either a whole shard or none, never
  a torn one. Leftovers are swept on open.
* An upsert returns once Qdrant has written it to the shard's WAL; a crash after that
  loses nothing (replayed on the next load). The WAL is not fsynced per write: a power
  cut can lose the last writes, a killed process cannot.
* HNSW is built by `optimize()`, which Edge never runs by itself. `idle_work` runs it
  (between requests) for shards that hold enough unindexed points to be worth it.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from services.retrieval.adapters import (
    ChunkColumns,
    DimensionMismatch,
    Hit,
    collection_name,
    embedder_to_record,
)

UPSERT_BATCH = 512
_CREATING = ".creating"
_TRASH = ".trash-"
_LOCK = ".lock"
# The name of the embedder whose vectors the shard holds (see adapters.embedder_to_record).
_EMBEDDER = "embedder"
# Below this many unindexed points a brute-force pass over the segment is faster than
# the HNSW walk (Qdrant's own full_scan_threshold is 10 000 KB of vectors).
INDEX_AFTER_UNINDEXED = 2_000
# Payload indexes (document_id, chunk_index: what deletes and re-ingest clean-up filter
# on) are created once a shard holds this many points, not with the shard: in a small
# shard's appendable segment they are gridstore files that every load populates into
# memory (8 MB for a 20-point shard, measured with strace: 4 + 2 + 1 + 1 MB), and that
# was most of a cold tenant's load; a filter over fewer points than this scans them.
PAYLOAD_INDEX_AFTER = 1_000
MAX_SEGMENT_KB = 128 * 1024
# Candidates are found on the int8 copies, then the best 2x `limit` are rescored on the
# original vectors: ranks and scores come out as exact dot products. How many the HNSW
# walk looks at (`hnsw_ef`) decides whether it finds the best chunk at all: measured
# with bench/retrieval_edge.py's top1_exact_share (pseudo-word text, the hard case), the
# walk at Qdrant's default found the exact best chunk for 69.5 % of queries at 10k and
# 53.5 % at 100k (p99 2.4 / 4.4 ms); ef 512: 93 % / 75.5 % (p99 2.4 / 11.0 ms); ef 1024:
# 96.5 % / 88.5 % (p99 3.0 / 14.3 ms). Oversampling 8 instead of 2 changed nothing: the
# walk misses the chunk, the int8 copies do not. Shards under Qdrant's full-scan
# threshold (about 10k chunks here) are scanned whole whatever ef says.
DEFAULT_HNSW_EF = 512


def search_params(hnsw_ef: int) -> qe.SearchParams:
    return qe.SearchParams(
        hnsw_ef=hnsw_ef,
        quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0),
    )


@dataclass(frozen=True)
class ShardStats:
    open_shards: int
    shards_on_disk: int
    opened: int
    closed: int
    closed_inline: int = 0  # past twice max_open, right after a reply rather than in a pause
    load_s: float = 0.0  # total time spent loading shards from disk
    close_s: float = 0.0  # total time spent closing them


class FolderLocked(RuntimeError):
    """Another process holds this shard folder."""


class ShardSet:
    def __init__(
        self,
        root: Path,
        *,
        max_open: int = 256,
        hnsw_m: int = 16,
        ef_construct: int = 100,
        hnsw_ef: int = DEFAULT_HNSW_EF,
    ) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.root = root
        self.max_open = max_open
        self._hnsw = (hnsw_m, ef_construct)
        self._search = search_params(hnsw_ef)
        self._open: OrderedDict[str, qe.EdgeShard] = OrderedDict()
        self._dirty: set[str] = set()
        self._dims: dict[str, int] = {}
        self._embedders: dict[str, str] = {}  # checked against the shard's record
        self._opened = 0
        self._closed = 0
        self._closed_inline = 0
        self._load_s = 0.0
        self._close_s = 0.0
        root.mkdir(parents=True, exist_ok=True)
        # Two processes writing one shard would corrupt it (Edge itself does not lock).
        self._lock: IO[bytes] | None = (root / _LOCK).open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise FolderLocked(f"{root} is in use by another process") from None
        for leftover in root.iterdir():
            if leftover.name.startswith(_TRASH) or (leftover / _CREATING).exists():
                shutil.rmtree(leftover, ignore_errors=True)

    # --- the store's operations ---------------------------------------------------

    def create(self, tenant_id: str, dim: int) -> bool:
        if self._path(tenant_id).exists():
            self._check_dim(tenant_id, dim)
            return False
        self._make(tenant_id, dim)
        return True

    def upsert(
        self, tenant_id: str, chunks: ChunkColumns, dim: int, embedder: str | None = None
    ) -> None:
        if not self._path(tenant_id).exists():
            self._make(tenant_id, dim, embedder)
        else:
            self._check_dim(tenant_id, dim)
        shard = self._shard(tenant_id)
        assert shard is not None
        self._check_embedder(tenant_id, shard, embedder, record=True)
        points = [
            qe.Point(chunk_id, vector, payload)
            for chunk_id, vector, payload in zip(
                chunks.chunk_ids, chunks.vectors.tolist(), chunks.payloads(), strict=True
            )
        ]
        for start in range(0, len(points), UPSERT_BATCH):
            shard.update(qe.UpdateOperation.upsert_points(points[start : start + UPSERT_BATCH]))
        self._dirty.add(tenant_id)

    def existing(self, tenant_id: str, chunk_ids: Sequence[str]) -> set[str]:
        shard = self._shard(tenant_id)
        if shard is None or not chunk_ids:
            return set()
        found = shard.retrieve(list(chunk_ids), with_payload=False, with_vector=False)
        return {str(record.id) for record in found}

    def delete_document(self, tenant_id: str, document_id: str, from_index: int) -> int:
        shard = self._shard(tenant_id)
        if shard is None:
            return 0
        conditions: list[Any] = [
            qe.FieldCondition(key="document_id", match=qe.MatchValue(document_id))
        ]
        if from_index > 0:
            conditions.append(
                qe.FieldCondition(key="chunk_index", range=qe.RangeFloat(gte=from_index))
            )
        selector = qe.Filter(must=conditions)
        count = shard.count(qe.CountRequest(exact=True, filter=selector))
        if count:
            shard.update(qe.UpdateOperation.delete_points_by_filter(selector))
        return count

    def search(
        self,
        tenant_id: str,
        vector: npt.ArrayLike,
        limit: int,
        embedder: str | None = None,
    ) -> list[Hit]:
        shard = self._shard(tenant_id)
        if shard is None or not self._check_embedder(tenant_id, shard, embedder, record=False):
            return []
        points = shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
                with_payload=True,
                params=self._search,
            )
        )
        return [_hit(point) for point in points]

    def drop(self, tenant_id: str) -> tuple[bool, int]:
        path = self._path(tenant_id)
        if not path.exists():
            return False, 0
        shard = self._shard(tenant_id)
        assert shard is not None
        count = shard.count(qe.CountRequest(exact=True))
        self._close(tenant_id)
        self._dirty.discard(tenant_id)
        self._dims.pop(tenant_id, None)
        self._embedders.pop(tenant_id, None)
        # Rename first: from here on the tenant has no shard, even if the process dies
        # before the folder is gone (the next open sweeps it).
        trash = self.root / f"{_TRASH}{uuid.uuid4().hex}"
        path.rename(trash)
        shutil.rmtree(trash)
        return True, count

    def idle_work(self) -> bool:
        """One unit of deferred work: close a shard beyond max_open, or index one shard
        (its payload indexes once it is big enough, its HNSW graph once enough points are
        unindexed). False when there was none."""
        if len(self._open) > self.max_open:
            self._evict_coldest()
            return True
        while self._dirty:
            tenant_id = self._dirty.pop()
            shard = self._shard(tenant_id)
            if shard is not None and self._index(tenant_id, shard):
                return True
        return False

    def has_idle_work(self) -> bool:
        return bool(self._dirty) or len(self._open) > self.max_open

    def stats(self) -> ShardStats:
        on_disk = sum(1 for p in self.root.iterdir() if p.name.startswith("tenant_"))
        return ShardStats(
            len(self._open),
            on_disk,
            self._opened,
            self._closed,
            self._closed_inline,
            self._load_s,
            self._close_s,
        )

    def payload_indexed(self, tenant_id: str) -> bool | None:
        """Whether the shard has its payload indexes yet (None: no such shard)."""
        shard = self._shard(tenant_id)
        return None if shard is None else bool(shard.info().payload_schema)

    def points(self, tenant_id: str) -> tuple[int, int]:
        """(points, indexed vectors) in the tenant's shard; (0, 0) if it has none."""
        shard = self._shard(tenant_id)
        if shard is None:
            return 0, 0
        info = shard.info()
        return info.points_count, info.indexed_vectors_count

    def close(self) -> None:
        for tenant_id in list(self._open):
            self._close(tenant_id)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    # --- shards: lazy open, LRU close ------------------------------------------------

    def _path(self, tenant_id: str) -> Path:
        return self.root / collection_name(tenant_id)

    def _shard(self, tenant_id: str) -> qe.EdgeShard | None:
        shard = self._open.get(tenant_id)
        if shard is not None:
            self._open.move_to_end(tenant_id)
            return shard
        path = self._path(tenant_id)
        if not path.exists():
            return None
        started = time.perf_counter()
        _preread_wal(path)
        shard = qe.EdgeShard.load(str(path))  # replays the WAL
        no_readahead()
        self._load_s += time.perf_counter() - started
        self._remember(tenant_id, shard)
        return shard

    def _remember(self, tenant_id: str, shard: qe.EdgeShard) -> None:
        self._open[tenant_id] = shard
        self._opened += 1

    def close_beyond_hard_limit(self) -> None:
        """Close the least recently used shards beyond twice max_open. The worker calls
        this right after answering a request: a burst of cold tenants (no pause for
        idle_work) then never holds more than that, and no request waits for a close it
        did not need (a close costs ~5 ms; indexing a dirty shard first, seconds)."""
        while len(self._open) > 2 * self.max_open:
            self._evict_coldest()
            self._closed_inline += 1

    def _evict_coldest(self) -> None:
        coldest = next(iter(self._open))
        if coldest in self._dirty:  # index it before it goes cold
            self._dirty.discard(coldest)
            self._index(coldest, self._open[coldest])
        self._close(coldest)

    def _index(self, tenant_id: str, shard: qe.EdgeShard) -> bool:
        info = shard.info()
        payload = info.points_count >= PAYLOAD_INDEX_AFTER and not info.payload_schema
        if payload:
            _index_payload(shard)
        graph = info.points_count - info.indexed_vectors_count >= INDEX_AFTER_UNINDEXED
        if graph:
            shard.optimize()
        if payload or graph:
            # Segments the optimizer replaced stay on disk (and mapped) until the next
            # flush: without it, re-indexing during a 100k ingest left 12.6 GB of dead
            # segments.
            shard.flush()
        return payload or graph

    def _close(self, tenant_id: str) -> None:
        shard = self._open.pop(tenant_id, None)
        if shard is not None:
            started = time.perf_counter()
            shard.close()  # flushes segments; the WAL already holds every write
            self._close_s += time.perf_counter() - started
            self._closed += 1

    def _make(self, tenant_id: str, dim: int, embedder: str | None = None) -> None:
        m, ef_construct = self._hnsw
        config = qe.EdgeConfig(
            # DOT: every Embedder returns unit-length rows, so this ranks as cosine does
            # without re-normalising anything.
            # Cold: the originals stay in their mmap, read only to rescore a search's
            # best hits. Cached (the default) faults a new segment's whole 32 MiB vector
            # chunk in at every load (measured: a 20-point shard's load 28 ms p50 / 291 ms
            # max and 43.5 MB of page cache; Cold: 18 / 43 ms and 11.6 MB).
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot, memory=qe.Memory.Cold),
            # int8 copies of the vectors, kept in RAM: HNSW builds and searches on them
            # (3.5x faster build, measured) and rescores the top hits on the originals.
            quantization_config=qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, always_ram=True
            ),
            # Edge's default is a search pool of one thread per CPU *per shard* (8 here):
            # 1 000 open shards would be 8 000 threads. One thread each is plenty for
            # one HNSW walk per request.
            max_search_threads=1,
            # Cap segments at ~32k 1024-wide vectors: each optimize merges new points into
            # a segment and rebuilds its graph, so an uncapped segment is rebuilt whole on
            # every round (quadratic over a long ingest); capped, a round costs at most one
            # segment's build and a 100k-chunk tenant searches 4 graphs.
            optimizers=qe.EdgeOptimizersConfig(
                max_segment_size=MAX_SEGMENT_KB,
                # Qdrant's threshold is in KB of vectors (default 10 000: 2 500 vectors at
                # 1024 wide, 6 500 at 384); set from INDEX_AFTER_UNINDEXED so idle_work
                # never asks for an index the optimizer then declines to build.
                indexing_threshold=max(1, INDEX_AFTER_UNINDEXED * dim * 4 // 1024),
            ),
            hnsw_config=qe.HnswIndexConfig(
                m=m, ef_construct=ef_construct, full_scan_threshold=10_000
            ),
        )
        path = self._path(tenant_id)
        path.mkdir()
        # Marked until complete: a crash half-way leaves a marked folder, which the next
        # open removes, never a torn shard that looks whole. (Built in place rather than
        # renamed into place: a shard cannot move while open, and close + load would
        # cost ~0.2 s per new tenant.)
        marker = path / _CREATING
        marker.touch()
        shard = qe.EdgeShard.create(str(path), config)
        shard.flush()
        if embedder is not None:
            (path / _EMBEDDER).write_text(embedder)
            self._embedders[tenant_id] = embedder
        marker.unlink()
        self._remember(tenant_id, shard)

    def _check_embedder(
        self, tenant_id: str, shard: qe.EdgeShard, embedder: str | None, *, record: bool
    ) -> bool:
        """False for an empty shard no embedder has written to yet (nothing to search);
        raises EmbedderMismatch for another embedder's vectors; `record` labels an
        empty unlabelled shard with `embedder` (its first upsert)."""
        if embedder is None or self._embedders.get(tenant_id) == embedder:
            return True
        label = self._path(tenant_id) / _EMBEDDER
        recorded = label.read_text() if label.exists() else None
        if embedder_to_record(recorded, embedder, lambda: shard.info().points_count == 0):
            if not record:
                return False
            temporary = label.with_suffix(".tmp")
            temporary.write_text(embedder)
            temporary.rename(label)  # whole or absent, whenever a crash comes
        self._embedders[tenant_id] = embedder
        return True

    def _check_dim(self, tenant_id: str, dim: int) -> None:
        size = self._dims.get(tenant_id)
        if size is None:
            # Edge persists the shard's config as JSON and has no getter for it.
            config = json.loads((self._path(tenant_id) / "edge_config.json").read_text())
            size = int(config["vectors"][""]["size"])
            self._dims[tenant_id] = size
        if size != dim:
            raise DimensionMismatch(f"collection holds {size}-wide vectors, embedder makes {dim}")


_MADV_RANDOM = 1  # Linux
_PAGE = 4096
_USER_SPACE = 1 << 47  # x86-64 and arm64's 4-level user address space
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def no_readahead() -> None:
    """Advise the kernel that every mapping of this (worker) process is read at random,
    as Qdrant itself advises for most of its files but not for all: a shard's WAL and
    vector files are 32 MiB and mostly sparse, so each page fault on them would otherwise
    read the disk's read-ahead (8 MB on this machine's disk) of zeros into memory, which
    made a cold tenant's first search take ~90 ms here (README, retrieval at scale).
    One call over the whole address space: the kernel applies the advice to every
    mapping in it and answers ENOMEM for the gaps between them, which is expected.
    Called after loads only: a shard just created or optimized has its pages in the page
    cache already, and advising its WAL random slowed ingest by ~10-30 % (each write
    fault then reads its own page: `bench.retrieval_edge one 10000`, 2,784-2,855 against
    2,923-4,159 chunks/s without)."""
    if _libc is not None:
        _libc.madvise(ctypes.c_void_p(0), ctypes.c_size_t(_USER_SPACE), _MADV_RANDOM)


def _preread_wal(shard_path: Path) -> None:
    """Read a shard's WAL files into the page cache, exactly: their written parts plus
    the page after each (where the replay reads the end mark), with read-ahead off. The
    load maps them before `no_readahead` can advise it, and each is a 32 MiB sparse file
    whose first fault would otherwise read the disk's read-ahead of zeros (8 MB each on
    this machine: 16 of a small shard's 16.8 MB read per load, measured with fincore)."""
    for wal in (shard_path / "wal").iterdir():
        try:
            fd = os.open(wal, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            _read_written(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)


def _read_written(fd: int, size: int) -> None:
    os.pread(fd, _PAGE, 0)  # the first page, even of a segment that is all hole
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: nothing written after offset
            return
        end = min(size, os.lseek(fd, start, os.SEEK_HOLE) + _PAGE)
        while start < end:
            got = os.pread(fd, min(1 << 20, end - start), start)
            if not got:
                break
            start += len(got)
        offset = end


def _index_payload(shard: qe.EdgeShard) -> None:
    """Deletes and re-ingest clean-up filter on these; indexed, they are look-ups."""
    shard.update(qe.UpdateOperation.create_field_index("document_id", qe.PayloadSchemaType.Keyword))
    shard.update(qe.UpdateOperation.create_field_index("chunk_index", qe.PayloadSchemaType.Integer))


def _hit(point: qe.ScoredPoint) -> Hit:
    payload: dict[str, Any] = point.payload or {}
    return Hit(
        chunk_id=str(point.id),
        tenant_id=str(payload.get("tenant_id", "")),
        document_id=str(payload.get("document_id", "")),
        chunk_index=int(payload.get("chunk_index", 0)),
        text=str(payload.get("text", "")),
        score=float(point.score),
    )
