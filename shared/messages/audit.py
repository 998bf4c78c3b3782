"""audit's messages: the audit event every service emits, and scoped queries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.base import Envelope, Reply
from shared.tenancy import AttributedTenantId

DetailValue = str | int | float | bool | None

# A request's trail: the gateway's own row carries the rows of the steps it called.
MAX_CARRIED = 8


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
    carried: list[AuditRecorded] = Field(
        default_factory=list,
        max_length=MAX_CARRIED,
        description="Rows the services a request called recorded for it, delivered inside "
        "the caller's own event instead of one event each (one JetStream write per request "
        "instead of one per step). audit stores each as its own row; they belong to this "
        "event's tenant and carry nothing further.",
    )


class AuditRow(BaseModel):
    """One stored audit row, as queries and exports return it (chain fields included,
    so an exported file can be re-verified offline)."""

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
    tenant_id: str = Field(default="", description="Owning tenant.")
    client_ip: str = Field(default="", description="Client IP, if known.")
    user_agent: str = Field(default="", description="Client user agent, if known.")
    chain_seq: int = Field(default=0, description="Position in the tenant's hash chain.")
    prev_hash: str = Field(default="", description="row_hash of the tenant's previous row.")
    row_hash: str = Field(default="", description="sha256 over prev_hash and this row.")


class QueryAudit(Envelope):
    event_type: AuditEventType | None = Field(default=None, description="Filter by type.")
    since: datetime | None = Field(default=None, description="Inclusive lower bound.")
    until: datetime | None = Field(default=None, description="Exclusive upper bound.")
    limit: int = Field(default=100, ge=1, le=10_000, description="Max rows.")
    of_request: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_-]{0,64}$",
        description="Only rows of this request id: one request's trail, arrival to completion.",
    )


class AuditPage(Reply):
    rows: list[AuditRow] = Field(default_factory=list, description="Newest first.")
    total: int = Field(default=0, ge=0, description="Matching rows in all.")


class ExportAudit(Envelope):
    """One page of an export, oldest first; pass the previous page's cursor to go on.

    Keyset pagination on (occurred_at, event_id): each page is a bounded, indexed read,
    so the service and the client hold one page at a time however big the export.
    """

    since: datetime | None = Field(default=None, description="Inclusive lower bound.")
    until: datetime | None = Field(default=None, description="Exclusive upper bound.")
    after_occurred_at: datetime | None = Field(default=None, description="Cursor: time.")
    after_event_id: str = Field(
        default="", pattern=r"^[A-Za-z0-9_-]{0,64}$", description="Cursor: event id."
    )
    page_size: int = Field(default=2_000, ge=1, le=10_000, description="Max rows per page.")


class AuditExportPage(Reply):
    rows: list[AuditRow] = Field(default_factory=list, description="Oldest first.")
    done: bool = Field(default=False, description="True on the last page.")


class VerifyAudit(Envelope):
    """Walk the tenant's hash chain and report every break."""


class ChainIssueKind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    DUPLICATED = "duplicated"


class ChainIssue(BaseModel):
    kind: ChainIssueKind = Field(description="What is wrong.")
    chain_seq: int = Field(description="Chain position where it shows.")
    event_id: str = Field(default="", description="Row concerned (empty if it is gone).")
    message: str = Field(description="Human-readable explanation.")


class AuditVerified(Reply):
    intact: bool = Field(default=False, description="True when the chain has no break.")
    rows: int = Field(default=0, description="Stored rows walked (duplicates included).")
    first_seq: int = Field(default=0, description="First chain position present.")
    last_seq: int = Field(default=0, description="Last chain position present.")
    issues: list[ChainIssue] = Field(default_factory=list, description="First breaks found.")
    truncated: bool = Field(default=False, description="More issues than listed.")


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


class DayUsage(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC).")
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
    by_day: list[DayUsage] = Field(
        default_factory=list, description="Breakdown by day and model, from the rollup."
    )
