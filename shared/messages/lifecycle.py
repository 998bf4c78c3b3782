"""Tenant lifecycle: onboarding and offboarding across every service that holds state."""

from __future__ import annotations

from pydantic import EmailStr, Field

from shared.messages.base import Envelope, Reply
from shared.messages.tenants import TenantConfig, TenantLimits, Tier


class OnboardTenant(Envelope):
    name: str = Field(min_length=1, max_length=120, description="Display name.")
    tier: Tier = Field(description="Commercial tier; decides default limits.")
    admin_email: EmailStr | None = Field(default=None, description="Tenant admin contact.")
    aliases: list[str] = Field(default_factory=list, max_length=32, description="Other names.")
    domains: list[str] = Field(default_factory=list, max_length=32, description="Domains.")
    custom_instructions: str = Field(default="", max_length=4_000, description="Tenant text.")
    actor: str = Field(default="ops", max_length=120, description="Who onboards.")


class OnboardingResult(Reply):
    """`password` is present only when this call created the tenant: shown once."""

    created: bool = Field(default=False, description="False: it already existed (no-op).")
    config: TenantConfig | None = Field(default=None, description="The tenant's configuration.")
    user: str = Field(default="", description="The tenant's NATS user.")
    password: str = Field(default="", repr=False, description="Shown once; never stored.")
    inbox_prefix: str = Field(default="", description="Inbox prefix the client must use.")
    steps: list[str] = Field(default_factory=list, description="Steps completed.")


class TenantOnboarded(Envelope):
    """Event for whoever welcomes new tenants (a mailer, a CRM). No secrets in it."""

    name: str = Field(description="Display name.")
    tier: Tier = Field(description="Tier.")
    admin_email: str | None = Field(default=None, description="Who to welcome.")


class OffboardTenant(Envelope):
    actor: str = Field(default="ops", max_length=120, description="Who offboards.")


class DeletionReceipt(Reply):
    """What was removed, where, and how much. Audit rows stay until their retention ends."""

    removed: dict[str, int] = Field(default_factory=dict, description="Store -> items removed.")
    existed: bool = Field(default=False, description="Whether there was a tenant.")


class TenantOffboarded(Envelope):
    removed: dict[str, int] = Field(description="Store -> items removed.")


class ProvisionTenant(Envelope):
    """Ask a stateful service to create the tenant's state (idempotent)."""

    limits: TenantLimits | None = Field(default=None, description="For metering.")


class TenantProvisioned(Reply):
    created: bool = Field(default=False, description="False when it already existed.")


class DeprovisionTenant(Envelope):
    """Ask a stateful service to remove every trace of the tenant (idempotent)."""


class TenantDeprovisioned(Reply):
    removed: int = Field(default=0, ge=0, description="Items removed (chunks, entries...).")
