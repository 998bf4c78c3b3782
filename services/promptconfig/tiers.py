"""Tier defaults, used when a tenant is onboarded without explicit limits."""

from __future__ import annotations

from shared.messages.tenants import TenantLimits, TenantProfile, Tier
from shared.money import usd
from shared.templates import DEFAULT_TEMPLATE

DEFAULT_MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5"]

TIER_LIMITS: dict[Tier, TenantLimits] = {
    Tier.FREE: TenantLimits(
        requests_per_minute=20,
        tokens_per_minute=40_000,
        max_tokens_per_request=1_024,
        monthly_budget_nanousd=usd("1"),
    ),
    Tier.PRO: TenantLimits(
        requests_per_minute=300,
        tokens_per_minute=400_000,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=usd("100"),
    ),
    Tier.ENTERPRISE: TenantLimits(
        requests_per_minute=3_000,
        tokens_per_minute=4_000_000,
        max_tokens_per_request=8_192,
        monthly_budget_nanousd=usd("10000"),
    ),
}


def default_profile(
    name: str,
    tier: Tier,
    admin_email: str | None = None,
    custom_instructions: str = "",
    allowed_models: list[str] | None = None,
) -> TenantProfile:
    """A new tenant's configuration: the default template and its tier's limits."""
    models = allowed_models or DEFAULT_MODELS
    return TenantProfile(
        name=name,
        tier=tier,
        admin_email=admin_email,
        system_prompt_template=DEFAULT_TEMPLATE,
        custom_instructions=custom_instructions,
        allowed_models=models,
        default_model=models[0],
        limits=TIER_LIMITS[tier],
    )
