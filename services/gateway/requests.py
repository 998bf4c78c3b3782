"""What the gateway does with one message, whichever door it came in by: plain functions
over the Deps, so they are testable without a broker (tests/unit/test_gateway_requests.py).

Every refusal is audited and answered; nothing here raises for bad input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from services.gateway import intake, pipeline, streaming
from services.gateway.pipeline import failed
from shared import subjects
from shared.bus import ServiceCallError, publish_event
from shared.intake import Refusal, admit, error_reply
from shared.logging import bound, get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CompletionPublished, CreateCompletion
from shared.messages.retrieval import DocumentsIngested, IngestDocuments
from shared.messages.tenants import ResolveTenant
from shared.replies import Send
from shared.tenancy import UNATTRIBUTED, describe_raw, is_valid_tenant_id

if TYPE_CHECKING:
    from services.gateway.handlers import Deps

log = get_logger("tenantry.gateway")

COMPLETE, INGEST = "completion.create", "documents.ingest"

# Refusals that mean "you may not", as opposed to "that did not work".
_DENIALS = {ErrorCode.INVALID_TENANT, ErrorCode.UNKNOWN_TENANT, ErrorCode.MODEL_NOT_ALLOWED}

Deliver = Callable[[CompletionPublished], Awaitable[None]]
Work = Callable[[CreateCompletion, pipeline.Trace], Awaitable[pipeline.Outcome]]


async def returned_as_reply(_: CompletionPublished) -> None:
    """Sync requests: the completion goes back as the handler's reply."""


def attributed(raw_tenant: str) -> str:
    """The subject's tenant token if it is a valid id, else the unattributed bucket."""
    return raw_tenant if is_valid_tenant_id(raw_tenant) else UNATTRIBUTED


async def complete(
    deps: Deps,
    raw_tenant: str,
    body: bytes,
    deliver: Deliver = returned_as_reply,
    fallback_id: str | None = None,
    work: Work | None = None,
) -> CompletionPublished:
    """One completion request: admitted, answered, delivered and audited.

    The completion is delivered and the request's audit row written at the same time:
    they are independent writes, and both are acknowledged before the request is."""
    parsed = intake.parse(raw_tenant, body, fallback_id)
    if isinstance(parsed, intake.Rejected):
        rejected = failed(parsed.tenant_id, parsed.request_id, parsed.error)
        audited = deps.trail.record_for(
            rejected,
            event_type=_event_type(parsed.error),
            action=COMPLETE,
            status=AuditStatus.FAILURE,
            error=parsed.error.message,
            details={"error_code": parsed.error.code.value, "raw_tenant": parsed.raw_tenant},
        )
        await asyncio.gather(deliver(rejected), audited)
        return rejected
    with bound(parsed.tenant_id, parsed.request_id):
        trace = pipeline.Trace()
        try:
            if work is None:
                outcome = await pipeline.answer(
                    parsed, deps.ports, deps.settings, deps.refusals, trace
                )
            else:
                outcome = await work(parsed, trace)
        except Exception:
            # A crash (the durable request is redelivered): the steps that did run are
            # still recorded, in a failure row that carries them.
            if trace.carried:
                await _audit_crash(deps, parsed, trace)
            raise
        done = outcome.completion
        await asyncio.gather(deliver(done), _audit_completion(deps, parsed, outcome, trace))
        log.info(
            "completion.done",
            ok=done.error is None,
            latency_ms=round(outcome.latency_ms, 1),
            model=done.model,
        )
        return done


async def _audit_completion(
    deps: Deps, req: CreateCompletion, outcome: pipeline.Outcome, trace: pipeline.Trace
) -> None:
    done = outcome.completion
    await deps.trail.record(
        tenant_id=req.tenant_id,
        request_id=req.request_id,
        event_type=_event_type(done.error),
        action=COMPLETE,
        status=AuditStatus.FAILURE if done.error else AuditStatus.SUCCESS,
        error=done.error.message if done.error else None,
        resource_type="completion",
        resource_id=req.request_id,
        actor=req.client.user_id or "",
        client_ip=req.client.ip,
        user_agent=req.client.user_agent,
        details={
            "model": done.model,
            "input_tokens": done.usage.input_tokens,
            "output_tokens": done.usage.output_tokens,
            "cost_nanousd": done.cost_nanousd,
            "chunks": outcome.chunks,
            "findings": outcome.findings,
            "latency_ms": round(outcome.latency_ms, 2),
            "error_code": done.error.code.value if done.error else None,
            **{f"ms_{stage}": ms for stage, ms in outcome.stages_ms.items()},
        },
        carried=trace.carried,
    )


