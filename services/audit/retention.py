"""How long a tenant's audit rows are kept: its tier's retention, else the default.

The tier comes from promptconfig's tenant registry (the JetStream KV bucket it owns,
read-only here) and is cached briefly: a tier change applies to rows written after it,
which is what a per-row TTL can honour without rewriting history.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from shared.messages.tenants import TenantConfig
from shared.tenancy import is_valid_tenant_id

TierLookup = Callable[[str], Awaitable[str | None]]

CACHE_SECONDS = 60.0


def kv_tier_lookup(kv: KeyValue) -> TierLookup:
    async def lookup(tenant_id: str) -> str | None:
        if not is_valid_tenant_id(tenant_id):
            return None  # _unattributed and the like have no tier
        try:
            entry = await kv.get(tenant_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return TenantConfig.model_validate_json(entry.value).tier.value
        except ValidationError:
            return None

    return lookup


async def no_tier(tenant_id: str) -> str | None:
    return None


class RetentionPolicy:
    def __init__(
        self, default_days: int, by_tier: dict[str, int], lookup: TierLookup = no_tier
    ) -> None:
        self._default = default_days
        self._by_tier = by_tier
        self._lookup = lookup
        self._cache: dict[str, tuple[float, int]] = {}

    def use_lookup(self, lookup: TierLookup) -> None:
        self._lookup = lookup
        self._cache.clear()

    def days_for_tier(self, tier: str | None) -> int:
        return self._by_tier.get(tier or "", self._default)

    async def days_for(self, tenant_ids: Iterable[str]) -> dict[str, int]:
        now = time.monotonic()
        days: dict[str, int] = {}
        for tid in tenant_ids:
            cached = self._cache.get(tid)
            if cached is None or cached[0] < now:
                cached = (now + CACHE_SECONDS, self.days_for_tier(await self._lookup(tid)))
                self._cache[tid] = cached
            days[tid] = cached[1]
        return days
