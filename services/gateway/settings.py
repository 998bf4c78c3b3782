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
    max_request_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Largest request body (sync or durable) accepted; larger ones are "
        "refused before parsing. A 32,000-character question fits with room to spare.",
    )
    max_ingest_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest ingest body accepted (nats-server's own default max_payload "
        "is 1 MiB); larger ones are refused before parsing.",
    )
    intake_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long the intake waits for JetStream to store a durable request.",
    )
    stream_hold_chars: int = Field(
        default=128,
        ge=16,
        le=10_000,
        description="A streamed answer's last characters held back until scanned with what "
        "follows: longer than any span leakage redacts (keys, emails, names), so no "
        "finding is ever split across what went out and what did not.",
    )
    stream_step_chars: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="New characters between two scans of a streamed answer.",
    )
    config_cache: bool = Field(
        default=True,
        description="Serve tenant configs from a watched in-memory copy of the tenants "
        "bucket instead of asking promptconfig per request. Off: every request reads the "
        "KV through promptconfig (one more round trip, ~1-2 ms of CPU), for an operator "
        "who wants each request to see the store itself rather than a copy about 1 ms "
        "behind it.",
    )
    config_load_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long start-up waits for the config cache's first full load.",
    )
