"""One audit writer at a time: a lease in a JetStream KV bucket.

Replicas share the durable consumers, but the hash chain needs one writer assigning
positions (two would both append seq N+1 to the same tenant). So audit runs
active/standby: a replica starts serving only once it holds the lease, a key created
only-if-absent in a bucket whose entries expire after `ttl_s`. The holder renews it
(compare-and-set on its revision) every ttl/3; if it dies, the key expires and a
standby takes over. A holder that fails to renew (partitioned, or someone else took
the key) stops writing: `check()` raises before every insert and `on_lost` stops the
process, which an orchestrator restarts as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.js.api import KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.logging import get_logger
from shared.messages.base import new_id

log = get_logger("tenantry.audit.lease")

BUCKET = "tenantry-audit-writer"
KEY = "writer"


class LeaseLost(RuntimeError):
    """This replica no longer holds the writer lease; it must not write."""


class WriterLease:
    def __init__(self, kv: KeyValue, ttl_s: float, on_lost: Callable[[], None]) -> None:
        self._kv, self._ttl, self._on_lost = kv, ttl_s, on_lost
        self.holder = new_id()
        self._revision = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, js: JetStreamContext, ttl_s: float, on_lost: Callable[[], None]
    ) -> WriterLease:
        config = KeyValueConfig(bucket=BUCKET, history=1, ttl=ttl_s, storage=StorageType.FILE)
        try:
            kv = await js.key_value(BUCKET)
        except BucketNotFoundError:
            try:
                kv = await js.create_key_value(config)
            except BadRequestError:
                kv = await js.key_value(BUCKET)
        return cls(kv, ttl_s, on_lost)

    @property
    def held(self) -> bool:
        return self._revision > 0

    async def acquire(self) -> None:
        """Wait (as a standby) until the lease is ours, then keep renewing it."""
        waited = False
        while True:
            try:
                self._revision = await self._kv.create(KEY, self.holder.encode())
                break
            except KeyWrongLastSequenceError:
                if not waited:
                    log.warning("lease.standby", reason="another audit writer holds the lease")
                    waited = True
                await asyncio.sleep(self._ttl / 3)
        log.info("lease.acquired", holder=self.holder)
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                self._revision = await self._kv.update(
                    KEY, self.holder.encode(), last=self._revision
                )
            except Exception:
                log.exception("lease.lost", holder=self.holder)
                self._revision = 0
                self._on_lost()
                return

    def check(self) -> None:
        if not self.held:
            raise LeaseLost("this audit replica does not hold the writer lease")

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.held:
            # Only if still ours: a stale release must not free someone else's lease.
            with contextlib.suppress(Exception):
                await self._kv.delete(KEY, last=self._revision)
            self._revision = 0
