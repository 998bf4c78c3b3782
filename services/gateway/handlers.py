"""gateway's subscribers: the durable request stream, sync requests and ingest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from faststream.middlewares import AckPolicy
from faststream.nats import NatsBroker, NatsMessage, NatsRouter, PullSub
from pydantic import ValidationError

from services.gateway import intake, pipeline
from services.gateway.ports import Ports
from services.gateway.refusals import RecentRefusals
from services.gateway.settings import GatewaySettings
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import MAX_DELIVER, ServiceCallError, durable_config, publish_event, stream
from shared.logging import bound, get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CompletionPublished
from shared.messages.retrieval import DocumentsIngested, IngestDocuments
from shared.messages.tenants import ResolveTenant
from shared.service import error_reply, summarise_validation
from shared.tenancy import UNATTRIBUTED, describe_raw, is_valid_tenant_id

SERVICE = "gateway"
log = get_logger("tenantry.gateway")

# Refusals that mean "you may not", as opposed to "that did not work".
_DENIALS = {ErrorCode.INVALID_TENANT, ErrorCode.UNKNOWN_TENANT, ErrorCode.MODEL_NOT_ALLOWED}


@dataclass
class Deps:
    settings: GatewaySettings
    broker: NatsBroker
    ports: Ports
    trail: AuditTrail
    refusals: RecentRefusals = field(default_factory=RecentRefusals)


Deliver = Callable[[CompletionPublished], Awaitable[None]]


async def _returned_as_reply(_: CompletionPublished) -> None:
    """Sync requests: the completion goes back as the handler's reply."""


async def handle_request(
    deps: Deps, subject: str, body: bytes, deliver: Deliver = _returned_as_reply
) -> CompletionPublished:
    """Everything one request needs, whichever way it arrived; never raises for bad input.

    The completion is delivered and the request's audit row written at the same time:
    they are independent writes, and both are acknowledged before the request is.
    """
    raw_tenant = subjects.tenant_from_subject(subject, 1)
    parsed = intake.parse(raw_tenant, body)
    if isinstance(parsed, intake.Rejected):
        rejected = CompletionPublished(
            tenant_id=parsed.tenant_id, request_id=parsed.request_id, error=parsed.error
        )
        audited = deps.trail.record(
            tenant_id=parsed.tenant_id,
            request_id=parsed.request_id,
            event_type=AuditEventType.ACCESS_DENIED
            if parsed.error.code in _DENIALS
            else AuditEventType.API_CALL,
            action="completion.create",
            status=AuditStatus.FAILURE,
            error=parsed.error.message,
            details={"error_code": parsed.error.code.value, "raw_tenant": parsed.raw_tenant},
        )
        await asyncio.gather(deliver(rejected), audited)
        return rejected
    with bound(parsed.tenant_id, parsed.request_id):
        outcome = await pipeline.answer(parsed, deps.ports, deps.settings, deps.refusals)
        done = outcome.completion
        audited = deps.trail.record(
            tenant_id=parsed.tenant_id,
            request_id=parsed.request_id,
            event_type=AuditEventType.ACCESS_DENIED
            if done.error and done.error.code in _DENIALS
            else AuditEventType.API_CALL,
            action="completion.create",
            status=AuditStatus.FAILURE if done.error else AuditStatus.SUCCESS,
            error=done.error.message if done.error else None,
            resource_type="completion",
            resource_id=parsed.request_id,
            actor=parsed.client.user_id or "",
            client_ip=parsed.client.ip,
            user_agent=parsed.client.user_agent,
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
        )
        await asyncio.gather(deliver(done), audited)
        log.info(
            "completion.done",
            ok=done.error is None,
            latency_ms=round(outcome.latency_ms, 1),
            model=done.model,
        )
        return done


async def publish_completion(deps: Deps, raw_tenant: str, done: CompletionPublished) -> None:
    subject = subjects.completion_for_token(raw_tenant, done.request_id)
    await publish_event(deps.broker, done, subject, stream=subjects.COMPLETIONS_STREAM)


