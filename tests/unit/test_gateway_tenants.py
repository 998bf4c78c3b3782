"""The gateway's tenant config cache: hits are answered locally, misses ask promptconfig."""

from __future__ import annotations

import pytest

from services.gateway.tenants import TenantCache
from services.promptconfig.tiers import default_profile
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.tenants import ResolveTenant, TenantConfig, TenantResolved, Tier
from shared.templates import system_prompt

pytestmark = pytest.mark.unit


def config(tid: str, name: str = "Acme Corp", version: int = 1) -> TenantConfig:
    profile = default_profile(name, Tier.PRO)
    return TenantConfig(tenant_id=tid, version=version, **profile.model_dump())


class Promptconfig:
    """Stands in for the RPC: knows `known`, refuses the rest, counts the calls."""

    def __init__(self, *known: TenantConfig) -> None:
        self.known = {c.tenant_id: c for c in known}
        self.asked: list[str] = []

    async def __call__(self, msg: ResolveTenant) -> TenantResolved:
        self.asked.append(msg.tenant_id)
        found = self.known.get(msg.tenant_id)
        if found is None:
            info = ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown tenant")
            return TenantResolved(tenant_id=msg.tenant_id, request_id=msg.request_id, error=info)
        return TenantResolved(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            config=found,
            system_prompt=system_prompt(found),
        )


async def test_a_hit_is_answered_locally_with_the_rendered_prompt() -> None:
    cache, rpc, acme = TenantCache(), Promptconfig(), config("acme")
    cache.replace_all({"acme": acme})
    got = await cache.resolve(ResolveTenant(tenant_id="acme", request_id="r1"), rpc)
    assert got.ok and got.request_id == "r1" and got.config == acme
    assert got.system_prompt.startswith("You are an AI assistant for Acme Corp")
    assert rpc.asked == []


async def test_a_miss_asks_promptconfig_which_decides() -> None:
    cache, rpc = TenantCache(), Promptconfig(config("fresh"))
    onboarded = await cache.resolve(ResolveTenant(tenant_id="fresh"), rpc)
    assert onboarded.ok and onboarded.config and onboarded.config.tenant_id == "fresh"
    unknown = await cache.resolve(ResolveTenant(tenant_id="ghost"), rpc)
    assert unknown.error and unknown.error.code is ErrorCode.UNKNOWN_TENANT
    assert rpc.asked == ["fresh", "ghost"]


async def test_a_change_applies_to_the_next_resolve_and_a_delete_removes() -> None:
    cache, rpc = TenantCache(), Promptconfig()
    cache.replace_all({"acme": config("acme")})
    cache.apply("acme", config("acme", name="Acme Renamed", version=2))
    got = await cache.resolve(ResolveTenant(tenant_id="acme"), rpc)
    assert got.config and got.config.version == 2 and "Acme Renamed" in got.system_prompt
    cache.apply("acme", None)
    assert "acme" not in cache
    gone = await cache.resolve(ResolveTenant(tenant_id="acme"), rpc)
    assert gone.error and gone.error.code is ErrorCode.UNKNOWN_TENANT and rpc.asked == ["acme"]


def test_replace_all_forgets_what_is_not_in_the_new_load() -> None:
    cache = TenantCache()
    cache.replace_all({"a": config("a"), "b": config("b")})
    cache.replace_all({"b": config("b"), "c": config("c")})
    assert len(cache) == 2 and "a" not in cache and "b" in cache and "c" in cache
    cache.replace_all({})
    assert len(cache) == 0


async def test_an_unrenderable_config_is_left_to_promptconfig() -> None:
    # Saved templates are checked; this one bypassed the check, as an old entry might.
    bad = config("acme").model_copy(update={"system_prompt_template": "{{nope}}"})
    cache, rpc = TenantCache(), Promptconfig(config("acme"))
    cache.replace_all({"acme": config("acme")})
    cache.apply("acme", bad)
    assert "acme" not in cache  # the old version is not served either
    await cache.resolve(ResolveTenant(tenant_id="acme"), rpc)
    assert rpc.asked == ["acme"]
