"""The `tenants list` contract: ops ask promptconfig for every registered tenant.

The registry is promptconfig's, and no tenant-scoped verb can list every tenant, so this
is a platform-scoped request on svc.promptconfig.list (ops may publish on svc.>; only
platform inboxes are answered). The subject builder belongs in shared/subjects.py and
the models in shared/messages/tenants.py; they live here until promptconfig answers it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared import subjects
from shared.messages.base import ErrorInfo, new_id


def directory_subject() -> str:
    return f"svc.{subjects.token('promptconfig')}.{subjects.token('list')}"


class ListTenants(BaseModel):
    """Every registered tenant, in id order, `limit` at a time after `after`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(default_factory=new_id, description="Correlation id.")
    after: str = Field(default="", max_length=48, description="Continue after this tenant id.")
    limit: int = Field(default=500, ge=1, le=5_000, description="Page size.")


class TenantSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(description="The tenant's id.")
    name: str = Field(description="Display name.")
    tier: str = Field(description="Commercial tier.")
    version: int = Field(description="Current configuration version.")
    updated_at: datetime = Field(description="When the current version was saved.")


class TenantsListed(BaseModel):
    tenants: list[TenantSummary] = Field(default_factory=list, description="In id order.")
    more: bool = Field(default=False, description="More tenants after the last one.")
    error: ErrorInfo | None = Field(default=None, description="Set when refused.")
