"""Typed exceptions of the Tenantry client: one class per kind of refusal or failure.

A refusal from the platform keeps its ErrorInfo (`exc.info`) and its code (`exc.code`,
an ErrorCode, which is a str); failures that never reached a service (NATS unreachable,
credentials refused, no reply in time) carry a client-side code string instead. No
message here ever holds a password: callers pass only user names and redacted URLs.
"""

from __future__ import annotations

import re
from typing import ClassVar

from shared.messages.base import ErrorCode, ErrorInfo

# Client-side codes, for failures that have no ErrorInfo from a service.
CONNECTION_FAILED = "connection_failed"
AUTHENTICATION_FAILED = "authentication_failed"
PERMISSION_DENIED = "permission_denied"
TIMEOUT = "timeout"

# metering words its refusals "... retry in 12 s"; ErrorInfo has no field for it yet.
_RETRY_IN = re.compile(r"retry in (\d+(?:\.\d+)?) ?s\b")


class TenantryError(Exception):
    """Base of every client error. `retryable`: trying again later may succeed."""

    default_code: ClassVar[str] = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        info: ErrorInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: str = code or self.default_code
        self.retryable = retryable
        self.info = info


class ConnectionFailed(TenantryError):
    """NATS could not be reached (nothing listening, DNS, TLS, connection lost)."""

    default_code: ClassVar[str] = CONNECTION_FAILED


class AuthenticationFailed(TenantryError):
    """NATS refused the credentials (wrong password, revoked or unknown user)."""

    default_code: ClassVar[str] = AUTHENTICATION_FAILED


class Forbidden(TenantryError):
    """The caller may not do this: a subject its credentials do not allow, a model the
    tenant may not use, or content the leakage scanner blocked."""

    default_code: ClassVar[str] = PERMISSION_DENIED


class LeakageBlocked(Forbidden):
    default_code: ClassVar[str] = ErrorCode.LEAKAGE_BLOCKED


class InvalidRequest(TenantryError):
    """The request itself is wrong (bad tenant id, malformed fields, unknown model...)."""

    default_code: ClassVar[str] = ErrorCode.MALFORMED_REQUEST


class NotFound(TenantryError):
    default_code: ClassVar[str] = ErrorCode.NOT_FOUND


class Conflict(TenantryError):
    default_code: ClassVar[str] = ErrorCode.CONFLICT


class RateLimited(TenantryError):
    """Over the tenant's requests- or tokens-per-minute; `retry_after` in seconds if known."""

    default_code: ClassVar[str] = ErrorCode.RATE_LIMITED

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = True,
        info: ErrorInfo | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable, info=info)
        self.retry_after = retry_after


class BudgetExceeded(TenantryError):
    default_code: ClassVar[str] = ErrorCode.BUDGET_EXCEEDED


class Unavailable(TenantryError):
    """A service is not running or is busy; retryable."""

    default_code: ClassVar[str] = ErrorCode.UNAVAILABLE


class RequestTimeout(Unavailable):
    """No reply in time. Not retried automatically unless the call is idempotent."""

    default_code: ClassVar[str] = TIMEOUT


class UpstreamError(TenantryError):
    """The model provider failed."""

    default_code: ClassVar[str] = ErrorCode.UPSTREAM_ERROR


class InternalError(TenantryError):
    default_code: ClassVar[str] = ErrorCode.INTERNAL


class QuotaExceeded(TenantryError):
    """A per-tenant quota other than the monthly budget (e.g. jobs, storage)."""

    default_code: ClassVar[str] = "quota_exceeded"


class Cancelled(TenantryError):
    """The request was stopped before it finished (the tokens used so far are charged)."""

    default_code: ClassVar[str] = "cancelled"


# Keyed by the code's string value, so codes added to ErrorCode later map here without
# the client importing them (and unknown ones still raise the base class).
_BY_CODE: dict[str, type[TenantryError]] = {
    "invalid_tenant": InvalidRequest,
    "malformed_request": InvalidRequest,
    "payload_too_large": InvalidRequest,
    "template_invalid": InvalidRequest,
    "token_limit": InvalidRequest,
    "unknown_model": InvalidRequest,
    "unknown_tenant": NotFound,
    "not_found": NotFound,
    "forbidden": Forbidden,
    "model_not_allowed": Forbidden,
    "leakage_blocked": LeakageBlocked,
    "conflict": Conflict,
    "rate_limited": RateLimited,
    "budget_exceeded": BudgetExceeded,
    "quota_exceeded": QuotaExceeded,
    "unavailable": Unavailable,
    "upstream_error": UpstreamError,
    "internal": InternalError,
    "cancelled": Cancelled,
}


def retry_after_of(info: ErrorInfo) -> float | None:
    """Seconds to wait before retrying, when the refusal says so."""
    explicit = getattr(info, "retry_after_s", None)  # if ErrorInfo ever carries it
    if isinstance(explicit, int | float):
        return float(explicit)
    found = _RETRY_IN.search(info.message)
    return float(found.group(1)) if found else None


def error_from_info(info: ErrorInfo) -> TenantryError:
    """The typed exception for a platform refusal, keeping its code and ErrorInfo."""
    cls = _BY_CODE.get(str(info.code), TenantryError)
    if cls is RateLimited:
        return RateLimited(
            info.message,
            code=info.code,
            retryable=info.retryable,
            info=info,
            retry_after=retry_after_of(info),
        )
    return cls(info.message, code=info.code, retryable=info.retryable, info=info)
