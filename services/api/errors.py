"""Platform errors as each API's own error responses, with the status codes and bodies
the official SDKs turn into their exception classes (anthropic.RateLimitError,
openai.NotFoundError, ...)."""

from __future__ import annotations

from typing import Literal

from starlette.responses import JSONResponse

from shared.messages.base import ErrorCode, ErrorInfo

Api = Literal["anthropic", "openai"]

# code -> (HTTP status, Anthropic error type, OpenAI error type)
_MAP: dict[ErrorCode, tuple[int, str, str]] = {
    ErrorCode.MALFORMED_REQUEST: (400, "invalid_request_error", "invalid_request_error"),
    ErrorCode.TOKEN_LIMIT: (400, "invalid_request_error", "invalid_request_error"),
    ErrorCode.LEAKAGE_BLOCKED: (400, "invalid_request_error", "invalid_request_error"),
    ErrorCode.INVALID_TENANT: (403, "permission_error", "permission_error"),
    ErrorCode.FORBIDDEN: (403, "permission_error", "permission_error"),
    ErrorCode.UNKNOWN_TENANT: (401, "authentication_error", "invalid_request_error"),
    # Not allowed and unknown look the same: no hint that another tenant's model exists.
    ErrorCode.MODEL_NOT_ALLOWED: (404, "not_found_error", "invalid_request_error"),
    ErrorCode.UNKNOWN_MODEL: (404, "not_found_error", "invalid_request_error"),
    ErrorCode.NOT_FOUND: (404, "not_found_error", "invalid_request_error"),
    ErrorCode.CONFLICT: (409, "invalid_request_error", "invalid_request_error"),
    ErrorCode.CANCELLED: (400, "invalid_request_error", "invalid_request_error"),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "request_too_large", "invalid_request_error"),
    ErrorCode.RATE_LIMITED: (429, "rate_limit_error", "rate_limit_exceeded"),
    ErrorCode.BUDGET_EXCEEDED: (429, "rate_limit_error", "insufficient_quota"),
    ErrorCode.QUOTA_EXCEEDED: (429, "rate_limit_error", "insufficient_quota"),
    ErrorCode.UPSTREAM_ERROR: (502, "api_error", "server_error"),
    ErrorCode.TEMPLATE_INVALID: (500, "api_error", "server_error"),
    ErrorCode.INTERNAL: (500, "api_error", "server_error"),
}
_OVERLOADED = {"anthropic": 529, "openai": 503}  # each API's own "try again later"


def status_of(info: ErrorInfo, api: Api) -> int:
    if info.code is ErrorCode.UNAVAILABLE:
        return _OVERLOADED[api]
    return _MAP.get(info.code, (500, "", ""))[0]


def error_body(info: ErrorInfo, api: Api) -> dict[str, object]:
    """The API's error body: a plain HTTP error's, or the `error` event that ends a
    stream which had already started (same types, so SDKs raise the same way)."""
    return _shaped(info, api)[1]


def error_response(info: ErrorInfo, api: Api) -> JSONResponse:
    status, body = _shaped(info, api)
    headers = {}
    if info.retry_after_s is not None:
        headers["retry-after"] = str(info.retry_after_s)
    elif info.retryable and status >= 500:
        headers["retry-after"] = "1"
    return JSONResponse(body, status_code=status, headers=headers)


def _shaped(info: ErrorInfo, api: Api) -> tuple[int, dict[str, object]]:
    if info.code is ErrorCode.UNAVAILABLE:
        status, a_type, o_type = _OVERLOADED[api], "overloaded_error", "server_error"
    else:
        status, a_type, o_type = _MAP.get(info.code, (500, "api_error", "server_error"))
    if api == "anthropic":
        return status, {"type": "error", "error": {"type": a_type, "message": info.message}}
    body = {"message": info.message, "type": o_type, "param": None, "code": info.code.value}
    return status, {"error": body}


def unauthenticated(api: Api) -> JSONResponse:
    message = "invalid or missing API key"
    if api == "anthropic":
        body: dict[str, object] = {
            "type": "error",
            "error": {"type": "authentication_error", "message": message},
        }
    else:
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    return JSONResponse(body, status_code=401)
