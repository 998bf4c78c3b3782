"""The Anthropic adapter: one AsyncAnthropic client per service, errors made client-safe."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import anthropic
from anthropic.types import AssistantMessageParam, MessageParam, UserMessageParam

from services.llm.providers import Completion, UpstreamError
from services.llm.settings import LlmSettings
from shared.logging import get_logger
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import Usage
from shared.messages.llm import InvokeModel

PROVIDER = "anthropic"
log = get_logger("tenantry.llm.anthropic")

# The SDK retries these itself (up to max_retries); if they still fail, the caller may too.
_RETRYABLE_STATUS = frozenset({408, 409, 429})
# Anything key- or token-shaped is cut from provider text before it reaches a reply.
_SECRETISH = re.compile(
    r"sk-[A-Za-z0-9_-]{8,}|(?i:bearer)\s+\S+|(?i:x-api-key)\s*[:=]?\s*\S+|eyJ[\w-]+\.[\w-]+\.[\w-]*"
)
_IDENTIFIER = re.compile(r"[a-z_]{1,40}")
_STATUS_HINTS = {
    401: "the platform's provider credentials were rejected; an operator must fix the key",
    403: "the platform's provider credentials lack permission for this call",
    429: "the provider is rate limiting the platform; retry later",
    529: "the provider is overloaded; retry later",
}


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return _SECRETISH.sub("[REDACTED]", text)


def _body_error(body: object, field: str) -> str | None:
    """`error.<field>` of an API error body (read from the body: works on every SDK version)."""
    error = body.get("error") if isinstance(body, dict) else None
    value = error.get(field) if isinstance(error, dict) else None
    return value if isinstance(value, str) else None


def upstream_error(exc: anthropic.AnthropicError, secrets: Sequence[str] = ()) -> ErrorInfo:
    """A client-safe ErrorInfo for an SDK error: status and error type, never the key,
    headers or request; the provider's own message only for 4xx request mistakes."""
    code = ErrorCode.UPSTREAM_ERROR
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = _body_error(exc.body, "type")
        kind = kind if kind and _IDENTIFIER.fullmatch(kind) else None
        message = f"model provider error: HTTP {status}" + (f" {kind}" if kind else "")
        hint = _STATUS_HINTS.get(status)
        detail = _body_error(exc.body, "message")
        if hint is None and 400 <= status < 500 and detail:
            # Request mistakes (unknown model, max_tokens too large) are the caller's to fix.
            hint = scrub(detail, secrets)[:300]
        retryable = status in _RETRYABLE_STATUS or status >= 500
        return ErrorInfo(
            code=code, message=message + (f" ({hint})" if hint else ""), retryable=retryable
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return ErrorInfo(code=code, message="model provider did not answer in time", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return ErrorInfo(code=code, message="could not reach the model provider", retryable=True)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ErrorInfo(code=code, message="model provider sent an unreadable response")
    return ErrorInfo(code=code, message=f"model provider call failed ({type(exc).__name__})")


def usage_of(raw: anthropic.types.Usage) -> Usage:
    # Cache fields are None when prompt caching was not involved: that is zero tokens.
    return Usage(
        input_tokens=raw.input_tokens or 0,
        output_tokens=raw.output_tokens or 0,
        cache_read_input_tokens=raw.cache_read_input_tokens or 0,
        cache_creation_input_tokens=raw.cache_creation_input_tokens or 0,
    )


def messages_of(request: InvokeModel) -> list[MessageParam]:
    return [
        UserMessageParam(role="user", content=m.content)
        if m.role == "user"
        else AssistantMessageParam(role="assistant", content=m.content)
        for m in request.messages
    ]


class AnthropicProvider:
    """ModelProvider over the real SDK. Build it once, at service start."""

    name = PROVIDER

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        secrets: Sequence[str] = (),
        deadline_s: float | None = None,
    ) -> None:
        self._client = client
        self._secrets = tuple(secrets)
        self._deadline_s = deadline_s

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        return self._client

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> AnthropicProvider:
        if settings.anthropic_api_key is None:
            raise ValueError("AnthropicProvider needs ANTHROPIC_API_KEY")
        key = settings.anthropic_api_key.get_secret_value()
        client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=settings.anthropic_base_url,
            timeout=settings.anthropic_timeout_s,
            max_retries=settings.anthropic_max_retries,
        )
        return cls(client, secrets=[key], deadline_s=settings.anthropic_timeout_s)

    async def complete(self, request: InvokeModel) -> Completion:
        messages = messages_of(request)
        try:
            # The SDK's timeout is per attempt; this bounds the call, retries included.
            async with asyncio.timeout(self._deadline_s):
                response = await self._client.messages.create(
                    model=request.model,
                    system=request.system or anthropic.omit,
                    messages=messages,
                    max_tokens=request.max_tokens,
                )
        except TimeoutError:
            log.warning("llm.upstream_timeout", deadline_s=self._deadline_s)
            raise UpstreamError(
                ErrorInfo(
                    code=ErrorCode.UPSTREAM_ERROR,
                    message=f"model provider did not answer within {self._deadline_s:g}s",
                    retryable=True,
                )
            ) from None
        except anthropic.AnthropicError as exc:
            info = upstream_error(exc, self._secrets)
            status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
            request_id = exc.request_id if isinstance(exc, anthropic.APIStatusError) else None
            log.warning(
                "llm.upstream_error",
                error=info.message,
                status=status,
                provider_request_id=request_id,
                retryable=info.retryable,
            )
            raise UpstreamError(info, status) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(
            model=response.model,
            provider=PROVIDER,
            text=text,
            usage=usage_of(response.usage),
            stop_reason=response.stop_reason,
        )

    async def close(self) -> None:
        await self._client.close()
