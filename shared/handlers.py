"""A service's handler table: module-level `(msg, deps)` handlers, registered in one place.

`Rpc` entries are request/reply verbs on svc.<service>.<verb>.<tid>: the shared intake
check (shared.intake.admit), the handler, a typed reply on a platform inbox, whatever
happens. `Subscriber` entries are the rest (events, streams, platform-scoped verbs),
which take the raw message and answer for themselves. shared.service.compose builds a
Service from a table and a composition root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from faststream.nats import NatsMessage, NatsRouter

from shared import subjects
from shared.audit import AuditTrail
from shared.intake import Refusal, admit, error_reply, reply_ok
from shared.logging import bound, get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import Envelope, ErrorCode, ErrorInfo, Reply
from shared.payloads import declare_payload
from shared.replies import publish_reply, refuse_reply, reply_allowed
from shared.tenancy import describe_raw

Q = TypeVar("Q", bound=Envelope)
P = TypeVar("P", bound=Reply)

log = get_logger("tenantry.service")


class HasTrail(Protocol):
    @property
    def trail(self) -> AuditTrail: ...


D = TypeVar("D", bound=HasTrail)


@dataclass(frozen=True)
class Rpc(Generic[Q, P, D]):
    """A request/reply verb on svc.<service>.<verb>.<tid>: `handle(request, deps)`."""

    verb: str
    request: type[Q]
    reply: type[P]
    handle: Callable[[Q, D], Awaitable[P]]
    # Handlers run concurrently: one slow call (a model, a disk) must not hold up every
    # other tenant's requests behind it.
    max_workers: int = 64


@dataclass(frozen=True)
class Subscriber(Generic[D]):
    """Any other subscriber (events, streams, platform-scoped verbs): the raw message in,
    `handle(msg, deps)`, answering for itself. `payload` documents the message."""

    subject: str
    handle: Callable[[NatsMessage, D], Awaitable[None]]
    payload: type[Envelope] | type[Any] | None = None
    queue: str = ""  # a queue group: one replica handles each message
    max_workers: int = 1


@dataclass(frozen=True)
class Handlers(Generic[D]):
    """A service's one handler table: every subscriber it has, and what it handles."""

    service: str
    rpcs: Sequence[Rpc[Any, Any, D]] = ()
    subscribers: Sequence[Subscriber[D]] = ()

    def router(self, deps: Callable[[], D]) -> NatsRouter:
        """Subscribers for every entry; `deps()` is called per message (the Deps are
        built at start, before any subscriber runs)."""
        router = NatsRouter()
        for entry in self.rpcs:
            _rpc_subscriber(router, self.service, entry, deps)
        for sub in self.subscribers:
            _raw_subscriber(router, sub, deps)
        return router


def _rpc_subscriber(
    router: NatsRouter, service: str, entry: Rpc[Q, P, D], deps: Callable[[], D]
) -> None:
    handle, request_type, reply_type = entry.handle, entry.request, entry.reply
    action = f"{service}.{entry.verb}"

    async def handler(msg: NatsMessage) -> None:
        raw = msg.raw_message
        d = deps()
        if raw.reply and not reply_allowed(raw.reply, None):
            await refuse_reply(d.trail, None, raw.reply, action, raw.subject)
            return
        reply = await _serve(raw.subject, raw.data, d, handle, request_type, reply_type, action)
        if raw.reply:
            await publish_reply(raw, reply.model_dump_json().encode())

    declare_payload(handler, request_type, reply_type)
    # no_reply: the answer is published above, and only on a platform inbox (see
    # shared.replies): the reply subject is the sender's choice, not a permission.
    router.subscriber(
        subjects.service_all(service, entry.verb),
        queue=service,
        max_workers=entry.max_workers,
        no_reply=True,
        description=f"{action}: {request_type.__name__}, answered with {reply_type.__name__}.",
    )(handler)


def _raw_subscriber(router: NatsRouter, sub: Subscriber[D], deps: Callable[[], D]) -> None:
    handle = sub.handle

    async def handler(msg: NatsMessage) -> None:
        await handle(msg, deps())

    declare_payload(handler, sub.payload)
    router.subscriber(sub.subject, queue=sub.queue, max_workers=sub.max_workers, no_reply=True)(
        handler
    )


async def _serve(
    subject: str,
    body: bytes,
    deps: D,
    handle: Callable[[Q, D], Awaitable[P]],
    request_type: type[Q],
    reply_type: type[P],
    action: str,
) -> P:
    """Every request gets a typed reply, even a malformed one or one whose handler
    crashed, so callers never wait out a timeout for an answer that will not come."""
    raw_tid = subjects.tenant_from_subject(subject, 3)
    request = admit(raw_tid, body, request_type)
    if isinstance(request, Refusal):
        if request.denied:
            await deps.trail.record_for(
                request,
                event_type=AuditEventType.ACCESS_DENIED,
                action=action,
                status=AuditStatus.FAILURE,
                error=request.error.message,
                details=(
                    None if request.tenant_id == raw_tid else {"tenant_id": describe_raw(raw_tid)}
                ),
            )
        return error_reply(reply_type, request, request.error)
    with bound(request.tenant_id, request.request_id):
        try:
            return await handle(request, deps)
        except Exception:
            # The caller gets a generic error (exception text may hold secrets); the
            # traceback goes to the service log for the operator.
            log.exception("rpc.failed", verb=action.split(".", 1)[1])
            return reply_ok(
                reply_type,
                request,
                error=ErrorInfo(
                    code=ErrorCode.INTERNAL,
                    message=f"internal error in the {action.split('.', 1)[0]} service",
                    retryable=True,
                ),
            )
