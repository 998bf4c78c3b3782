"""gateway's subscribers: the durable request stream, sync requests and ingest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from faststream.middlewares import AckPolicy
from faststream.nats import NatsBroker, NatsMessage, NatsRouter, PullSub
from pydantic import ValidationError

from services.gateway import durable, intake, pipeline, streaming
from services.gateway.ports import Ports
from services.gateway.refusals import RecentRefusals
from services.gateway.settings import GatewaySettings
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import (
    MAX_DELIVER,
    ServiceCallError,
    durable_config,
    publish_event,
    pull_inbox,
    stream,
)
from shared.logging import bound, get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import (
    CompletionPublished,
)
from shared.messages.retrieval import DocumentsIngested, IngestDocuments
from shared.messages.tenants import ResolveTenant
from shared.replies import Door, Refusal, Send, tenant_door, tenant_stream_door
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
    # Streamed requests in progress, by (tenant, request id): what a cancel stops.
    streams: streaming.Streams = field(default_factory=dict)


Deliver = Callable[[CompletionPublished], Awaitable[None]]
Work = streaming.Work


async def _returned_as_reply(_: CompletionPublished) -> None:
    """Sync requests: the completion goes back as the handler's reply."""


async def handle_request(
    deps: Deps,
    subject: str,
    body: bytes,
    deliver: Deliver = _returned_as_reply,
    fallback_id: str | None = None,
    work: Work | None = None,
) -> CompletionPublished:
    """Everything one request needs, whichever way it arrived; never raises for bad input.

    The completion is delivered and the request's audit row written at the same time:
    they are independent writes, and both are acknowledged before the request is.
    """
    raw_tenant = subjects.tenant_from_subject(subject, 1)
    parsed = intake.parse(raw_tenant, body, fallback_id)
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
        if work is None:
            outcome = await pipeline.answer(parsed, deps.ports, deps.settings, deps.refusals)
        else:
            outcome = await work(parsed)
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
    # The client's own id when the body has one, so even a refusal can be matched.
    rid = intake.request_id_of(body)
    if not is_valid_tenant_id(raw_tenant):
        info = ErrorInfo(code=ErrorCode.INVALID_TENANT, message="invalid tenant id in subject")
        await _deny(deps, UNATTRIBUTED, rid, info, describe_raw(raw_tenant))
        return error_reply(DocumentsIngested, UNATTRIBUTED, rid, info)
    try:
        request = IngestDocuments.model_validate_json(body)
    except ValidationError as exc:
        info = ErrorInfo(
            code=ErrorCode.MALFORMED_REQUEST,
            message=f"malformed ingest: {summarise_validation(exc)}",
        )
        await _deny(deps, raw_tenant, rid, info, raw_tenant, AuditEventType.API_CALL)
        return error_reply(DocumentsIngested, raw_tenant, rid, info)
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
        request_id=request_id,
        event_type=event_type,
        action="documents.ingest",
        status=AuditStatus.FAILURE,
        error=info.message,
        details={"error_code": info.code.value, "raw_tenant": raw_tenant},
    )


def failed_completion(raw_tenant: str, body: bytes, fallback_id: str | None) -> CompletionPublished:
    """The error completion for a request the gateway could not work; never raises."""
    tid = raw_tenant if is_valid_tenant_id(raw_tenant) else UNATTRIBUTED
    return CompletionPublished(
        tenant_id=tid,
        request_id=intake.request_id_of(body, fallback_id),
        error=ErrorInfo(
            code=ErrorCode.INTERNAL, message="internal error in the gateway", retryable=True
        ),
    )


