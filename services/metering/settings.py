from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from shared.settings import TenantrySettings


class MeteringSettings(TenantrySettings):
    """Environment: TENANTRY_PRICE_TABLE_PATH, TENANTRY_RESERVATION_TTL_S,
    TENANTRY_CAS_ATTEMPTS, TENANTRY_BUDGET_TIMEZONE."""

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
    budget_timezone: str = Field(
        default="UTC",
        description="IANA zone whose calendar months are the budget periods. ClickHouse "
        "reports months in UTC, so only UTC periods reconcile month by month with it.",
    )

    @field_validator("budget_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"TENANTRY_BUDGET_TIMEZONE: unknown time zone {value!r}") from None
        return value

    def zone(self) -> tzinfo:
        return ZoneInfo(self.budget_timezone)
