"""promptconfig's messages: the tenant registry and its configuration."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.messages.base import Envelope, Reply, utcnow
from shared.tenancy import TenantId


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class TenantLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    requests_per_minute: int = Field(
        ge=1, le=1_000_000, description="Requests admitted per minute."
    )
    tokens_per_minute: int = Field(ge=1, description="Input+output tokens admitted per minute.")
    max_tokens_per_request: int = Field(ge=1, le=200_000, description="Cap on output tokens.")
    monthly_budget_nanousd: int = Field(
        ge=0, description="Spend allowed per calendar month, in nano-USD (1e-9 USD)."
    )


class TenantProfile(BaseModel):
    """What ops set for a tenant; the registry adds version and bookkeeping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=120, description="Display name, e.g. 'Acme Corp'.")
    tier: Tier = Field(description="Commercial tier; decides default limits.")
    admin_email: EmailStr | None = Field(default=None, description="Tenant admin contact.")
    aliases: list[str] = Field(
        default_factory=list, max_length=32, description="Other names the tenant goes by."
    )
    domains: list[str] = Field(
        default_factory=list, max_length=32, description="Internet domains the tenant owns."
    )
    system_prompt_template: str = Field(
        max_length=20_000, description="System prompt template; see shared.templates."
    )
    custom_instructions: str = Field(
        default="", max_length=4_000, description="Tenant text inserted verbatim, never parsed."
    )
    allowed_models: list[str] = Field(min_length=1, description="Models this tenant may call.")
    default_model: str = Field(description="Model used when a request names none.")
    limits: TenantLimits = Field(description="Rate, token and budget limits.")
    leakage_policy: dict[str, Literal["block", "redact", "flag"]] = Field(
        default_factory=dict,
        max_length=32,
        description="Leakage actions by detector ('pii') or detector.kind ('pii.email'); "
        "empty means the platform defaults. foreign_chunk and canary always block.",
    )


class TenantConfig(TenantProfile):
    tenant_id: TenantId = Field(description="The tenant's id.")
    version: int = Field(ge=1, description="Configuration version, starting at 1.")
    updated_at: datetime = Field(default_factory=utcnow, description="When this version was saved.")
    updated_by: str = Field(default="system", max_length=120, description="Who saved it.")


class UpsertTenant(Envelope):
    profile: TenantProfile = Field(description="The full desired configuration.")
    actor: str = Field(default="ops", max_length=120, description="Who asked for the change.")


class TenantUpserted(Reply):
    config: TenantConfig | None = Field(default=None, description="The saved configuration.")
    created: bool = Field(default=False, description="True when the tenant was new.")


class ResolveTenant(Envelope):
    """Look a tenant up and render its system prompt."""


class TenantResolved(Reply):
    config: TenantConfig | None = Field(default=None, description="Current configuration.")
    system_prompt: str = Field(default="", description="The rendered system prompt.")


class DeleteTenant(Envelope):
    actor: str = Field(default="ops", max_length=120, description="Who asked for the deletion.")


class TenantDeleted(Reply):
    existed: bool = Field(default=False, description="Whether there was a tenant to delete.")


class ConfigVersionSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = Field(description="Configuration version.")
    updated_at: datetime = Field(description="When it was saved.")
    updated_by: str = Field(description="Who saved it.")
    changed: list[str] = Field(description="Fields that differ from the version before.")


class ListConfigVersions(Envelope):
    """Every saved version of the tenant's configuration, oldest first."""


class ConfigVersions(Reply):
    versions: list[ConfigVersionSummary] = Field(default_factory=list, description="Oldest first.")


class GetConfigVersion(Envelope):
    version: int = Field(ge=1, description="The version to fetch.")


class ConfigVersionFound(Reply):
    config: TenantConfig | None = Field(default=None, description="That version, in full.")


class RollbackConfig(Envelope):
    version: int = Field(ge=1, description="Restore this version's settings as a new version.")
    actor: str = Field(default="ops", max_length=120, description="Who asked for it.")


class PreviewPrompt(Envelope):
    """Render the system prompt, optionally with a proposed template or instructions."""

    system_prompt_template: str | None = Field(default=None, max_length=20_000)
    custom_instructions: str | None = Field(default=None, max_length=4_000)


class PromptPreviewed(Reply):
    system_prompt: str = Field(default="", description="The rendered system prompt.")
