"""gateway's handlers: the tenant-facing doors, the durable request stream, cancels.

Each handler is a module-level function of the message and the Deps; HANDLERS is the one
table that registers them. The work itself is in requests.py (plain functions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.nats import NatsBroker, NatsMessage, NatsRouter, PullSub

from services.gateway import durable, intake, requests, streaming
from services.gateway.ports import Ports
from services.gateway.refusals import RecentRefusals
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import TenantCache
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import MAX_DELIVER, durable_config, pull_inbox, stream
from shared.feeds import TenantConfigFeed
from shared.intake import Refusal as IntakeRefusal
from shared.intake import error_reply
from shared.messages.audit import AuditEventType
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CancelCompletion, CompletionPublished, CreateCompletion
from shared.messages.retrieval import DocumentsIngested, IngestDocuments
from shared.payloads import declare_payload
from shared.replies import Door, Refusal, Send, tenant_door, tenant_stream_door
from shared.service import Handlers, Subscriber
from shared.tenancy import describe_raw

SERVICE = "gateway"


@dataclass(frozen=True)
class Deps:
    settings: GatewaySettings
    broker: NatsBroker
    ports: Ports
    trail: AuditTrail
    cache: TenantCache | None = None
    feed: TenantConfigFeed | None = None  # keeps `cache` current; stopped at close
    refusals: RecentRefusals = field(default_factory=RecentRefusals)
    # Streamed requests in progress, by (tenant, request id): what a cancel stops.
    streams: streaming.Streams = field(default_factory=dict)

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()


async def work_request(msg: NatsMessage, deps: Deps) -> None:
    """A durable request, pulled from the request stream; acked once answered."""
    raw = msg.raw_message
    raw_tenant = subjects.tenant_from_subject(raw.subject, 1)
    fallback_id = intake.message_id_of(raw.headers)

    async def deliver(done: CompletionPublished) -> None:
        await requests.publish_completion(deps, raw_tenant, done)

    if len(raw.data) > deps.settings.max_request_bytes:  # intake refuses these; belt and braces
        info = ErrorInfo(code=ErrorCode.PAYLOAD_TOO_LARGE, message="request body too large")
        await deliver(await requests.refuse(deps, raw_tenant, raw.headers or {}, b"", info))
        return
    try:
        await requests.complete(deps, raw_tenant, raw.data, deliver, fallback_id)
    except Exception:
        # Unexpected failure: JetStream redelivers (nack). On the last attempt the
        # client still gets an answer; the message then goes to the dead letters.
        if raw.metadata.num_delivered >= MAX_DELIVER:
            await deliver(requests.crashed(raw_tenant, raw.data, fallback_id))
        raise


async def queue_request(raw_tenant: str, headers: dict[str, str], body: bytes, deps: Deps) -> bytes:
    """A durable request at the door: stored in the request stream, JetStream's ack back."""
    nc, timeout_s = deps.broker.connection, deps.settings.intake_timeout_s
    return await durable.queue(nc, timeout_s, raw_tenant, headers, body)


async def answer_request(
    raw_tenant: str, headers: dict[str, str], body: bytes, deps: Deps
) -> bytes:
    done = await requests.complete(deps, raw_tenant, body)
    return done.model_dump_json().encode()


async def stream_request(
    raw_tenant: str, headers: dict[str, str], body: bytes, send: Send, deps: Deps
) -> bytes:
    work = requests.streamed(deps, send)
    done = await requests.complete(deps, raw_tenant, body, work=work)
    return done.model_dump_json().encode()


async def cancel_stream(msg: NatsMessage, deps: Deps) -> None:
    """Every gateway hears a cancel: the one running the stream stops it. No answer."""
    streaming.cancel(deps.streams, msg.raw_message.subject, msg.raw_message.data)


async def ingest(raw_tenant: str, headers: dict[str, str], body: bytes, deps: Deps) -> bytes:
    result = await requests.ingest(deps, raw_tenant, body)
    return result.model_dump_json().encode()


# What a door answers when it refused a message before its handler (too large) or the
# handler crashed: (raw tenant, headers, body, error) -> the reply's bytes.
async def refuse_answer(
    raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo, deps: Deps
) -> bytes:
    done = await requests.refuse(deps, raw_tenant, headers, body, info)
    return done.model_dump_json().encode()


async def refuse_queued(
    raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo, deps: Deps
) -> bytes:
    # The publisher's ack is an error (js.publish raises it), and the refusal is also
    # published as the request's completion, like every other refusal.
    done = await requests.refuse(deps, raw_tenant, headers, body, info)
    await requests.publish_completion(deps, raw_tenant, done)
    status = 413 if info.code is ErrorCode.PAYLOAD_TOO_LARGE else 500
    return durable.js_error(status, info.message)


