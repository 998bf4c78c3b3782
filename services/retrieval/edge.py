"""The embedded store: Qdrant Edge shards (one per tenant) in a worker process.

qdrant-edge-py holds the GIL for the whole of every call: an upsert of 5 000 points
for ~40 ms, loading a shard for ~0.4 s, building a 100k-point HNSW index for minutes.
On the service's event loop (or any thread of its process) that would stall every
request, heartbeat and audit publish for as long. So the shards live in a child process
(`python -m services.retrieval.edge`, started by `EdgeStore.open`) that owns the folder,
and the service talks to it over a socket pair: one request at a time, each answered
before the next, the way local mode's single worker thread serialises calls.

The worker builds HNSW indexes only when no request has arrived for a moment, so an
ingest burst is acknowledged at write speed and indexed afterwards; a search that
arrives while an index is being built waits for it (see README for how long).

If the service dies, the worker reads end-of-file on its socket, closes every shard and
exits, releasing the folder for the next start; if the worker dies, the service starts
another and repeats the call. Every acknowledged upsert is already in
the shard's WAL by then, and is replayed on the next load even if the worker was killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from services.retrieval.adapters import (
    ChunkColumns,
    DimensionMismatch,
    EmbedderMismatch,
    Hit,
    StoredChunk,
)
from shared.logging import get_logger

if TYPE_CHECKING:
    # Only the worker imports qdrant_edge: the service process stays free of it (and
    # runs without it installed when it talks to a Qdrant server).
    from services.retrieval.shards import ShardSet, ShardStats

log = get_logger("tenantry.retrieval.edge")

# Wait this long without a request before closing cold shards or building an index.
IDLE_BEFORE_INDEX_S = 0.2
MAX_DEFER_S = 5.0
_OPS = frozenset(
    {"create", "upsert", "existing", "delete_document", "search", "drop", "stats", "points"}
)
_START_TIMEOUT_S = 60.0


class StoreError(RuntimeError):
    """The worker refused or failed an operation; the message says why."""


class EdgeStore:
    def __init__(
        self,
        root: Path,
        *,
        max_open: int = 256,
        hnsw_m: int = 16,
        ef_construct: int = 100,
        hnsw_ef: int = 512,
    ) -> None:
        self.root = root
        self._args = [
            *("--max-open", str(max_open)),
            *("--hnsw-m", str(hnsw_m)),
            *("--ef-construct", str(ef_construct)),
            *("--hnsw-ef", str(hnsw_ef)),
        ]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def open(self) -> None:
        self._proc, conn = _start_worker(self.root, self._args)
        self._conn = conn
        try:
            # The worker answers once it holds the folder's lock, or says why it cannot.
            await asyncio.wait_for(self._run(lambda: _unwrap(conn.recv())), _START_TIMEOUT_S)
        except BaseException:
            await self._kill()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(EOFError, OSError, StoreError):
                await self._call("close")
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._proc.wait, 30)
            self._proc = None
        self._executor.shutdown(wait=True)

    async def upsert(
        self,
        tenant_id: str,
        chunks: Sequence[StoredChunk],
        dim: int,
        embedder: str | None = None,
    ) -> None:
        await self._call("upsert", tenant_id, ChunkColumns.of(chunks), dim, embedder)

    async def create(self, tenant_id: str, dim: int) -> bool:
        return bool(await self._call("create", tenant_id, dim))

    async def delete_document(self, tenant_id: str, document_id: str, from_index: int = 0) -> int:
        return int(await self._call("delete_document", tenant_id, document_id, from_index))

    async def existing(self, tenant_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return set(await self._call("existing", tenant_id, list(chunk_ids)))

    async def search(
        self,
        tenant_id: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        embedder: str | None = None,
    ) -> list[Hit]:
        vector = np.asarray(vector, dtype=np.float32)  # crosses as one buffer
        return list(await self._call("search", tenant_id, vector, limit, embedder))

    async def drop(self, tenant_id: str) -> tuple[bool, int]:
        existed, count = await self._call("drop", tenant_id)
        return bool(existed), int(count)

    async def stats(self) -> ShardStats:
        stats: ShardStats = await self._call("stats")
        return stats

    async def points(self, tenant_id: str) -> tuple[int, int]:
        """(points, indexed vectors) in the tenant's shard."""
        points, indexed = await self._call("points", tenant_id)
        return int(points), int(indexed)

    # --- plumbing ----------------------------------------------------------------------

    async def _call(self, op: str, *args: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("EdgeStore used before open()")

        def roundtrip() -> Any:
            try:
                return self._send(op, args)
            except (EOFError, ConnectionError) as exc:
                if op == "close":
                    raise
                # The worker died (killed, out of memory). Every acknowledged write is in
                # a shard's WAL and every operation is safe to repeat (chunk ids are
                # fixed), so start a new worker and send this one again, once. (A delete
                # the dead worker had finished then reports 0 removed: it is gone either way.)
                log.warning("retrieval.edge_worker_restarted", op=op, error=type(exc).__name__)
                self._restart()
                return self._send(op, args)

        return await self._run(roundtrip)

    def _send(self, op: str, args: tuple[Any, ...]) -> Any:
        conn = self._conn
        assert conn is not None
        conn.send((op, args))
        return _unwrap(conn.recv())

    def _restart(self) -> None:
        """On the executor thread: replace a dead worker (the kernel freed its flock)."""
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self._proc, self._conn = _start_worker(self.root, self._args)
        _unwrap(self._conn.recv())  # ready, or why not
        self.restarts += 1

    async def _run(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.kill()
            await asyncio.get_running_loop().run_in_executor(None, self._proc.wait)
            self._proc = None
        self._executor.shutdown(wait=False)


def _start_worker(root: Path, args: list[str]) -> tuple[subprocess.Popen[bytes], Connection]:
    ours, theirs = socket.socketpair()
    with theirs:
        proc = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [
                sys.executable,
                *("-m", "services.retrieval.edge"),
                *("--fd", str(theirs.fileno()), "--root", str(root)),
                *args,
            ],
            pass_fds=[theirs.fileno()],
            # Its own session: a Ctrl-C in the terminal reaches the service, which then
            # closes the worker in order, rather than both at once.
            start_new_session=True,
        )
    return proc, Connection(ours.detach())


def _unwrap(reply: tuple[Any, ...]) -> Any:
    if reply[0] == "ok":
        return reply[1]
    _, kind, message = reply
    if kind == "EmbedderMismatch":
        raise EmbedderMismatch(message)
    if kind == "DimensionMismatch":
        raise DimensionMismatch(message)
    raise StoreError(f"{kind}: {message}")


# --- the worker process ------------------------------------------------------------------


def serve(conn: Connection, shards: ShardSet) -> None:
    """Answer requests until the service says close or goes away; index when idle."""
    deferred_since: float | None = None
    while True:
        if shards.has_idle_work():
            now = time.monotonic()
            deferred_since = deferred_since or now
            # Idle work waits for a pause in requests, but not for ever: under a steady
            # stream it would never run, and the index would never be built.
            overdue = now - deferred_since > MAX_DEFER_S
            if overdue or not conn.poll(IDLE_BEFORE_INDEX_S):
                shards.idle_work()
                deferred_since = None
                continue
        else:
            deferred_since = None
        try:
            op, args = conn.recv()
        except EOFError:
            return  # the service is gone; the caller closes the shards
        if op == "close":
            shards.close()
            conn.send(("ok", None))
            return
        try:
            if op not in _OPS:
                raise ValueError(f"unknown operation {op!r}")
            result = getattr(shards, op)(*args)
        except Exception as exc:  # sent back and raised in the service; the worker lives on
            conn.send(("err", type(exc).__name__, str(exc)))
        else:
            conn.send(("ok", result))
        shards.close_beyond_hard_limit()  # after the reply, not in the request's time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.retrieval.edge")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--max-open", type=int, default=256)
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--ef-construct", type=int, default=100)
    parser.add_argument("--hnsw-ef", type=int, default=512)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when we stop
    conn = Connection(args.fd)
    try:
        from services.retrieval.shards import ShardSet  # here, not at the top: see above

        shards = ShardSet(
            args.root,
            max_open=args.max_open,
            hnsw_m=args.hnsw_m,
            ef_construct=args.ef_construct,
            hnsw_ef=args.hnsw_ef,
        )
    except Exception as exc:
        conn.send(("err", type(exc).__name__, str(exc)))
        return
    conn.send(("ok", os.getpid()))
    try:
        serve(conn, shards)
    finally:
        shards.close()


if __name__ == "__main__":
    main()
