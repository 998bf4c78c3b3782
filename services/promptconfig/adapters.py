"""The tenant store: one interface, backed by a JetStream KV bucket (history kept)."""

from __future__ import annotations

from typing import Protocol

from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus import TENANTS_BUCKET
from shared.messages.tenants import TenantConfig


class VersionConflict(Exception):
    """Another writer saved the tenant between our read and our write."""


class TenantStore(Protocol):
    async def get(self, tenant_id: str) -> tuple[TenantConfig, int] | None:
        """The current config and its store revision, or None."""

    async def put(self, config: TenantConfig, expected_revision: int) -> int:
        """Save if the revision is still `expected_revision` (0: must not exist)."""

    async def delete(self, tenant_id: str) -> bool: ...


class KvTenantStore:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvTenantStore:
        return cls(await js.key_value(TENANTS_BUCKET))

    async def get(self, tenant_id: str) -> tuple[TenantConfig, int] | None:
        try:
            entry = await self._kv.get(tenant_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return TenantConfig.model_validate_json(entry.value), entry.revision or 0

    async def put(self, config: TenantConfig, expected_revision: int) -> int:
        data = config.model_dump_json().encode()
        try:
            if expected_revision == 0:
                return await self._kv.create(config.tenant_id, data)
            return await self._kv.update(config.tenant_id, data, last=expected_revision)
        except KeyWrongLastSequenceError as exc:
            raise VersionConflict(config.tenant_id) from exc
        except Exception as exc:
            # nats-py raises a plain APIError with code 10071 for "wrong last sequence"
            # on create; map it to the same conflict.
            if "wrong last sequence" in str(exc).lower():
                raise VersionConflict(config.tenant_id) from exc
            raise

    async def delete(self, tenant_id: str) -> bool:
        if await self.get(tenant_id) is None:
            return False
        await self._kv.purge(tenant_id)
        return True
