"""A streamed model call: text deltas as the provider produces them, then the usage.

The Anthropic SDK streams token by token; the offline providers (extractive, and a
tenant's fine-tuned offline model) compute their answer at once, which is then emitted
word-aligned, yielding to the loop between pieces so a cancellation lands mid-answer.
A call cancelled part-way returns what it had used: the input tokens and the output
produced so far (Anthropic's running usage, or the offline tokenizer's count).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anthropic

from services.llm import tokens
from services.llm.adapters import PROVIDER as ANTHROPIC
from services.llm.adapters import AnthropicProvider, messages_of, upstream_error, usage_of
from services.llm.providers import Completion, ModelProvider, UpstreamError
from shared.messages.completions import Usage
from shared.messages.llm import InvokeModel

Emit = Callable[[str], Awaitable[None]]
CANCELLED = "cancelled"


def pieces(text: str, size: int = 16) -> list[str]:
    """Word-aligned pieces of about `size` characters (spaces kept, so they rejoin)."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start, end)
            end = space + 1 if space > start else end
        out.append(text[start:end])
        start = end
    return out


async def emit_whole(done: Completion, emit: Emit) -> Completion:
    """Stream an answer that exists already; on cancel, charge what was emitted."""
    sent = ""
    try:
        for piece in pieces(done.text):
            await emit(piece)
            sent += piece
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        used = Usage(input_tokens=done.usage.input_tokens, output_tokens=tokens.count_tokens(sent))
        return Completion(done.model, done.provider, sent, used, CANCELLED)
    return done


async def stream_anthropic(
    provider: AnthropicProvider, request: InvokeModel, emit: Emit
) -> Completion:
    client, secrets = provider.client, provider.secrets
    text = ""
    try:
        async with client.messages.stream(
            model=request.model,
            system=request.system or anthropic.omit,
            messages=messages_of(request),
            max_tokens=request.max_tokens,
        ) as stream:
            try:
                async for delta in stream.text_stream:
                    await emit(delta)
                    text += delta
            except asyncio.CancelledError:
                # Leaving the block closes the HTTP response: the provider stops
                # generating. What it billed so far is in the running snapshot.
                snapshot = stream.current_message_snapshot
                used = usage_of(snapshot.usage)
                # The API reports output tokens at the end only; mid-stream, charge at
                # least what was received (the offline tokenizer's count of it).
                out = max(used.output_tokens, tokens.count_tokens(text))
                used = used.model_copy(update={"output_tokens": out})
                return Completion(snapshot.model, ANTHROPIC, text, used, CANCELLED)
            final = await stream.get_final_message()
    except anthropic.AnthropicError as exc:
        status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
        raise UpstreamError(upstream_error(exc, secrets), status) from None
    return Completion(final.model, ANTHROPIC, text, usage_of(final.usage), final.stop_reason)


async def stream_call(
    provider: ModelProvider,
    request: InvokeModel,
    emit: Emit,
    whole: Callable[[InvokeModel], Awaitable[Completion]] | None = None,
) -> Completion:
    """`whole` answers at once (a fine-tuned model); else the provider: the Anthropic SDK
    streams, the offline provider answers at once and is emitted in pieces."""
    if whole is None and isinstance(provider, AnthropicProvider):
        return await stream_anthropic(provider, request, emit)
    done = await (whole or provider.complete)(request)
    return await emit_whole(done, emit)
