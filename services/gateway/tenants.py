"""The gateway's live copy of every tenant's config, fed by a watch of the tenants
bucket (shared.feeds.TenantConfigFeed), so a request needs no round trip to promptconfig.

Freshness: promptconfig writes the KV entry, and the watch delivers it here about a
millisecond later, before promptconfig has even recorded the version, audited it and
replied to whoever saved it. So a request sent after the save's reply sees the new
config, in practice: "a change applies to the next request" still holds. Deletes and
purges (offboarding) remove the tenant the same way.

A miss is never an answer: a tenant not here (not loaded yet, onboarded a moment ago,
unknown, or whose config could not be read or rendered) is asked of promptconfig, which
is authoritative and refuses an unknown tenant with UNKNOWN_TENANT.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.logging import get_logger
from shared.messages.tenants import ResolveTenant, TenantConfig, TenantResolved
from shared.templates import TemplateError, system_prompt

log = get_logger("tenantry.gateway.tenants")

Fallback = Callable[[ResolveTenant], Awaitable[TenantResolved]]


@dataclass(frozen=True)
class Cached:
    config: TenantConfig
    system_prompt: str


def _rendered(key: str, config: TenantConfig) -> Cached | None:
    # Rendered once per config version, not per request.
    try:
        return Cached(config, system_prompt(config))
    except TemplateError:
        # Saved templates are checked, so this is an old or hand-written entry; leave
        # the answer (an error, most likely) to promptconfig.
        log.warning("gateway.config_unrenderable", key=key, version=config.version)
        return None


class TenantCache:
    """tenant_id -> (config, rendered system prompt). Mutated by the feed and read by
    requests on the same event loop, so no locking."""

    def __init__(self) -> None:
        self._tenants: dict[str, Cached] = {}

    def __len__(self) -> int:
        return len(self._tenants)

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self._tenants

    def get(self, tenant_id: str) -> Cached | None:
        return self._tenants.get(tenant_id)

    def replace_all(self, configs: dict[str, TenantConfig]) -> None:
        rendered = {key: _rendered(key, config) for key, config in configs.items()}
        self._tenants = {key: hit for key, hit in rendered.items() if hit is not None}
        log.info("gateway.config_cache_replaced", tenants=len(self._tenants))

    def apply(self, key: str, config: TenantConfig | None) -> None:
        hit = _rendered(key, config) if config is not None else None
        if hit is None:
            self._tenants.pop(key, None)
        else:
            self._tenants[key] = hit

    async def resolve(self, msg: ResolveTenant, fallback: Fallback) -> TenantResolved:
        hit = self.get(msg.tenant_id)
        if hit is None:
            return await fallback(msg)
        return TenantResolved(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            config=hit.config,
            system_prompt=hit.system_prompt,
        )
