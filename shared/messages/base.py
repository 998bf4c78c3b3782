"""The envelope every message carries, and the error shape every reply can hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.tenancy import AttributedTenantId, TenantId

SCHEMA_VERSION = 1


def new_id() -> str:
    """A unique id (UUID4 hex): no clock, so no collisions under load."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields every message carries. `event_id` doubles as the JetStream Nats-Msg-Id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId = Field(description="The tenant this message belongs to.")
    event_id: str = Field(
        default_factory=new_id,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Unique id of this message, used for de-duplication.",
    )
    request_id: str = Field(
        default_factory=new_id,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Correlation id shared by every message of one request.",
    )
    occurred_at: datetime = Field(default_factory=utcnow, description="When it happened (UTC).")
    schema_version: int = Field(default=SCHEMA_VERSION, description="Message schema version.")


class ErrorCode(StrEnum):
    INVALID_TENANT = "invalid_tenant"
    UNKNOWN_TENANT = "unknown_tenant"
    MALFORMED_REQUEST = "malformed_request"
    PAYLOAD_TOO_LARGE = "payload_too_large"  # refused before parsing
    RATE_LIMITED = "rate_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    UNKNOWN_MODEL = "unknown_model"
    TOKEN_LIMIT = "token_limit"  # noqa: S105 (an error code, not a secret)
    LEAKAGE_BLOCKED = "leakage_blocked"
    TEMPLATE_INVALID = "template_invalid"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # the tenant's tier or role does not include this capability
    QUOTA_EXCEEDED = "quota_exceeded"
    CONFLICT = "conflict"
    UPSTREAM_ERROR = "upstream_error"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    CANCELLED = "cancelled"  # the client stopped a streamed request


class ErrorInfo(BaseModel):
    """A clear error a client can read. Never carries secrets or another tenant's data."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable explanation.")
    retryable: bool = Field(default=False, description="Whether retrying later may succeed.")
    retry_after_s: int | None = Field(
        default=None, ge=0, description="When retrying can succeed, in seconds (rate limits)."
    )


class Reply(Envelope):
    """Base for request/reply answers: `error` is set when the request was refused."""

    tenant_id: AttributedTenantId = Field(description="The tenant the reply is for.")
    error: ErrorInfo | None = Field(default=None, description="Set when the request failed.")

    @property
    def ok(self) -> bool:
        return self.error is None
