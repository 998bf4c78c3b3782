"""The outside system the HTTP door reads: the API keys bucket (read-only)."""

from __future__ import annotations

from typing import Protocol

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared import apikeys


class Keys(Protocol):
    """What the routes need (tests/unit/test_api_handlers.py has a fake)."""

    async def tenant_of(self, key: str) -> str | None: ...


class KeyLookup:
    """Every request reads the key's entry afresh (a KV direct get, well under a
    millisecond), so a revocation refuses the very next request."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def tenant_of(self, key: str) -> str | None:
        located = apikeys.locate(key)
        if located is None:
            return None
        tenant_id, key_id = located
        try:
            entry = await self._kv.get(apikeys.kv_key(tenant_id, key_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        stored = apikeys.StoredKey.model_validate_json(entry.value)
        return stored.tenant_id if apikeys.matches(key, stored) else None
