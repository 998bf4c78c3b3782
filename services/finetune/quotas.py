"""Fine-tuning per tier: who may, how many at once, how many a month."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages.tenants import Tier


@dataclass(frozen=True)
class FineTuneQuota:
    concurrent: int  # jobs not yet finished
    per_month: int  # jobs created in a calendar month (UTC)


# Only enterprise has fine-tuning; a tier absent here is refused with FORBIDDEN.
TIER_QUOTAS: dict[Tier, FineTuneQuota] = {
    Tier.ENTERPRISE: FineTuneQuota(concurrent=2, per_month=20),
}


def quota_for(tier: Tier) -> FineTuneQuota | None:
    return TIER_QUOTAS.get(tier)
