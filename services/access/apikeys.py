"""A tenant's API keys for the HTTP door: plain functions over the keys bucket."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared.apikeys import StoredKey, digest, kv_key, new_key
from shared.bus import kv_keys
from shared.messages.apikeys import ApiKeyInfo


class KeyStore:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def issue(self, tenant_id: str, name: str, actor: str) -> tuple[StoredKey, str]:
        key_id, key = new_key(tenant_id)
        stored = StoredKey(
            tenant_id=tenant_id,
            key_id=key_id,
            name=name,
            sha256=digest(key),
            created_at=datetime.now(UTC),
            created_by=actor,
            hint=key[-4:],
        )
        await self._kv.create(kv_key(tenant_id, key_id), stored.model_dump_json().encode())
        return stored, key

    async def get(self, tenant_id: str, key_id: str) -> StoredKey | None:
        try:
            entry = await self._kv.get(kv_key(tenant_id, key_id))
        except KeyNotFoundError:
            return None
        return StoredKey.model_validate_json(entry.value) if entry.value else None

    async def list(self, tenant_id: str) -> list[ApiKeyInfo]:
        found = []
        for key in await kv_keys(self._kv, f"{tenant_id}.*"):
            stored = await self.get(*key.split(".", 1))
            if stored is not None:
                found.append(ApiKeyInfo(**stored.model_dump(exclude={"tenant_id", "sha256"})))
        return sorted(found, key=lambda k: k.created_at)

    async def revoke(self, tenant_id: str, key_id: str) -> bool:
        if await self.get(tenant_id, key_id) is None:
            return False
        await self._kv.purge(kv_key(tenant_id, key_id))
        return True

    async def revoke_all(self, tenant_id: str) -> int:
        """Offboarding: every key of the tenant. Returns how many there were."""
        keys = await kv_keys(self._kv, f"{tenant_id}.*")
        for key in keys:
            await self._kv.purge(key)
        return len(keys)
