"""Provisioning and removing a tenant's metering state (driven by the onboarding saga)."""

from __future__ import annotations

from services.metering import state as keys
from services.metering.adapters import Conflict
from services.metering.meter import Meter
from shared.messages.tenants import TenantLimits


async def provision(meter: Meter, tenant_id: str, limits: TenantLimits | None) -> bool:
    """Create this period's entry with the tenant's budget; False if it already existed."""
    month = meter.current_month()
    state = keys.MonthState(
        month=month, budget_nanousd=limits.monthly_budget_nanousd if limits else 0
    )
    try:
        await meter.store.put(keys.state_key(tenant_id, month), state.model_dump_json().encode(), 0)
    except Conflict:
        return False
    return True


async def deprovision(meter: Meter, tenant_id: str) -> int:
    meter.forget(tenant_id)
    return await meter.store.purge_tenant(tenant_id)
