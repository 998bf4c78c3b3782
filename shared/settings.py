"""The settings base every service extends: typed, from the environment, failing fast."""

from __future__ import annotations

import os
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

# Values that are obviously not real secrets; refused outside development.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "dev", "test"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _holds_secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


class SecretFilesSource(PydanticBaseSettingsSource):
    """`<VAR>_FILE` for every secret field: the value is read from that file.

    Compose and Kubernetes mount secrets as files; an environment variable would show up
    in `docker inspect`, `/proc/<pid>/environ` and crash dumps. A named file that cannot
    be read is a start-up error (the service must not run without the secret it was
    promised). The error names the variable and the path, never the content.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", ""))
        environ = {key.upper(): value for key, value in os.environ.items()}
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not _holds_secret(field.annotation):
                continue
            var = f"{prefix}{name}_FILE".upper()
            path = environ.get(var)
            if not path:
                continue
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"{var}: cannot read {path} ({exc.strerror})") from None
            # Editors and `echo` add a final newline that is not part of the secret.
            values[name] = text.rstrip("\r\n")
        return values


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
    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65_535,
        description="Port of the health (/livez, /readyz) and /metrics endpoint; unset: no "
        "endpoint (embedded mode), 0: any free port.",
    )
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104  (a container's probes and Prometheus come from outside it)
        description="Address the health/metrics endpoint listens on.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # An explicit variable wins over its _FILE twin; both beat the defaults.
        return (
            init_settings,
            env_settings,
            SecretFilesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

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
            if self.nats_user and self.nats_password is None:
                # nats-server would refuse the login anyway, but only after retries and
                # with a less clear message: fail at start, naming what is missing.
                raise ValueError(
                    "TENANTRY_NATS_USER is set but no password: set TENANTRY_NATS_PASSWORD "
                    "or TENANTRY_NATS_PASSWORD_FILE"
                )
            for name, value in self.__dict__.items():
                if isinstance(value, SecretStr) and value.get_secret_value() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{name} holds a placeholder secret; set a real one")
        return self


class CanarySettings(TenantrySettings):
    """The base of the two services that share the canary secret: retrieval plants the
    tokens (shared.canary) and leakage spots them, so both read the same variable,
    TENANTRY_CANARY_SECRET. The base refuses the placeholder default in production."""

    canary_secret: SecretStr = Field(
        default=SecretStr("dev"), description="Platform secret the canary tokens derive from."
    )