async def handle_ingest(deps: Deps, subject: str, body: bytes) -> DocumentsIngested:
    raw_tenant = subjects.tenant_from_subject(subject, 1)
    if not is_valid_tenant_id(raw_tenant):
        info = ErrorInfo(code=ErrorCode.INVALID_TENANT, message="invalid tenant id in subject")
        await _deny(deps, UNATTRIBUTED, "", info, describe_raw(raw_tenant))
        return error_reply(DocumentsIngested, UNATTRIBUTED, "", info)
    try:
        request = IngestDocuments.model_validate_json(body)
    except ValidationError as exc:
        info = ErrorInfo(
            code=ErrorCode.MALFORMED_REQUEST,
            message=f"malformed ingest: {summarise_validation(exc)}",
        )
        await _deny(deps, raw_tenant, "", info, raw_tenant, AuditEventType.API_CALL)
        return error_reply(DocumentsIngested, raw_tenant, "", info)
    if request.tenant_id != raw_tenant:
        info = ErrorInfo(code=ErrorCode.INVALID_TENANT, message="tenant_id does not match subject")
        await _deny(deps, raw_tenant, request.request_id, info, raw_tenant)
        return error_reply(DocumentsIngested, raw_tenant, request.request_id, info)
    with bound(request.tenant_id, request.request_id):
        try:
            resolved = await deps.ports.resolve(
                ResolveTenant(tenant_id=request.tenant_id, request_id=request.request_id)
            )
            if resolved.error is not None:
                await _deny(deps, raw_tenant, request.request_id, resolved.error, raw_tenant)
                return error_reply(
                    DocumentsIngested, raw_tenant, request.request_id, resolved.error
                )
            return await deps.ports.ingest(request)
        except ServiceCallError as failed:
            return error_reply(DocumentsIngested, raw_tenant, request.request_id, failed.info)


async def _deny(
    deps: Deps,
    tenant_id: str,
    request_id: str,
    info: ErrorInfo,
    raw_tenant: str,
    event_type: AuditEventType = AuditEventType.ACCESS_DENIED,
) -> None:
    await deps.trail.record(
        tenant_id=tenant_id,
        request_id=request_id or "unknown",
        event_type=event_type,
        action="documents.ingest",
        status=AuditStatus.FAILURE,
        error=info.message,
        details={"error_code": info.code.value, "raw_tenant": raw_tenant},
    )


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()
    workers = deps.settings.workers

    @router.subscriber(
        subjects.ALL_REQUESTS,
        stream=stream(subjects.REQUESTS_STREAM),
        durable=SERVICE,
        # One message per fetch: nats-py 2.16's fetch(batch>1) can hold a message it
        # already received until the fetch times out, waiting for the rest of the batch
        # (measured: ~5 % of requests at a few per second delayed 0.2-0.9 s, with one or
        # two gateways). Workers still run `workers` requests at once; only the pulls
        # are one by one, a round trip each (thousands per second).
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        max_workers=workers,
        config=durable_config(ack_wait_s=deps.settings.model_timeout_s + 60),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_request(msg: NatsMessage) -> None:
        raw_tenant = subjects.tenant_from_subject(msg.raw_message.subject, 1)

        async def deliver(done: CompletionPublished) -> None:
            await publish_completion(deps, raw_tenant, done)

        try:
            await handle_request(deps, msg.raw_message.subject, msg.body, deliver)
        except Exception:
            # Unexpected failure: JetStream redelivers (nack). On the last attempt the
            # client still gets an answer; the message then goes to the dead letters.
            if msg.raw_message.metadata.num_delivered >= MAX_DELIVER:
                request_id = intake.parse(raw_tenant, msg.body)
                rid = request_id.request_id
                tid = raw_tenant if is_valid_tenant_id(raw_tenant) else UNATTRIBUTED
                await publish_completion(
                    deps,
                    raw_tenant,
                    CompletionPublished(
                        tenant_id=tid,
                        request_id=rid,
                        error=ErrorInfo(
                            code=ErrorCode.INTERNAL,
                            message=f"request failed after {MAX_DELIVER} attempts",
                            retryable=True,
                        ),
                    ),
                )
            raise

    @router.subscriber(subjects.ALL_SYNC_REQUESTS, queue=SERVICE, max_workers=workers)
    async def on_sync_request(msg: NatsMessage) -> bytes:
        try:
            done = await handle_request(deps, msg.raw_message.subject, msg.body)
        except Exception:
            # No redelivery on this path: answer now, or the caller waits out its timeout.
            log.exception("completion.sync_failed")
            parsed = intake.parse(
                subjects.tenant_from_subject(msg.raw_message.subject, 1), msg.body
            )
            done = CompletionPublished(
                tenant_id=parsed.tenant_id,
                request_id=parsed.request_id,
                error=ErrorInfo(
                    code=ErrorCode.INTERNAL, message="internal error in the gateway", retryable=True
                ),
            )
        return done.model_dump_json().encode()

    @router.subscriber(subjects.ALL_INGESTS, queue=SERVICE, max_workers=max(1, workers // 8))
    async def on_ingest(msg: NatsMessage) -> bytes:
        result = await handle_ingest(deps, msg.raw_message.subject, msg.body)
        return result.model_dump_json().encode()

    return router
