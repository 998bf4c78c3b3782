"""The client's typed errors, credential resolution and retry policy, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.client_credentials import load_credentials_file, redact_url, resolve_credentials
from shared.client_errors import (
    BudgetExceeded,
    Forbidden,
    InvalidRequest,
    LeakageBlocked,
    NotFound,
    RateLimited,
    RequestTimeout,
    TenantryError,
    Unavailable,
    error_from_info,
)
from shared.client_retry import RetryPolicy, with_retries
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CompletionPublished

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (ErrorCode.RATE_LIMITED, RateLimited),
        (ErrorCode.BUDGET_EXCEEDED, BudgetExceeded),
        (ErrorCode.MODEL_NOT_ALLOWED, Forbidden),
        (ErrorCode.LEAKAGE_BLOCKED, LeakageBlocked),
        (ErrorCode.UNKNOWN_TENANT, NotFound),
        (ErrorCode.NOT_FOUND, NotFound),
        (ErrorCode.INVALID_TENANT, InvalidRequest),
        (ErrorCode.UNAVAILABLE, Unavailable),
    ],
)
def test_each_refusal_has_its_class_and_keeps_its_code(code: ErrorCode, cls: type) -> None:
    info = ErrorInfo(code=code, message="no", retryable=True)
    exc = error_from_info(info)
    assert type(exc) is cls
    assert exc.code == code and exc.info is info and exc.retryable
    assert isinstance(exc, TenantryError)


def test_every_error_code_maps_to_a_specific_class() -> None:
    for code in ErrorCode:
        exc = error_from_info(ErrorInfo(code=code, message="x"))
        assert type(exc) is not TenantryError, code


def test_rate_limit_reads_metering_retry_after() -> None:
    info = ErrorInfo(
        code=ErrorCode.RATE_LIMITED,
        message="rate limit of tokens per minute reached; retry in 12 s",
        retryable=True,
    )
    exc = error_from_info(info)
    assert isinstance(exc, RateLimited) and exc.retry_after == 12.0


def test_backoff_is_bounded_and_grows() -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff_s=0.2, max_backoff_s=0.5)
    busy = Unavailable("busy", retryable=True)
    delays = [policy.delay(i, busy) or -1.0 for i in range(3)]
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4 and 0.25 <= delays[2] <= 0.5
    assert policy.delay(3, busy) is None  # bounded
    assert policy.delay(0, BudgetExceeded("no")) is None  # not retryable
    assert policy.delay(0, RateLimited("wait", retry_after=3.0)) == 3.0
    assert policy.delay(0, RateLimited("wait", retry_after=60.0)) is None  # too long


async def test_retries_stop_at_a_final_answer() -> None:
    replies = [
        CompletionPublished(
            tenant_id="acme",
            error=ErrorInfo(code=ErrorCode.UNAVAILABLE, message="busy", retryable=True),
        ),
        CompletionPublished(tenant_id="acme", text="done"),
    ]
    calls = 0

    async def attempt() -> CompletionPublished:
        nonlocal calls
        calls += 1
        return replies[calls - 1]

    policy = RetryPolicy(max_retries=5, initial_backoff_s=0.01)
    assert (await with_retries(attempt, policy, idempotent=False)).text == "done"
    assert calls == 2


async def test_a_timeout_is_retried_only_when_idempotent() -> None:
    calls = 0

    async def attempt() -> CompletionPublished:
        nonlocal calls
        calls += 1
        raise RequestTimeout("slow", retryable=True)

    policy = RetryPolicy(max_retries=2, initial_backoff_s=0.01)
    with pytest.raises(RequestTimeout):
        await with_retries(attempt, policy, idempotent=False)
    assert calls == 1
    with pytest.raises(RequestTimeout):
        await with_retries(attempt, policy, idempotent=True)
    assert calls == 1 + 3


def test_urls_lose_their_passwords() -> None:
    assert redact_url("nats://ops:s3cret@nats.example:4222") == "nats://ops:***@nats.example:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_credentials_precedence(tmp_path: Path) -> None:
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"user": "f", "password": "fp", "tenant_id": "acme"}))
    env = {"TENANTRY_NATS_USER": "e", "TENANTRY_NATS_PASSWORD": "ep", "TENANTRY_NATS_CREDS": ""}
    assert resolve_credentials("a", "ap", None, env).user == "a"
    assert resolve_credentials(None, None, file, env).user == "f"
    assert resolve_credentials(None, None, None, env).password == "ep"
    from_file = resolve_credentials(None, None, None, {"TENANTRY_NATS_CREDS": str(file)})
    assert (from_file.user, from_file.tenant_id) == ("f", "acme")
    assert resolve_credentials(None, None, None, {}).user is None
    assert "fp" not in repr(from_file)


def test_nats_creds_files_are_recognised(tmp_path: Path) -> None:
    file = tmp_path / "user.creds"
    file.write_text("-----BEGIN NATS USER JWT-----\neyJ...\n------END NATS USER JWT------\n")
    assert load_credentials_file(file).creds_file == file
