"""Where metering state lives: a small compare-and-set store, backed by JetStream KV.

Every write names the revision it read (0: the key must not exist yet). JetStream
refuses a write whose expected last sequence is stale, so two replicas that read
the same revision cannot both write; the loser re-reads and decides again.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from nats.js.client import JetStreamContext
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from shared.bus import METERING_BUCKET, kv_keys


class Conflict(Exception):
    """Another writer changed the key since it was read."""


class MeteringStore(Protocol):
    async def get(self, key: str) -> tuple[bytes, int] | None:
        """The value and its revision, or None if the key does not exist."""

    async def put(self, key: str, value: bytes, expected_revision: int) -> int:
        """Write if the key is still at `expected_revision` (0: absent); else raise Conflict."""

    async def purge_tenant(self, tenant_id: str) -> int:
        """Remove every entry of the tenant (offboarding); returns how many there were."""


class KvMeteringStore:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvMeteringStore:
        return cls(await js.key_value(METERING_BUCKET))

    async def get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None:
            return None
        return entry.value, entry.revision or 0

    async def put(self, key: str, value: bytes, expected_revision: int) -> int:
        try:
            if expected_revision == 0:
                return await self._kv.create(key, value)
            return await self._kv.update(key, value, last=expected_revision)
        except KeyWrongLastSequenceError as exc:
            raise Conflict(key) from exc
        except APIError as exc:
            # 10071 / 10164: "wrong last sequence", sometimes raised as a plain APIError.
            if exc.err_code in (10071, 10164):
                raise Conflict(key) from exc
            raise

    async def purge_tenant(self, tenant_id: str) -> int:
        # Only the tenant's own keys ("<tid>.<YYYY-MM>"), not a bucket scan.
        keys = await kv_keys(self._kv, f"{tenant_id}.*")
        for key in keys:
            await self._kv.purge(key)
        return len(keys)


class InMemoryMeteringStore:
    """The same compare-and-set semantics in process memory, for unit tests only:
    state here is invisible to other replicas."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, int]] = {}
        self._seq = 0

    async def get(self, key: str) -> tuple[bytes, int] | None:
        # Yield like a network round trip would, so concurrent callers interleave.
        await asyncio.sleep(0)
        return self._data.get(key)

    async def put(self, key: str, value: bytes, expected_revision: int) -> int:
        await asyncio.sleep(0)
        current = self._data.get(key)
        if (current[1] if current else 0) != expected_revision:
            raise Conflict(key)
        self._seq += 1
        self._data[key] = (value, self._seq)
        return self._seq

    async def purge_tenant(self, tenant_id: str) -> int:
        doomed = [k for k in self._data if k.startswith(f"{tenant_id}.")]
        for key in doomed:
            del self._data[key]
        return len(doomed)
