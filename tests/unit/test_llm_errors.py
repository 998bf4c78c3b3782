"""llm: SDK error mapping, settings, allow-list and usage mapping."""

from __future__ import annotations

import anthropic
import httpx2
import pytest
from pydantic import SecretStr, ValidationError

from services.llm import invocation
from services.llm.adapters import scrub, upstream_error, usage_of
from services.llm.settings import LlmSettings
from shared.messages.base import ErrorCode
from shared.messages.llm import ChatMessage, InvokeModel

pytestmark = pytest.mark.unit

KEY = "sk-ant-api03-THISISTHEKEY0123456789abcdef"
REQUEST = httpx2.Request(
    "POST", "https://api.anthropic.com/v1/messages", headers={"x-api-key": KEY}
)


def status_error(
    cls: type[anthropic.APIStatusError], status: int, kind: str, message: str
) -> anthropic.APIStatusError:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    response = httpx2.Response(status, request=REQUEST, json=body)
    return cls(f"Error code: {status} - {body} {KEY}", response=response, body=body)


@pytest.mark.parametrize(
    ("cls", "status", "kind", "retryable"),
    [
        (anthropic.RateLimitError, 429, "rate_limit_error", True),
        (anthropic.InternalServerError, 500, "api_error", True),
        (anthropic.InternalServerError, 529, "overloaded_error", True),
        (anthropic.AuthenticationError, 401, "authentication_error", False),
        (anthropic.BadRequestError, 400, "invalid_request_error", False),
    ],
)
def test_status_errors_map_to_upstream_error(
    cls: type[anthropic.APIStatusError], status: int, kind: str, retryable: bool
) -> None:
    exc = status_error(cls, status, kind, f"upstream said no, key was {KEY}")
    info = upstream_error(exc, [KEY])
    assert info.code is ErrorCode.UPSTREAM_ERROR
    assert info.retryable is retryable
    assert f"HTTP {status}" in info.message and kind in info.message
    assert KEY not in info.message and "THISISTHEKEY" not in info.message
    assert "x-api-key" not in info.message


def test_bad_request_keeps_the_providers_reason_but_scrubs_keys() -> None:
    exc = status_error(
        anthropic.BadRequestError, 400, "invalid_request_error", "max_tokens: 999999 > 64000"
    )
    assert "max_tokens: 999999 > 64000" in upstream_error(exc, [KEY]).message
    # Even a key the adapter was not told about is cut when it looks like one.
    leaky = status_error(
        anthropic.NotFoundError, 404, "not_found_error", "bad key sk-ant-zzz123456789"
    )
    assert "sk-ant" not in upstream_error(leaky).message


def test_connection_and_timeout_errors_are_retryable() -> None:
    conn = upstream_error(anthropic.APIConnectionError(request=REQUEST))
    timeout = upstream_error(anthropic.APITimeoutError(request=REQUEST))
    assert conn.retryable and timeout.retryable
    assert conn.message == "could not reach the model provider"
    assert "in time" in timeout.message


def test_scrub_removes_known_and_key_shaped_secrets() -> None:
    text = f"key {KEY}, Bearer abc.def, sk-proj-abcdefghijklmnop"
    cleaned = scrub(text, [KEY])
    assert KEY not in cleaned and "abc.def" not in cleaned and "sk-proj" not in cleaned


def test_usage_none_cache_fields_become_zero() -> None:
    raw = anthropic.types.Usage(
        input_tokens=12,
        output_tokens=5,
        cache_read_input_tokens=None,
        cache_creation_input_tokens=None,
    )
    usage = usage_of(raw)
    assert (usage.input_tokens, usage.output_tokens) == (12, 5)
    assert usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens == 0


def test_model_not_on_the_allow_list_is_refused() -> None:
    msg = InvokeModel(
        tenant_id="acme",
        model="claude-opus-4-1",
        allowed_models=["claude-haiku-4-5"],
        system="",
        messages=[ChatMessage(role="user", content="hi")],
        max_tokens=10,
    )
    with pytest.raises(invocation.ModelNotAllowed) as caught:
        invocation.check_allowed(msg)
    assert caught.value.info.code is ErrorCode.MODEL_NOT_ALLOWED
    assert "claude-opus-4-1" in caught.value.info.message
    assert "claude-haiku-4-5" in caught.value.info.message


def test_settings_read_the_sdks_own_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999")
    settings = LlmSettings()
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == KEY
    assert settings.anthropic_base_url == "http://127.0.0.1:9999"
    assert KEY not in repr(settings)


def test_settings_empty_key_means_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    assert LlmSettings(environment="production").anthropic_api_key is None
    assert LlmSettings(anthropic_api_key=SecretStr(KEY)).anthropic_api_key is not None


@pytest.mark.parametrize("environment", ["test", "production"])
def test_placeholder_key_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="placeholder"):
        LlmSettings(environment=environment, anthropic_api_key="changeme")
    assert LlmSettings(environment="development", anthropic_api_key="changeme").anthropic_api_key


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValidationError):
        LlmSettings(anthropic_base_url="ftp://example")


def test_start_up_errors_never_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValidationError) as caught:
        LlmSettings(environment="production", nats_password="changeme", anthropic_api_key=KEY)
    assert KEY not in str(caught.value) and KEY[-8:] not in str(caught.value)
