from pydantic import Field, SecretStr

from shared.settings import TenantrySettings


class LeakageSettings(TenantrySettings):
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
    # Shared with retrieval (same variable): it plants the canaries, leakage spots them.
    # The base settings refuse the placeholder default in production.
    canary_secret: SecretStr = Field(
        default=SecretStr("dev"), description="Platform secret the canary tokens derive from."
    )
    content_min_matches: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Fingerprints from one other tenant's documents that make a quote.",
    )
