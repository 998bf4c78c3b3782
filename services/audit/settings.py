"""audit's settings: where ClickHouse is, how long rows are kept, how inserts are batched."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import PLACEHOLDER_SECRETS, Environment, TenantrySettings

# deploy/clickhouse/ beside services/ in the repo (and in the image, which copies both).
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse"


class AuditSettings(TenantrySettings):
    # pydantic puts the raw input in validation errors; the DSN may hold a password.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    clickhouse_dsn: SecretStr | None = Field(
        default=None,
        description=(
            "chdb:///abs/path (embedded chDB) or http(s)://user:pass@host:8123 (a server). "
            "Unset: embedded chDB in <data_dir>/clickhouse. A secret: it may hold a password."
        ),
    )
    clickhouse_password: SecretStr | None = Field(
        default=None,
        description="ClickHouse password, kept out of the DSN (e.g. from "
        "TENANTRY_CLICKHOUSE_PASSWORD_FILE): the DSN then names only user, host and database.",
    )
    audit_retention_days: int = Field(
        default=365, ge=1, le=36_500, description="Audit TTL for tiers not listed below."
    )
    audit_retention_by_tier: dict[str, int] = Field(
        default_factory=dict,
        description='Audit TTL per tier, e.g. {"free": 90, "enterprise": 2555} (JSON).',
    )
    cost_retention_days: int = Field(default=365, ge=1, le=36_500, description="cost TTL.")
    # Every insert and every fetch has a fixed cost (a chDB insert ~8 ms whatever its
    # size, a pull round trip): bigger batches spread it. The durable consumers' max_ack_pending
    # follows (handlers.consumer_config), or a fetch bigger than it could never fill and
    # every batch would wait out batch_timeout_s. Under light load a batch closes at the
    # timeout anyway, so the size only matters when events pile up.
    batch_size: int = Field(default=5_000, ge=1, le=10_000, description="Events per insert.")
    batch_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="Longest wait to fill a batch; bounds how soon a write is readable.",
    )
    ack_wait_s: float = Field(
        default=30.0,
        ge=1,
        le=600,
        description="How long a fetched batch may stay unacked before redelivery (a crash).",
    )
    writer_lease_s: float = Field(
        default=15.0,
        ge=1,
        le=300,
        description="Single-writer lease TTL: how soon a standby takes over a dead writer.",
    )
    schema_dir: Path = Field(default=DEFAULT_SCHEMA_DIR, description="Numbered *.sql files.")
    # Audit's writes are batched and behind the request path, but a ClickHouse insert
    # holds a core for tens of ms: at equal priority it stalls requests on a small
    # machine (bench: added p99). Lower priority spends only the CPU the path leaves.
    cpu_nice: int = Field(default=10, ge=0, le=19, description="Unix nice of the audit process.")

    def dsn(self) -> str:
        if self.clickhouse_dsn is not None:
            dsn = self.clickhouse_dsn.get_secret_value()
            parts = urlsplit(dsn)
            if self.clickhouse_password is not None and parts.scheme in ("http", "https"):
                # Joined here, in memory only: logs see redacted_dsn(), which drops it.
                password = quote(self.clickhouse_password.get_secret_value(), safe="")
                host = parts.netloc.rpartition("@")[2]
                user = quote(parts.username or "default", safe="")
                dsn = urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))
            return dsn
        # chDB compares engine paths literally, so always hand it an absolute one.
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @model_validator(mode="after")
    def _check_retention(self) -> AuditSettings:
        for tier, days in self.audit_retention_by_tier.items():
            if not 1 <= days <= 36_500:  # UInt16 column, and at least a day
                raise ValueError(f"TENANTRY_AUDIT_RETENTION_BY_TIER[{tier}]: 1-36500 days")
        return self

    @model_validator(mode="after")
    def _check_dsn(self) -> AuditSettings:
        parts = urlsplit(self.dsn())
        if parts.scheme == "chdb":
            # chdb://x/y would mean engine location "x", database "y": refuse the ambiguity.
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError("TENANTRY_CLICKHOUSE_DSN: use chdb:///absolute/path for chDB")
        elif parts.scheme in ("http", "https"):
            try:
                parts.port  # noqa: B018  (parsing it is the check)
            except ValueError:
                raise ValueError("TENANTRY_CLICKHOUSE_DSN: the port is not a number") from None
            if not parts.hostname:
                raise ValueError("TENANTRY_CLICKHOUSE_DSN: an http(s) DSN needs a host")
            if (
                self.environment is Environment.PRODUCTION
                and (parts.password or "") in PLACEHOLDER_SECRETS
            ):
                raise ValueError("TENANTRY_CLICKHOUSE_DSN holds a placeholder password; set one")
        else:
            raise ValueError("TENANTRY_CLICKHOUSE_DSN must start with chdb://, http:// or https://")
        return self


def redacted_dsn(dsn: str) -> str:
    """The DSN as it may appear in a log line: the password (and any query) removed."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return f"chdb://{parts.path}"
    user = f"{parts.username}:***@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{parts.hostname}{port}{parts.path}"
