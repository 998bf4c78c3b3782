"""Chain heads anchored outside ClickHouse, in a JetStream KV bucket.

A hash chain alone cannot show that its newest rows were deleted (nothing follows
them), nor that someone with write access to ClickHouse rewrote a whole chain and
recomputed every hash. After each stored batch the writer records each tenant's head
(seq, hash) here; `verify` then checks that the chain reaches that position with that
hash. An attacker would need write access to both ClickHouse and NATS.

The anchor may lag the table (a crash between the insert and the put): a chain longer
than its anchor is fine; a chain shorter than it, or with another hash there, is not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from nats.js.api import KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

BUCKET = "tenantry-audit-heads"
SAVE_AT_ONCE = 64


@dataclass(frozen=True)
class Anchor:
    """A tenant's head as the writer stored it, and when the TTL may remove that row
    (after which its absence is retention, not tampering)."""

    seq: int
    hash: str
    expires_at: datetime


class HeadAnchors(Protocol):
    async def save(self, anchors: Mapping[str, Anchor]) -> None: ...

    async def load(self, tenant_id: str) -> Anchor | None: ...


class KvHeadAnchors:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvHeadAnchors:
        try:
            return cls(await js.key_value(BUCKET))
        except BucketNotFoundError:
            config = KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE)
            try:
                return cls(await js.create_key_value(config))
            except BadRequestError:
                return cls(await js.key_value(BUCKET))

    async def save(self, anchors: Mapping[str, Anchor]) -> None:
        # One put per tenant of the batch, SAVE_AT_ONCE in flight: one after the other,
        # a batch spanning a thousand tenants would wait a thousand round trips.
        items = list(anchors.items())
        for start in range(0, len(items), SAVE_AT_ONCE):
            await asyncio.gather(
                *(self._put(tid, anchor) for tid, anchor in items[start : start + SAVE_AT_ONCE])
            )

    async def _put(self, tenant_id: str, anchor: Anchor) -> None:
        body = {"seq": anchor.seq, "hash": anchor.hash, "expires_at": anchor.expires_at}
        await self._kv.put(tenant_id, json.dumps(body, default=datetime.isoformat).encode())

    async def load(self, tenant_id: str) -> Anchor | None:
        try:
            entry = await self._kv.get(tenant_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        body = json.loads(entry.value)
        expires = datetime.fromisoformat(str(body["expires_at"]))
        return Anchor(int(body["seq"]), str(body["hash"]), expires)
