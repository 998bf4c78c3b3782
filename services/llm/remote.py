"""Fine-tuned models that live at an OpenAI-compatible provider: chat completions through
the official `openai` SDK. Only reached through FineTunedModels, after the ownership
check; errors are made client-safe like the Anthropic adapter's."""

from __future__ import annotations

import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from services.llm.providers import Completion, UpstreamError
from shared.logging import get_logger
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import Usage
from shared.messages.llm import InvokeModel

PROVIDER = "openai-compatible"
log = get_logger("tenantry.llm.remote")
_RETRYABLE_STATUS = frozenset({408, 409, 429})


def _safe(exc: openai.OpenAIError) -> UpstreamError:
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        info = ErrorInfo(
            code=ErrorCode.UPSTREAM_ERROR,
            message=f"fine-tuned model provider error: HTTP {status}",
            retryable=status in _RETRYABLE_STATUS or status >= 500,
        )
        return UpstreamError(info, status)
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        info = ErrorInfo(
            code=ErrorCode.UPSTREAM_ERROR,
            message="could not reach the fine-tuned model's provider",
            retryable=True,
        )
        return UpstreamError(info)
    return UpstreamError(
        ErrorInfo(code=ErrorCode.UPSTREAM_ERROR, message="fine-tuned model call failed")
    )


class RemoteModels:
    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client

    async def complete(self, request: InvokeModel) -> Completion:
        messages: list[ChatCompletionMessageParam] = []
        if request.system:
            messages.append(ChatCompletionSystemMessageParam(role="system", content=request.system))
        for m in request.messages:
            messages.append(
                ChatCompletionUserMessageParam(role="user", content=m.content)
                if m.role == "user"
                else ChatCompletionAssistantMessageParam(role="assistant", content=m.content)
            )
        try:
            response = await self._client.chat.completions.create(
                model=request.model, messages=messages, max_tokens=request.max_tokens
            )
        except openai.OpenAIError as exc:
            error = _safe(exc)
            log.warning("llm.remote_error", error=error.info.message, status=error.status)
            raise error from None
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return Completion(
            model=request.model,
            provider=PROVIDER,
            text=(choice.message.content or "") if choice else "",
            usage=Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            stop_reason="max_tokens" if choice and choice.finish_reason == "length" else "end_turn",
        )

    async def close(self) -> None:
        await self._client.close()