async def refuse_ingest(
    raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo, deps: Deps
) -> bytes:
    rid = intake.request_id_of(body, intake.message_id_of(headers))
    refusal = IntakeRefusal(requests.attributed(raw_tenant), rid, info, denied=False)
    raw = describe_raw(raw_tenant)
    await requests.deny_ingest(deps, refusal, info, raw, AuditEventType.API_CALL)
    return error_reply(DocumentsIngested, refusal, info).model_dump_json().encode()


DoorHandler = Callable[[str, dict[str, str], bytes, Deps], Awaitable[bytes]]
StreamDoorHandler = Callable[[str, dict[str, str], bytes, Send, Deps], Awaitable[bytes]]
DoorRefusal = Callable[[str, dict[str, str], bytes, ErrorInfo, Deps], Awaitable[bytes]]


@dataclass(frozen=True)
class TenantDoor:
    """A request/reply subscriber on a tenant-facing subject (shared.replies.tenant_door)."""

    subject: str
    handle: DoorHandler
    refuse: DoorRefusal
    payload: type[Any]
    action: str = requests.COMPLETE
    ingest: bool = False  # ingest doors run fewer workers and take larger bodies


@dataclass(frozen=True)
class StreamDoor:
    """A tenant-facing subject answered with a stream (shared.replies.tenant_stream_door)."""

    subject: str
    handle: StreamDoorHandler
    refuse: DoorRefusal
    payload: type[Any]
    action: str = requests.COMPLETE
    ingest: bool = False


@dataclass(frozen=True)
class GatewayHandlers(Handlers[Deps]):
    """The shared table plus what only the gateway has: tenant doors and the durable
    request stream's pull consumer. Their worker counts and body limits come from the
    settings, and a door audits a refused reply subject before any Deps exist, so the
    table is bound to both (`handlers`) before it builds a router."""

    doors: tuple[TenantDoor | StreamDoor, ...] = ()
    settings: GatewaySettings | None = None
    trail: AuditTrail | None = None

    def router(self, deps: Callable[[], Deps]) -> NatsRouter:
        if self.settings is None or self.trail is None:
            raise RuntimeError("bind the gateway's table first: handlers(settings, trail)")
        router = super().router(deps)
        for door in self.doors:
            _register_door(router, door, deps, self.settings, self.trail)
        _register_pull_consumer(router, deps, self.settings)
        return router


def handlers(settings: GatewaySettings, trail: AuditTrail) -> GatewayHandlers:
    """The gateway's table, bound to its settings and its audit trail."""
    return replace(HANDLERS, settings=settings, trail=trail)


def _register_door(
    router: NatsRouter,
    door: TenantDoor | StreamDoor,
    deps: Callable[[], Deps],
    settings: GatewaySettings,
    trail: AuditTrail,
) -> None:
    workers = max(1, settings.workers // 8) if door.ingest else settings.workers
    most = settings.max_ingest_bytes if door.ingest else settings.max_request_bytes

    async def refuse(
        raw_tenant: str, headers: dict[str, str], body: bytes, info: ErrorInfo
    ) -> bytes:
        return await door.refuse(raw_tenant, headers, body, info, deps())

    refusal: Refusal = refuse
    spec = Door(
        door.subject, trail, door.action, SERVICE, workers, most, refusal, payload=door.payload
    )
    if isinstance(door, StreamDoor):
        streamed_handle = door.handle

        async def work_streamed(
            raw_tenant: str, headers: dict[str, str], body: bytes, send: Send
        ) -> bytes:
            return await streamed_handle(raw_tenant, headers, body, send, deps())

        tenant_stream_door(router, spec)(work_streamed)
        return
    plain_handle = door.handle

    async def work(raw_tenant: str, headers: dict[str, str], body: bytes) -> bytes:
        return await plain_handle(raw_tenant, headers, body, deps())

    tenant_door(router, spec)(work)


def _register_pull_consumer(
    router: NatsRouter, deps: Callable[[], Deps], settings: GatewaySettings
) -> None:
    async def pulled(msg: NatsMessage) -> None:
        await work_request(msg, deps())

    declare_payload(pulled, CreateCompletion)
    router.subscriber(
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
        max_workers=settings.workers,
        config=durable_config(ack_wait_s=settings.model_timeout_s + 60),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )(pulled)


HANDLERS = GatewayHandlers(
    SERVICE,
    subscribers=(Subscriber(subjects.ALL_CANCELS, cancel_stream, payload=CancelCompletion),),
    doors=(
        TenantDoor(subjects.ALL_REQUESTS, queue_request, refuse_queued, CreateCompletion),
        TenantDoor(subjects.ALL_SYNC_REQUESTS, answer_request, refuse_answer, CreateCompletion),
        StreamDoor(subjects.ALL_STREAM_REQUESTS, stream_request, refuse_answer, CreateCompletion),
        TenantDoor(
            subjects.ALL_INGESTS,
            ingest,
            refuse_ingest,
            IngestDocuments,
            action=requests.INGEST,
            ingest=True,
        ),
    ),
)