async def _audit_crash(deps: Deps, req: CreateCompletion, trace: pipeline.Trace) -> None:
    await deps.trail.record(
        tenant_id=req.tenant_id,
        request_id=req.request_id,
        event_type=AuditEventType.ERROR,
        action=COMPLETE,
        status=AuditStatus.FAILURE,
        error="internal error in the gateway; the request will be retried",
        resource_type="completion",
        resource_id=req.request_id,
        carried=trace.carried,
    )


def _event_type(error: ErrorInfo | None) -> AuditEventType:
    if error is not None and error.code in _DENIALS:
        return AuditEventType.ACCESS_DENIED
    return AuditEventType.API_CALL


def crashed(raw_tenant: str, body: bytes, fallback_id: str | None) -> CompletionPublished:
    """The error completion for a request the gateway could not work; never raises."""
    info = ErrorInfo(
        code=ErrorCode.INTERNAL, message="internal error in the gateway", retryable=True
    )
    return failed(attributed(raw_tenant), intake.request_id_of(body, fallback_id), info)


async def refuse(
    deps: Deps, raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo
) -> CompletionPublished:
    """A request refused before it could be parsed (too large) or that crashed the
    gateway: audited, answered with an error completion."""
    rid = intake.request_id_of(body, intake.message_id_of(headers))
    done = failed(attributed(raw_tenant), rid, info)
    await deps.trail.record_for(
        done,
        event_type=AuditEventType.API_CALL,
        action=COMPLETE,
        status=AuditStatus.FAILURE,
        error=info.message,
        details={"error_code": info.code.value, "raw_tenant": describe_raw(raw_tenant)},
    )
    return done


async def publish_completion(deps: Deps, raw_tenant: str, done: CompletionPublished) -> None:
    subject = subjects.completion_for_token(raw_tenant, done.request_id)
    await publish_event(deps.broker, done, subject, stream=subjects.COMPLETIONS_STREAM)


async def ingest(deps: Deps, raw_tenant: str, body: bytes) -> DocumentsIngested:
    """A tenant's documents: admitted, the tenant checked live, handed to retrieval."""
    admitted = admit(raw_tenant, body, IngestDocuments)
    if isinstance(admitted, Refusal):
        # The client's own id when the body has one, so even a refusal can be matched.
        rid = intake.request_id_of(body)
        refusal = Refusal(admitted.tenant_id, rid, admitted.error, admitted.denied)
        kind = AuditEventType.ACCESS_DENIED if refusal.denied else AuditEventType.API_CALL
        await deny_ingest(deps, refusal, refusal.error, describe_raw(raw_tenant), kind)
        return error_reply(DocumentsIngested, refusal, refusal.error)
    request = admitted
    with bound(request.tenant_id, request.request_id):
        try:
            resolved = await deps.ports.resolve(
                ResolveTenant(tenant_id=request.tenant_id, request_id=request.request_id)
            )
            if resolved.error is not None:
                await deny_ingest(deps, request, resolved.error, raw_tenant)
                return error_reply(DocumentsIngested, request, resolved.error)
            return await deps.ports.ingest(request)
        except ServiceCallError as failure:
            return error_reply(DocumentsIngested, request, failure.info)


async def deny_ingest(
    deps: Deps,
    about: Refusal | IngestDocuments,
    info: ErrorInfo,
    raw_tenant: str,
    event_type: AuditEventType = AuditEventType.ACCESS_DENIED,
) -> None:
    await deps.trail.record_for(
        about,
        event_type=event_type,
        action=INGEST,
        status=AuditStatus.FAILURE,
        error=info.message,
        details={"error_code": info.code.value, "raw_tenant": raw_tenant},
    )


def streamed(deps: Deps, send: Send) -> Work:
    """The pipeline for a streamed request: text goes out as it passes the scan."""
    return streaming.streamed(deps.streams, deps.ports, deps.settings, deps.refusals, send)
