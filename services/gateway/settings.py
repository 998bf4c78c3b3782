from pydantic import Field

from shared.settings import TenantrySettings


class GatewaySettings(TenantrySettings):
    workers: int = Field(default=64, ge=1, le=4096, description="Requests handled at once.")
    model_timeout_s: float = Field(default=120.0, gt=0, description="Budget for one model call.")
    chars_per_token: float = Field(
        default=3.0,
        gt=0,
        description="Characters per token for the pre-call estimate; low means conservative.",
    )
    max_chunk_chars: int = Field(
        default=1_000, ge=100, description="Upper bound of one retrieved chunk, for estimates."
    )