async def refuse_request(
    deps: Deps, raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo
) -> CompletionPublished:
    """A request refused before it could be parsed (too large) or that crashed the
    gateway: audited, answered with an error completion."""
    tid = raw_tenant if is_valid_tenant_id(raw_tenant) else UNATTRIBUTED
    done = CompletionPublished(
        tenant_id=tid,
        request_id=intake.request_id_of(body, intake.message_id_of(headers)),
        error=info,
    )
    await deps.trail.record(
        tenant_id=tid,
        request_id=done.request_id,
        event_type=AuditEventType.API_CALL,
        action="completion.create",
        status=AuditStatus.FAILURE,
        error=info.message,
        details={"error_code": info.code.value, "raw_tenant": describe_raw(raw_tenant)},
    )
    return done


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()
    workers = deps.settings.workers
    settings = deps.settings

    @router.subscriber(
        subjects.ALL_QUEUED_REQUESTS,
        stream=stream(subjects.REQUESTS_STREAM),
        durable=SERVICE,
        # One message per fetch: nats-py 2.16's fetch(batch>1) can hold a message it
        # already received until the fetch times out, waiting for the rest of the batch
        # (measured: ~5 % of requests at a few per second delayed 0.2-0.9 s, with one or
        # two gateways). Workers still run `workers` requests at once; only the pulls
        # are one by one, a round trip each (thousands per second).
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        inbox_prefix=pull_inbox(SERVICE),
        max_workers=workers,
        config=durable_config(ack_wait_s=settings.model_timeout_s + 60),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_request(msg: NatsMessage) -> None:
        raw = msg.raw_message
        raw_tenant = subjects.tenant_from_subject(raw.subject, 1)
        fallback_id = intake.message_id_of(raw.headers)

        async def deliver(done: CompletionPublished) -> None:
            await publish_completion(deps, raw_tenant, done)

        if len(raw.data) > settings.max_request_bytes:  # intake refuses these; belt and braces
            info = ErrorInfo(code=ErrorCode.PAYLOAD_TOO_LARGE, message="request body too large")
            await deliver(await refuse_request(deps, raw_tenant, raw.headers or {}, b"", info))
            return
        try:
            await handle_request(deps, raw.subject, raw.data, deliver, fallback_id)
        except Exception:
            # Unexpected failure: JetStream redelivers (nack). On the last attempt the
            # client still gets an answer; the message then goes to the dead letters.
            if raw.metadata.num_delivered >= MAX_DELIVER:
                await deliver(failed_completion(raw_tenant, raw.data, fallback_id))
            raise

    def door(
        subject: str, action: str, max_workers: int, max_body_bytes: int, refusal: Refusal
    ) -> Door:
        return Door(subject, deps.trail, action, SERVICE, max_workers, max_body_bytes, refusal)

    async def refuse_as_completion(
        raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo
    ) -> bytes:
        done = await refuse_request(deps, raw_tenant, headers, body, info)
        return done.model_dump_json().encode()

    async def refuse_durable(
        raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo
    ) -> bytes:
        # The publisher's ack is an error (js.publish raises it), and the refusal is
        # also published as the request's completion, like every other refusal.
        done = await refuse_request(deps, raw_tenant, headers, body, info)
        await publish_completion(deps, raw_tenant, done)
        status = 413 if info.code is ErrorCode.PAYLOAD_TOO_LARGE else 500
        return durable.js_error(status, info.message)

    ask, most = "completion.create", settings.max_request_bytes

    @tenant_door(router, door(subjects.ALL_REQUESTS, ask, workers, most, refuse_durable))
    async def on_durable_request(subject: str, headers: dict[str, str], body: bytes) -> bytes:
        return await durable.queue(
            deps.broker.connection, settings.intake_timeout_s, subject, headers, body
        )

    @tenant_door(router, door(subjects.ALL_SYNC_REQUESTS, ask, workers, most, refuse_as_completion))
    async def on_sync_request(subject: str, headers: dict[str, str], body: bytes) -> bytes:
        done = await handle_request(deps, subject, body)
        return done.model_dump_json().encode()

    async def refuse_ingest(
        raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo
    ) -> bytes:
        tid = raw_tenant if is_valid_tenant_id(raw_tenant) else UNATTRIBUTED
        rid = intake.request_id_of(body, intake.message_id_of(headers))
        await _deny(deps, tid, rid, info, describe_raw(raw_tenant), AuditEventType.API_CALL)
        return error_reply(DocumentsIngested, tid, rid, info).model_dump_json().encode()

    @tenant_stream_door(
        router, door(subjects.ALL_STREAM_REQUESTS, ask, workers, most, refuse_as_completion)
    )
    async def on_stream_request(
        subject: str, headers: dict[str, str], body: bytes, send: Send
    ) -> bytes:
        work = streaming.streamed(
            deps.streams, deps.ports, deps.settings, deps.refusals, send
        )
        done = await handle_request(deps, subject, body, work=work)
        return done.model_dump_json().encode()

    # Every gateway: the one running the stream stops it. No answer is sent.
    @router.subscriber(subjects.ALL_CANCELS, no_reply=True)
    async def on_cancel(msg: NatsMessage) -> None:
        streaming.cancel(deps.streams, msg.raw_message.subject, msg.raw_message.data)

    ingest_workers, ingest_most = max(1, workers // 8), settings.max_ingest_bytes

    @tenant_door(
        router,
        door(subjects.ALL_INGESTS, "documents.ingest", ingest_workers, ingest_most, refuse_ingest),
    )
    async def on_ingest(subject: str, headers: dict[str, str], body: bytes) -> bytes:
        result = await handle_ingest(deps, subject, body)
        return result.model_dump_json().encode()

    return router
