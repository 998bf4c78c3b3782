"""audit's messages: the audit event every service emits, and scoped queries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.base import Envelope, Reply
from shared.tenancy import AttributedTenantId

DetailValue = str | int | float | bool | None


class AuditEventType(StrEnum):
    API_CALL = "api_call"
    DATA_ACCESS = "data_access"
    CONFIGURATION_CHANGE = "configuration_change"
    DELETION = "deletion"
    ACCESS_DENIED = "access_denied"
    LEAKAGE_DETECTED = "leakage_detected"
    BUDGET_ALERT = "budget_alert"
    ERROR = "error"


class AuditStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class AuditRecorded(Envelope):
    """One audit event. Details must never hold secrets or raw tenant content."""

    tenant_id: AttributedTenantId = Field(description="Tenant, or _unattributed for bad ids.")
    event_type: AuditEventType = Field(description="Kind of event.")
    service: str = Field(max_length=40, description="Service that recorded it.")
    action: str = Field(max_length=80, description="What was done, e.g. completion.create.")
    resource_type: str = Field(default="", max_length=60, description="e.g. document, config.")
    resource_id: str = Field(default="", max_length=200, description="Id of the resource.")
    status: AuditStatus = Field(default=AuditStatus.SUCCESS, description="Outcome.")
    error: str | None = Field(default=None, max_length=1_000, description="Error, if failed.")
    actor: str = Field(default="", max_length=200, description="User or service acting.")
    client_ip: str | None = Field(default=None, max_length=64, description="Client IP, if known.")
    user_agent: str | None = Field(default=None, max_length=400, description="Client UA.")
    details: dict[str, DetailValue] = Field(default_factory=dict, description="Extra facts.")


class AuditRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    request_id: str
    occurred_at: datetime
    event_type: str
    service: str
    action: str
    resource_type: str
    resource_id: str
    status: str
    error: str
    actor: str
    details: str = Field(description="Details as JSON text.")


class QueryAudit(Envelope):
    event_type: AuditEventType | None = Field(default=None, description="Filter by type.")
    since: datetime | None = Field(default=None, description="Inclusive lower bound.")
    until: datetime | None = Field(default=None, description="Exclusive upper bound.")
    limit: int = Field(default=100, ge=1, le=10_000, description="Max rows.")


class AuditPage(Reply):
    rows: list[AuditRow] = Field(default_factory=list, description="Newest first.")
    total: int = Field(default=0, ge=0, description="Matching rows in all.")


class QueryUsage(Envelope):
    month: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}$", description="YYYY-MM; current month if unset."
    )


class ModelUsage(BaseModel):
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_nanousd: int


class UsageReport(Reply):
    month: str = Field(default="", description="YYYY-MM reported.")
    requests: int = Field(default=0, description="Priced model calls.")
    cost_nanousd: int = Field(default=0, description="Total cost.")
    audit_events: int = Field(default=0, description="Audit rows for the tenant, all time.")
    by_model: list[ModelUsage] = Field(default_factory=list, description="Breakdown by model.")
