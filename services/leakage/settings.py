from pydantic import Field

from shared.settings import TenantrySettings


class LeakageSettings(TenantrySettings):
    registry_load_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long start-up waits for the tenant registry's first full load.",
    )
