"""llm's settings: the Anthropic key and endpoint keep their standard, unprefixed names."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import PLACEHOLDER_SECRETS, Environment, TenantrySettings


class LlmSettings(TenantrySettings):
    """No key means the offline extractive provider; a key means the real Anthropic API."""

    # A start-up error must not print the key: pydantic echoes the raw input otherwise
    # (merged with the base's config, so the TENANTRY_ prefix etc. still apply).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # validation_alias bypasses the TENANTRY_ prefix, so the SDK's own variable names work
    # (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL); the field name still works as a keyword.
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "anthropic_api_key", "ANTHROPIC_API_KEY", "TENANTRY_ANTHROPIC_API_KEY"
        ),
        description="Anthropic API key; unset (or empty) selects the offline provider.",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "anthropic_base_url", "ANTHROPIC_BASE_URL", "TENANTRY_ANTHROPIC_BASE_URL"
        ),
        description="Messages API endpoint override (tests point it at a local stub).",
    )
    anthropic_timeout_s: float = Field(
        default=110.0,
        gt=0,
        le=900,
        description="Whole budget of one model call, SDK retries included. Keep it under the "
        "gateway's model_timeout_s so the caller gets llm's clear error, not a bus timeout.",
    )
    anthropic_max_retries: int = Field(
        default=2, ge=0, le=10, description="SDK retries on 408/409/429/5xx and connection errors."
    )

    # Tenants' models fine-tuned at an OpenAI-compatible provider (services.finetune's
    # openai backend) are served through it; unset, llm serves offline fine-tunes only.
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY"),
        description="Key of the OpenAI-compatible provider holding fine-tuned models.",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("openai_base_url", "OPENAI_BASE_URL"),
        description="Its endpoint (tests: a local stub).",
    )

    @field_validator("anthropic_api_key", "openai_api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # Compose files often pass `ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-}`: empty means
        # "not configured" (offline provider), not a placeholder to refuse.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("anthropic_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("ANTHROPIC_BASE_URL must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _no_placeholder_key(self) -> LlmSettings:
        # The shared base refuses placeholders only in production; a placeholder key in a
        # test or staging deployment would fail every call with 401, so refuse it at start.
        key = self.anthropic_api_key
        if (
            key is not None
            and self.environment is not Environment.DEVELOPMENT
            and key.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
        ):
            raise ValueError(
                "ANTHROPIC_API_KEY holds a placeholder; set a real key, or unset it to use "
                "the offline provider"
            )
        return self
