"""The two HTTP APIs' shapes, translated to and from the platform's messages.

The platform answers one question per request (with the tenant's own passages); a
conversation's earlier turns and the caller's system text travel in front of the last
user turn, labelled, so nothing the client sent is silently dropped. Content other than
text (images, tools) is refused with a clear 400 rather than ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.api.errors import error_body
from shared.messages.completions import (
    ClientInfo,
    CompletionDelta,
    CompletionPublished,
    CreateCompletion,
)

MAX_QUESTION_CHARS = 32_000


class BadRequest(Exception):
    """A body the API cannot take; the message is safe to show the client."""


class _Loose(BaseModel):
    # Sampling knobs (temperature, top_p, stop, ...) are accepted and not applied: the
    # tenant's config decides how its model is called.
    model_config = ConfigDict(extra="allow")


class AnthropicMessage(_Loose):
    role: str
    content: str | list[dict[str, Any]]


class AnthropicRequest(_Loose):
    model: str = Field(min_length=1, max_length=100)
    max_tokens: int = Field(ge=1, le=200_000)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None


class OpenAIMessage(_Loose):
    role: str
    content: str | list[dict[str, Any]] | None = None


class OpenAIRequest(_Loose):
    model: str = Field(min_length=1, max_length=100)
    messages: list[OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=200_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = Field(default=None, max_length=200)


def _text(content: str | list[dict[str, Any]] | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise BadRequest(f"{where}: only text content is supported")
        parts.append(block["text"])
    return "\n".join(parts)


def _question(system: str, turns: list[tuple[str, str]]) -> str:
    if not turns or turns[-1][0] != "user":
        raise BadRequest("messages: the last message must be from the user")
    *earlier, (_, last) = turns
    if not last.strip():
        raise BadRequest("messages: the last user message is empty")
    parts = []
    if system.strip():
        parts.append(f"Caller's instructions:\n{system.strip()}")
    if earlier:
        transcript = "\n".join(f"{role.capitalize()}: {text}" for role, text in earlier)
        parts.append(f"Conversation so far:\n{transcript}")
    parts.append(last if not parts else f"Question:\n{last}")
    question = "\n\n".join(parts)
    if len(question) > MAX_QUESTION_CHARS:
        raise BadRequest(f"messages: more than {MAX_QUESTION_CHARS} characters in all")
    return question


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None


def anthropic_request(body: bytes) -> AnthropicRequest:
    return _validated(AnthropicRequest, body)


def anthropic_to_platform(
    tenant_id: str, req: AnthropicRequest, client: ClientInfo
) -> CreateCompletion:
    turns = []
    for i, m in enumerate(req.messages):
        if m.role not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: must be user or assistant")
        turns.append((m.role, _text(m.content, f"messages.{i}.content")))
    system = _text(req.system, "system") if req.system is not None else ""
    user = (req.metadata or {}).get("user_id")
    if isinstance(user, str):
        client = client.model_copy(update={"user_id": user[:200]})
    return CreateCompletion(
        tenant_id=tenant_id,
        question=_question(system, turns),
        model=req.model,
        max_tokens=req.max_tokens,
        client=client,
    )


def openai_request(body: bytes) -> OpenAIRequest:
    return _validated(OpenAIRequest, body)


def openai_to_platform(tenant_id: str, req: OpenAIRequest, client: ClientInfo) -> CreateCompletion:
    system_parts, turns = [], []
    for i, m in enumerate(req.messages):
        text = _text(m.content, f"messages.{i}.content")
        if m.role in ("system", "developer"):
            system_parts.append(text)
        elif m.role in ("user", "assistant"):
            turns.append((m.role, text))
        else:
            raise BadRequest(f"messages.{i}.role: {m.role!r} is not supported")
    if req.user:
        client = client.model_copy(update={"user_id": req.user})
    return CreateCompletion(
        tenant_id=tenant_id,
        question=_question("\n".join(system_parts), turns),
        model=req.model,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        client=client,
    )


def _stop_reason(done: CompletionPublished, max_tokens: int | None) -> str:
    capped = max_tokens is not None and done.usage.output_tokens >= max_tokens
    return "max_tokens" if capped else "end_turn"


def anthropic_message(done: CompletionPublished, max_tokens: int | None) -> dict[str, Any]:
    return {
        "id": f"msg_{done.request_id}",
        "type": "message",
        "role": "assistant",
        "model": done.model,
        "content": [{"type": "text", "text": done.text}],
        "stop_reason": _stop_reason(done, max_tokens),
        "stop_sequence": None,
        "usage": {
            "input_tokens": done.usage.input_tokens,
            "output_tokens": done.usage.output_tokens,
            "cache_read_input_tokens": done.usage.cache_read_input_tokens,
            "cache_creation_input_tokens": done.usage.cache_creation_input_tokens,
        },
    }


def openai_completion(done: CompletionPublished, max_tokens: int | None) -> dict[str, Any]:
    finish = "length" if _stop_reason(done, max_tokens) == "max_tokens" else "stop"
    return {
        "id": f"chatcmpl-{done.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": done.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text, "refusal": None},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(done),
    }


def _openai_usage(done: CompletionPublished) -> dict[str, int]:
    prompt, completion = done.usage.input_tokens, done.usage.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


Events = AsyncIterator[CompletionDelta | CompletionPublished]


async def anthropic_stream(events: Events, model: str, request_id: str) -> AsyncIterator[bytes]:
    """Anthropic's SSE events, each delta sent as it arrives from the gateway. A
    refusal after text went out (a leakage block mid-stream) is an `error` event."""
    usage = {"input_tokens": 0, "output_tokens": 0}
    start: dict[str, Any] = {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    yield sse("message_start", {"type": "message_start", "message": start})
    block = {"type": "content_block_start", "index": 0}
    yield sse("content_block_start", {**block, "content_block": {"type": "text", "text": ""}})
    async for event in events:
        if isinstance(event, CompletionDelta):
            delta = {"type": "content_block_delta", "index": 0}
            text = {"type": "text_delta", "text": event.text}
            yield sse("content_block_delta", {**delta, "delta": text})
            continue
        if event.error is not None:
            yield sse("error", error_body(event.error, "anthropic"))
            return
        yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        final = anthropic_message(event, None)
        yield sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
                "usage": final["usage"],
            },
        )
        yield sse("message_stop", {"type": "message_stop"})


async def openai_stream(
    events: Events, model: str, request_id: str, include_usage: bool
) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse(None, {**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""}, None)
    async for event in events:
        if isinstance(event, CompletionDelta):
            yield chunk({"content": event.text}, None)
            continue
        if event.error is not None:
            yield sse(None, error_body(event.error, "openai"))
            return
        base["model"] = event.model
        yield chunk({}, "stop")
        if include_usage:
            yield sse(None, {**base, "choices": [], "usage": _openai_usage(event)})
        yield sse(None, "[DONE]")
