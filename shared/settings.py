"""The settings base every service extends: typed, from the environment, failing fast."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that are obviously not real secrets; refused outside development.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "dev", "test"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class TenantrySettings(BaseSettings):
    """Shared by every service. Environment variables are prefixed TENANTRY_."""

    model_config = SettingsConfigDict(
        env_prefix="TENANTRY_",
        extra="ignore",
        frozen=True,
        # Validation errors must not echo input: a URL or key may hold a secret.
        hide_input_in_errors=True,
    )

    environment: Environment = Field(default=Environment.DEVELOPMENT)
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s).")
    nats_user: str | None = Field(default=None, description="NATS user for this service.")
    nats_password: SecretStr | None = Field(default=None, description="NATS password.")
    data_dir: Path = Field(default=Path("var"), description="Root of embedded-mode state.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    rpc_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Service call timeout.")

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(
                    "TENANTRY_NATS_URL must start with nats://, tls://, ws:// or wss://"
                )
        return value

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> TenantrySettings:
        if self.environment is Environment.PRODUCTION:
            for name, value in self.__dict__.items():
                if isinstance(value, SecretStr) and value.get_secret_value() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{name} holds a placeholder secret; set a real one")
        return self
