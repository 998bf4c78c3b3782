from pydantic import Field

from shared.settings import CanarySettings


class LeakageSettings(CanarySettings):
    registry_load_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long start-up waits for the tenant registry's first full load.",
    )
    fingerprint_load_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long start-up waits to replay every tenant's content fingerprints.",
    )
    content_min_matches: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Fingerprints from one other tenant's documents that make a quote.",
    )
