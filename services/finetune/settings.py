from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr

from shared.settings import TenantrySettings


class FineTuneSettings(TenantrySettings):
    """Environment: TENANTRY_FINETUNE_BACKEND, TENANTRY_FINETUNE_STALE_AFTER_S, ...;
    the OpenAI-compatible backend reads OPENAI_API_KEY and OPENAI_BASE_URL."""

    finetune_backend: Literal["offline", "openai"] = Field(
        default="offline", description="Backend used when a job names none."
    )
    finetune_heartbeat_s: float = Field(
        default=2.0, gt=0, le=60, description="How often a worker marks its jobs as alive."
    )
    finetune_stale_after_s: float = Field(
        default=15.0,
        gt=0,
        le=3_600,
        description="A queued or running job whose worker has been silent this long is "
        "taken over by another replica (or this one after a restart).",
    )
    finetune_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Worker starts before a job is failed for good."
    )
    finetune_parallel: int = Field(
        default=1, ge=1, le=16, description="Jobs one replica trains at once (CPU-bound)."
    )
    finetune_hold_renew_s: float = Field(
        default=240.0,
        gt=0,
        le=3_600,
        description="A running job settles what it trained so far and takes a new hold for "
        "the rest this often; keep it well under metering's reservation TTL (600 s).",
    )
    finetune_poll_s: float = Field(
        default=2.0, gt=0, le=600, description="How often a remote job's status is polled."
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY"),
        description="Key of the OpenAI-compatible fine-tuning API.",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("openai_base_url", "OPENAI_BASE_URL"),
        description="Endpoint of the OpenAI-compatible API (tests: a local stub).",
    )
