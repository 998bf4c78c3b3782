"""finetune's stores: jobs, models and quota counters in a JetStream KV bucket, and each
tenant's training files and model weights in that tenant's own JetStream object store.

KV keys (FINETUNE_BUCKET):
  <tid>.jobs.<job_id>     FineTuneJob
  <tid>.models.<digest>   FineTuneModelInfo (the owner is the key's tenant: nothing else)
  <tid>.quota             QuotaState

Object store ARTIFACTS_BUCKET, names `<tid>/data/<job_id>.jsonl` and
`<tid>/models/<suffix>.npz`: one bucket (so a service's NATS permissions can name it),
each tenant under its own prefix; offboarding deletes everything under the prefix.

finetune writes these; llm reads a tenant's model registrations and weights to serve
them. The layout is one contract for both, so it lives in shared/ (services never
import each other).
"""

from __future__ import annotations

import hashlib

from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
    ObjectDeletedError,
    ObjectNotFoundError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from pydantic import BaseModel, Field

from shared.bus import FINETUNE_BUCKET, kv_keys
from shared.messages.finetune import FineTuneJob, FineTuneModelInfo
from shared.tenancy import validate_tenant_id

ARTIFACTS_BUCKET = "tenantry-finetune-files"


class Conflict(Exception):
    """Another writer changed the entry between our read and our write."""


class QuotaState(BaseModel):
    month: str = Field(default="", description="YYYY-MM the count is for.")
    created: int = Field(default=0, ge=0, description="Jobs created in that month.")
    active: list[str] = Field(default_factory=list, description="Jobs not yet finished.")


def job_key(tenant_id: str, job_id: str) -> str:
    return f"{validate_tenant_id(tenant_id)}.jobs.{job_id}"


def model_key(tenant_id: str, model_id: str) -> str:
    """Keyed by a digest of the model id: provider ids ("ft:gpt-4o-mini:org::abc") hold
    characters a KV key may not, and the id alone (with the tenant) finds the entry."""
    ref = hashlib.sha256(model_id.encode()).hexdigest()[:32]
    return f"{validate_tenant_id(tenant_id)}.models.{ref}"


def quota_key(tenant_id: str) -> str:
    return f"{validate_tenant_id(tenant_id)}.quota"


def object_name(tenant_id: str, name: str) -> str:
    return f"{validate_tenant_id(tenant_id)}/{name}"


class JobStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> JobStore:
        return cls(await js.key_value(FINETUNE_BUCKET))

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return entry.value, entry.revision or 0

    async def _put(self, key: str, data: bytes, revision: int) -> int:
        try:
            if revision == 0:
                return await self.kv.create(key, data)
            return await self.kv.update(key, data, last=revision)
        except KeyWrongLastSequenceError as exc:
            raise Conflict(key) from exc
        except Exception as exc:
            # create() on an existing key is a plain APIError "wrong last sequence".
            if "wrong last sequence" in str(exc).lower():
                raise Conflict(key) from exc
            raise

    async def job(self, tenant_id: str, job_id: str) -> tuple[FineTuneJob, int] | None:
        found = await self._get(job_key(tenant_id, job_id))
        return (FineTuneJob.model_validate_json(found[0]), found[1]) if found else None

    async def save_job(self, job: FineTuneJob, revision: int) -> int:
        data = job.model_dump_json().encode()
        return await self._put(job_key(job.tenant_id, job.job_id), data, revision)

    async def jobs(self, tenant_id: str) -> list[FineTuneJob]:
        return await self._jobs(f"{validate_tenant_id(tenant_id)}.jobs.*")

    async def active_jobs(self) -> tuple[list[FineTuneJob], list[tuple[str, str]]]:
        """Every tenant's unfinished jobs, found through the quota entries' active lists
        (so the sweep costs the jobs in flight, not every job ever run), plus the
        (tenant, job id) slots whose job is gone."""
        found, gone = [], []
        for key in await kv_keys(self.kv, "*.quota"):
            tenant_id = key.split(".", 1)[0]
            state, _ = await self.quota(tenant_id)
            for job_id in state.active:
                entry = await self.job(tenant_id, job_id)
                if entry is None:
                    gone.append((tenant_id, job_id))
                else:
                    found.append(entry[0])
        return found, gone

    async def _jobs(self, pattern: str) -> list[FineTuneJob]:
        found = []
        for key in await kv_keys(self.kv, pattern):
            entry = await self._get(key)
            if entry is not None:
                found.append(FineTuneJob.model_validate_json(entry[0]))
        return found

    async def delete_job(self, tenant_id: str, job_id: str) -> bool:
        existed = await self._get(job_key(tenant_id, job_id)) is not None
        if existed:
            await self.kv.purge(job_key(tenant_id, job_id))
        return existed

    async def model(self, tenant_id: str, model_id: str) -> FineTuneModelInfo | None:
        found = await self._get(model_key(tenant_id, model_id))
        info = FineTuneModelInfo.model_validate_json(found[0]) if found else None
        return info if info is not None and info.model_id == model_id else None

    async def save_model(self, tenant_id: str, info: FineTuneModelInfo) -> None:
        await self.kv.put(model_key(tenant_id, info.model_id), info.model_dump_json().encode())

    async def delete_model(self, tenant_id: str, model_id: str) -> bool:
        return await self.delete_key(model_key(tenant_id, model_id))

    async def delete_key(self, key: str) -> bool:
        existed = await self._get(key) is not None
        if existed:
            await self.kv.purge(key)
        return existed

    async def model_keys(self, tenant_id: str) -> list[str]:
        return await kv_keys(self.kv, f"{validate_tenant_id(tenant_id)}.models.*")

    async def quota(self, tenant_id: str) -> tuple[QuotaState, int]:
        found = await self._get(quota_key(tenant_id))
        return (QuotaState.model_validate_json(found[0]), found[1]) if found else (QuotaState(), 0)

    async def save_quota(self, tenant_id: str, state: QuotaState, revision: int) -> int:
        return await self._put(quota_key(tenant_id), state.model_dump_json().encode(), revision)

    async def drop_quota(self, tenant_id: str) -> None:
        if await self._get(quota_key(tenant_id)) is not None:
            await self.kv.purge(quota_key(tenant_id))


class ArtifactStore:
    """Training files and model weights in one object store, each tenant under its own
    name prefix `<tid>/`. Every call takes the tenant id and builds the name itself,
    so no caller can reach another tenant's objects by naming them."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._store: ObjectStore | None = None

    async def _open(self, create: bool) -> ObjectStore | None:
        if self._store is None:
            try:
                self._store = await self.js.object_store(ARTIFACTS_BUCKET)
            except (BucketNotFoundError, NotFoundError):
                if not create:
                    return None
                self._store = await self.js.create_object_store(
                    ARTIFACTS_BUCKET,
                    ObjectStoreConfig(bucket=ARTIFACTS_BUCKET, storage=StorageType.FILE),
                )
        return self._store

    async def put(self, tenant_id: str, name: str, data: bytes) -> None:
        store = await self._open(create=True)
        assert store is not None
        await store.put(object_name(tenant_id, name), data)

    async def get(self, tenant_id: str, name: str) -> bytes | None:
        store = await self._open(create=False)
        if store is None:
            return None
        try:
            result = await store.get(object_name(tenant_id, name))
        except (NotFoundError, ObjectNotFoundError, ObjectDeletedError):
            return None
        return result.data

    async def delete(self, tenant_id: str, name: str) -> bool:
        store = await self._open(create=False)
        if store is None:
            return False
        try:
            await store.get_info(object_name(tenant_id, name))
            await store.delete(object_name(tenant_id, name))
        except (NotFoundError, ObjectNotFoundError, ObjectDeletedError):
            return False
        return True

    async def names(self, tenant_id: str) -> list[str]:
        """The tenant's object names (without its prefix)."""
        store = await self._open(create=False)
        if store is None:
            return []
        prefix = object_name(tenant_id, "")
        try:
            infos = await store.list(ignore_deletes=True)
        except NotFoundError:  # an empty store answers "no objects"
            return []
        return [i.name[len(prefix) :] for i in infos if i.name and i.name.startswith(prefix)]

    async def drop(self, tenant_id: str) -> int:
        """Delete every object of the tenant; returns how many there were."""
        removed = 0
        for name in await self.names(tenant_id):
            removed += int(await self.delete(tenant_id, name))
        return removed
