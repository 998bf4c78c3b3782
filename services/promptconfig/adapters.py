"""The tenant store: one interface, backed by a JetStream KV bucket (history kept)."""

from __future__ import annotations

from typing import Protocol

from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus import TENANT_VERSIONS_BUCKET, TENANTS_BUCKET, kv_keys
from shared.messages.tenants import TenantConfig


class VersionConflict(Exception):
    """Another writer saved the tenant between our read and our write."""


class TenantStore(Protocol):
    async def get(self, tenant_id: str) -> tuple[TenantConfig, int] | None:
        """The current config and its store revision, or None."""

    async def put(self, config: TenantConfig, expected_revision: int) -> int:
        """Save if the revision is still `expected_revision` (0: must not exist)."""

    async def delete(self, tenant_id: str) -> bool:
        """Remove the tenant and every saved version of its config."""

    async def record_version(self, config: TenantConfig) -> None:
        """Keep an immutable copy of a saved version."""

    async def versions(self, tenant_id: str) -> list[TenantConfig]:
        """Every recorded version, oldest first."""

    async def tenant_ids(self) -> list[str]:
        """Every registered tenant id, sorted."""


def _version_key(tenant_id: str, version: int) -> str:
    return f"{tenant_id}.{version:08d}"


class KvTenantStore:
    def __init__(self, kv: KeyValue, history: KeyValue) -> None:
        self._kv = kv
        self._history = history

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvTenantStore:
        return cls(await js.key_value(TENANTS_BUCKET), await js.key_value(TENANT_VERSIONS_BUCKET))

    async def tenant_ids(self) -> list[str]:
        return sorted(await kv_keys(self._kv, ">"))

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
        existed = await self.get(tenant_id) is not None
        for key in await self._version_keys(tenant_id):
            await self._history.purge(key)
        if existed:
            await self._kv.purge(tenant_id)
        return existed

    async def record_version(self, config: TenantConfig) -> None:
        key = _version_key(config.tenant_id, config.version)
        await self._history.put(key, config.model_dump_json().encode())

    async def versions(self, tenant_id: str) -> list[TenantConfig]:
        found = []
        for key in sorted(await self._version_keys(tenant_id)):
            try:
                entry = await self._history.get(key)
            except KeyNotFoundError:
                continue
            if entry.value:
                found.append(TenantConfig.model_validate_json(entry.value))
        return found

    async def _version_keys(self, tenant_id: str) -> list[str]:
        return await kv_keys(self._history, f"{tenant_id}.*")
