"""The runtime every service shares: start-up order, request/reply handlers, signals."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import uvloop
from faststream.nats import NatsBroker, NatsMessage, NatsRouter
from pydantic import ValidationError

from shared import subjects
from shared.audit import AuditTrail
from shared.bus import ensure_topology
from shared.grants import GRANTS
from shared.logging import bound, configure_logging, get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import Envelope, ErrorCode, ErrorInfo, Reply, new_id
from shared.natscompat import patch_pull_fetch_timeouts
from shared.replies import publish_reply, refuse_reply, reply_allowed
from shared.settings import TenantrySettings
from shared.tenancy import UNATTRIBUTED, describe_raw, is_valid_tenant_id

Q = TypeVar("Q", bound=Envelope)
P = TypeVar("P", bound=Reply)
Hook = Callable[[], Awaitable[None]]

log = get_logger("tenantry.service")


@dataclass
class Service:
    """A broker plus the outside clients it opens at start and closes at stop."""

    name: str
    settings: TenantrySettings
    broker: NatsBroker
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    # Run after the subscribers stopped but while still connected (e.g. to release a
    # lease held in KV); on_stop hooks run after the connection is closed.
    on_drained: list[Hook] = field(default_factory=list)

    async def start(self) -> None:
        patch_pull_fetch_timeouts()  # without it, pulled messages can arrive 30 s late
        self._add_health()
        await self.broker.connect()
        grant = GRANTS.get(self.name)
        await ensure_topology(
            self.broker.connection.jetstream(),
            streams=grant.streams if grant else None,
            buckets=(*grant.buckets, *grant.reads_buckets) if grant else None,
        )
        for hook in self.on_start:
            await hook()
        # Subscribers start last, so no message arrives before the dependencies are ready.
        await self.broker.start()
        # nats-py's flush() writes its PING ahead of SUB commands still buffered, so one
        # flush can return before the server knows our subscriptions (measured: 4-9 "no
        # responders" per 100 fresh starts). A second flush orders after them.
        await self.broker.connection.flush()
        await self.broker.connection.flush()
        log.info("service.started", service=self.name)

    def _add_health(self) -> None:
        # Every replica answers, so a launcher can wait until each service is ready.
        @self.broker.subscriber(subjects.health(self.name))
        async def health(_: NatsMessage) -> bytes:
            return self.name.encode()

    async def stop(self) -> None:
        for subscriber in self.broker.subscribers:
            await subscriber.stop()  # no new messages; in-flight handlers finish
        for hook in self.on_drained:
            await hook()
        await self.broker.stop()
        for hook in reversed(self.on_stop):
            await hook()
        log.info("service.stopped", service=self.name)


def run(service: Service) -> None:
    """Entry point of `python -m services.<name>`: run until SIGINT/SIGTERM."""
    from shared import health  # the process's /livez, /readyz and /metrics endpoint

    configure_logging(service.settings.log_level, service.settings.log_format, service.name)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with health.serving(service) as status:
            await service.start()
            status.state = health.State.READY
            # Everything built at start-up (imports, SDK models, clients) lives as long as
            # the process: freeze it out of the garbage collector, whose full passes over it
            # took 30-100 ms (llm: 180k objects) and landed on whichever request was in flight.
            gc.collect()
            gc.freeze()
            try:
                await stop.wait()
            finally:
                status.state = health.State.STOPPING  # no new traffic while draining
                await service.stop()

    # uvloop: the event loop and socket I/O in C. Every request crosses seven processes
    # and ~14 NATS round trips, so loop overhead is paid many times over (bench: CPU
    # per request and added latency, bench/pipeline.py).
    uvloop.run(main())


def error_reply(reply_type: type[P], tenant_id: str, request_id: str, info: ErrorInfo) -> P:
    return reply_type(tenant_id=tenant_id, request_id=request_id, error=info)


def rpc(
    router: NatsRouter,
    service: str,
    verb: str,
    request_type: type[Q],
    reply_type: type[P],
    trail: AuditTrail,
    max_workers: int = 64,
) -> Callable[[Callable[[Q], Awaitable[P]]], Callable[[Q], Awaitable[P]]]:
    """Register `fn` as the queue-group request/reply handler of svc.<service>.<verb>.*.

    Handlers run concurrently (`max_workers`): one slow call (a model, a disk) must
    not hold up every other tenant's requests behind it.

    Every request gets a typed reply, even a malformed one or one whose handler
    crashed, so callers never wait out a timeout for an answer that will not come.
    The subject's tenant token must match the message's tenant_id.
    """

    def decorate(fn: Callable[[Q], Awaitable[P]]) -> Callable[[Q], Awaitable[P]]:
        # no_reply: the answer is published below, and only on a platform inbox (see
        # shared.replies): the reply subject is the sender's choice, not a permission.
        @router.subscriber(
            subjects.service_all(service, verb),
            queue=service,
            max_workers=max_workers,
            no_reply=True,
        )
        async def handler(msg: NatsMessage) -> None:
            raw = msg.raw_message
            if raw.reply and not reply_allowed(raw.reply, None):
                await refuse_reply(trail, None, raw.reply, f"{service}.{verb}", raw.subject)
                return
            reply = await _serve(msg, fn, service, verb, request_type, reply_type, trail)
            if raw.reply:
                await publish_reply(raw, reply.model_dump_json().encode())

        return fn

    return decorate


async def _serve(
    msg: NatsMessage,
    fn: Callable[[Q], Awaitable[P]],
    service: str,
    verb: str,
    request_type: type[Q],
    reply_type: type[P],
    trail: AuditTrail,
) -> P:
    raw_tid = subjects.tenant_from_subject(msg.raw_message.subject, 3)
    if not is_valid_tenant_id(raw_tid):
        await trail.record(
            tenant_id=UNATTRIBUTED,
            request_id=new_id(),
            event_type=AuditEventType.ACCESS_DENIED,
            action=f"{service}.{verb}",
            status=AuditStatus.FAILURE,
            error="invalid tenant id in subject",
            details={"tenant_id": describe_raw(raw_tid)},
        )
        return error_reply(
            reply_type,
            UNATTRIBUTED,
            new_id(),
            ErrorInfo(code=ErrorCode.INVALID_TENANT, message="invalid tenant id in subject"),
        )
    try:
        request = request_type.model_validate_json(msg.body)
    except ValidationError as exc:
        return error_reply(
            reply_type,
            raw_tid,
            new_id(),
            ErrorInfo(
                code=ErrorCode.MALFORMED_REQUEST,
                message=f"malformed {request_type.__name__}: {summarise_validation(exc)}",
            ),
        )
    if request.tenant_id != raw_tid:
        await trail.record(
            tenant_id=raw_tid,
            request_id=request.request_id,
            event_type=AuditEventType.ACCESS_DENIED,
            action=f"{service}.{verb}",
            status=AuditStatus.FAILURE,
            error="message tenant_id does not match the subject's tenant",
        )
        return error_reply(
            reply_type,
            raw_tid,
            request.request_id,
            ErrorInfo(
                code=ErrorCode.INVALID_TENANT,
                message="message tenant_id does not match the subject's tenant",
            ),
        )
    with bound(request.tenant_id, request.request_id):
        try:
            return await fn(request)
        except Exception:
            # The caller gets a generic error (exception text may hold secrets); the
            # traceback goes to the service log for the operator.
            log.exception("rpc.failed", verb=verb)
            return error_reply(
                reply_type,
                request.tenant_id,
                request.request_id,
                ErrorInfo(
                    code=ErrorCode.INTERNAL,
                    message=f"internal error in the {service} service",
                    retryable=True,
                ),
            )


def summarise_validation(exc: ValidationError) -> str:
    """Field paths and reasons only: pydantic's default message echoes the input."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def reply_ok(reply_type: type[P], request: Envelope, **fields: object) -> P:
    return reply_type(tenant_id=request.tenant_id, request_id=request.request_id, **fields)
