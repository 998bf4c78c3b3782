"""llm's handlers: thin wrappers over invocation.invoke (whole or streamed), with their
audit events, and the cancel of a streamed call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from faststream.nats import NatsMessage
from pydantic import ValidationError

from services.llm import invocation, streaming
from services.llm.finetuned import FineTunedModels, is_finetuned
from services.llm.providers import Completion, ModelProvider, UpstreamError
from shared import subjects
from shared.audit import AuditTrail
from shared.intake import Refusal, admit, error_reply, reply_ok
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.llm import CancelModelCall, InvokeModel, ModelInvoked, ModelStreamed
from shared.replies import publish_reply, refuse_reply, reply_allowed
from shared.service import Handlers, Rpc, Subscriber

SERVICE = "llm"


@dataclass(frozen=True)
class Deps:
    trail: AuditTrail
    # One client (and its HTTP connection pool) for the life of the service.
    provider: ModelProvider
    finetuned: FineTunedModels | None = None  # tenants' own fine-tuned models
    # Streamed calls in progress, by (tenant, request): what a cancel stops.
    streams: dict[tuple[str, str], asyncio.Task[ModelInvoked]] = field(default_factory=dict)
    # Only a provider bootstrap made is closed at stop; one passed in is the caller's.
    owns_provider: bool = False

    async def close(self) -> None:
        if self.owns_provider:
            await self.provider.close()
        if self.finetuned is not None:
            await self.finetuned.close()


async def invoke(msg: InvokeModel, deps: Deps) -> ModelInvoked:
    if is_finetuned(msg.model) and deps.finetuned is not None:
        finetuned = deps.finetuned

        async def tuned() -> Completion:
            invocation.check_allowed(msg)
            return await finetuned.complete(msg)

        return await call_model(deps, msg, tuned)
    provider = deps.provider
    return await call_model(deps, msg, lambda: invocation.invoke(provider, msg))


async def call_model(
    deps: Deps, msg: InvokeModel, call: Callable[[], Awaitable[Completion]]
) -> ModelInvoked:
    """One model call with its audit row, whichever way its text travels; refusals and
    provider failures become the reply's error."""
    provider = deps.provider
    started = time.perf_counter()
    try:
        done = await call()
    except invocation.ModelNotAllowed as exc:
        row = deps.trail.build_for(
            msg,
            event_type=AuditEventType.ACCESS_DENIED,
            action="model.invoke",
            status=AuditStatus.FAILURE,
            resource_type="model",
            resource_id=msg.model,
            error=exc.info.message,
        )
        return await _audited(deps, msg, row, error_reply(ModelInvoked, msg, exc.info))
    except UpstreamError as exc:
        row = deps.trail.build_for(
            msg,
            event_type=AuditEventType.API_CALL,
            action="model.invoke",
            status=AuditStatus.FAILURE,
            resource_type="model",
            resource_id=msg.model,
            error=exc.info.message,
            details={
                "provider": provider.name,
                "http_status": exc.status,
                "retryable": exc.info.retryable,
                "latency_ms": round((time.perf_counter() - started) * 1000),
            },
        )
        return await _audited(deps, msg, row, error_reply(ModelInvoked, msg, exc.info))
    # Counts and names only: the prompt and the answer never go into the audit row.
    row = deps.trail.build_for(
        msg,
        event_type=AuditEventType.API_CALL,
        action="model.invoke",
        resource_type="model",
        resource_id=msg.model,
        details={
            "provider": done.provider,
            "model": done.model,
            "input_tokens": done.usage.input_tokens,
            "output_tokens": done.usage.output_tokens,
            "cache_read_input_tokens": done.usage.cache_read_input_tokens,
            "cache_creation_input_tokens": done.usage.cache_creation_input_tokens,
            "stop_reason": done.stop_reason,
            "latency_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    reply = reply_ok(
        ModelInvoked,
        msg,
        model=done.model,
        provider=done.provider,
        text=done.text,
        usage=done.usage,
        stop_reason=done.stop_reason,
    )
    return await _audited(deps, msg, row, reply)


async def _audited(
    deps: Deps, msg: InvokeModel, row: AuditRecorded, reply: ModelInvoked
) -> ModelInvoked:
    """The reply with the call's audit row handed back, or the row published here."""
    carried = await deps.trail.publish_unless_carried(row, msg.audit_by_caller)
    return reply if carried is None else reply.model_copy(update={"audit": carried})


async def stream(msg: NatsMessage, deps: Deps) -> None:
    """svc.llm.stream.<tid>: the call's text as it is produced, as ModelStreamed events on
    the caller's inbox, then a final event."""
    raw = msg.raw_message
    if not raw.reply or not reply_allowed(raw.reply, None):
        if raw.reply:
            await refuse_reply(deps.trail, None, raw.reply, "llm.stream", raw.subject)
        return
    parsed = _parse(raw.subject, raw.data)
    if isinstance(parsed, ModelStreamed):
        await publish_reply(raw, parsed.model_dump_json().encode())
        return
    # A stream's final event carries no audit row: the call is always recorded here.
    req, seq = parsed.model_copy(update={"audit_by_caller": False}), 0

    async def emit(text: str) -> None:
        nonlocal seq
        event = ModelStreamed(
            tenant_id=req.tenant_id, request_id=req.request_id, seq=seq, text=text
        )
        await publish_reply(raw, event.model_dump_json().encode())
        seq += 1

    provider = deps.provider
    finetuned = deps.finetuned if is_finetuned(req.model) else None
    whole = finetuned.complete if finetuned is not None else None

    async def run() -> Completion:
        invocation.check_allowed(req)
        return await streaming.stream_call(provider, req, emit, whole)

    key = (req.tenant_id, req.request_id)
    task = asyncio.create_task(call_model(deps, req, run))
    deps.streams[key] = task
    try:
        invoked = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the service is stopping, not this call
        # Cancelled before a single piece was produced: nothing used.
        invoked = reply_ok(ModelInvoked, req, model=req.model, stop_reason=streaming.CANCELLED)
    finally:
        deps.streams.pop(key, None)
    final = ModelStreamed(
        tenant_id=req.tenant_id,
        request_id=req.request_id,
        seq=seq,
        done=True,
        model=invoked.model,
        provider=invoked.provider,
        usage=invoked.usage,
        stop_reason=invoked.stop_reason,
        error=invoked.error,
    )
    await publish_reply(raw, final.model_dump_json().encode())


async def cancel(msg: NatsMessage, deps: Deps) -> None:
    """svc.llm.cancel.<tid>: stop one streamed call (every replica listens; the one running
    it stops it and still sends the final event with usage)."""
    raw = msg.raw_message
    try:
        stop = CancelModelCall.model_validate_json(raw.data)
    except ValidationError:
        return
    if subjects.tenant_from_subject(raw.subject, 3) != stop.tenant_id:
        return  # a cancel names its own tenant's call, nobody else's
    task = deps.streams.get((stop.tenant_id, stop.request_id))
    if task is not None:
        task.cancel()


def _parse(subject: str, body: bytes) -> InvokeModel | ModelStreamed:
    """The request (through the shared intake check), or the final error event that
    answers it. A stream's refusal is answered, not audited, as before."""
    request = admit(subjects.tenant_from_subject(subject, 3), body, InvokeModel)
    if isinstance(request, Refusal):
        return ModelStreamed(
            tenant_id=request.tenant_id,
            request_id=request.request_id,
            done=True,
            error=request.error,
        )
    return request


HANDLERS = Handlers[Deps](
    SERVICE,
    rpcs=[Rpc("invoke", InvokeModel, ModelInvoked, invoke)],
    subscribers=[
        Subscriber(
            subjects.service_all(SERVICE, "stream"),
            stream,
            payload=InvokeModel,
            queue=SERVICE,
            max_workers=64,
        ),
        Subscriber(subjects.service_all(SERVICE, "cancel"), cancel, payload=CancelModelCall),
    ],
)
