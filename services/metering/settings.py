from pathlib import Path

from pydantic import Field

from shared.settings import TenantrySettings


class MeteringSettings(TenantrySettings):
    """Environment: TENANTRY_PRICE_TABLE_PATH, TENANTRY_RESERVATION_TTL_S, TENANTRY_CAS_ATTEMPTS."""

    price_table_path: Path | None = Field(
        default=None,
        description="JSON price table replacing the built-in one (see metering.pricing).",
    )
    reservation_ttl_s: int = Field(
        default=600,
        ge=10,
        le=86_400,
        description="A reservation never settled is released after this long.",
    )
    cas_attempts: int = Field(
        default=32,
        ge=1,
        le=1_000,
        description="Compare-and-set retries on the tenant's KV entry before answering 'busy'.",
    )
