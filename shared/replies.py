"""Where the platform may answer: the one check every subscriber applies to a reply subject.

NATS publish permissions do not cover reply subjects: a client may send a request with
any reply subject it likes, and a service that answers it publishes there with the
service's own (broad) rights. Without this check a tenant could make the gateway write
into another tenant's completions or inboxes, or into a stream it has no rights on
(a confused deputy). So:

- a message that arrived on a tenant's subject (tenant.<tid>.…) is answered only on a
  reply subject under that tenant's own inbox prefix, `_TINBOX.<tid>.`;
- a message on a platform subject (svc.…, which tenants cannot publish on) is answered
  only on a platform inbox, `_INBOX.…`;
- anything else is not answered: the reply is dropped and an access_denied audit row
  names the attempt. The request itself is not worked (nobody could read the answer,
  and working it would spend the tenant's budget for nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream.nats import NatsMessage, NatsRouter
from nats.aio.msg import Msg

from shared import subjects
from shared.audit import AuditTrail
from shared.logging import get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo, new_id
from shared.payloads import declare_payload
from shared.tenancy import UNATTRIBUTED, describe_raw, is_valid_tenant_id

log = get_logger("tenantry.replies")

_FORBIDDEN_CHARS = frozenset("*> \t\r\n")
MAX_REPLY_SUBJECT = 256  # nats-py's inboxes are ~60 characters

# A tenant-facing handler: (the subject's tenant token, headers, body) -> the reply's
# bytes. The door has read the token already (to check the reply subject): passed on,
# not read again.
Handler = Callable[[str, dict[str, str], bytes], Awaitable[bytes]]
# Audits and builds the typed error reply for a message the handler refused or crashed on.
Refusal = Callable[[str, dict[str, str], bytes, ErrorInfo], Awaitable[bytes]]


def reply_allowed(reply: str, tenant_token: str | None) -> bool:
    """True if the platform may publish an answer on `reply`.

    `tenant_token` is the tenant token of the subject the message arrived on, or None
    for a platform subject. The tenant token need not be a valid tenant id (a refusal
    of a bad id still goes back to whoever asked in that token's own namespace)."""
    if not reply or len(reply) > MAX_REPLY_SUBJECT or _FORBIDDEN_CHARS & set(reply):
        return False
    if any(not part for part in reply.split(".")):
        return False  # empty tokens ("a..b", trailing dot) are not subjects
    if tenant_token is None:
        prefix = subjects.PLATFORM_INBOX_ROOT + "."
    else:
        try:
            prefix = subjects.tenant_reply_prefix(tenant_token)
        except ValueError:
            return False
    return reply.startswith(prefix) and len(reply) > len(prefix)


def describe_reply(reply: str) -> str:
    """The attempted reply subject, for an audit row: printable and bounded."""
    return describe_raw(reply, limit=MAX_REPLY_SUBJECT)


async def refuse_reply(
    trail: AuditTrail, tenant_token: str | None, reply: str, action: str, subject: str
) -> None:
    """Audit a reply subject the platform will not answer on (the caller drops it)."""
    tenant_id = tenant_token if tenant_token and is_valid_tenant_id(tenant_token) else None
    log.warning("reply.refused", action=action, tenant_id=tenant_id or UNATTRIBUTED)
    await trail.record(
        tenant_id=tenant_id or UNATTRIBUTED,
        request_id=new_id(),
        event_type=AuditEventType.ACCESS_DENIED,
        action=action,
        status=AuditStatus.FAILURE,
        error="reply subject outside the sender's own inbox prefix; not answered",
        resource_type="reply_subject",
        details={
            "reply_subject": describe_reply(reply),
            "subject": describe_raw(subject, limit=MAX_REPLY_SUBJECT),
            "allowed_prefix": (
                subjects.tenant_reply_prefix(tenant_token)
                if tenant_token and tenant_token == tenant_id
                else subjects.PLATFORM_INBOX_ROOT + "."
            ),
        },
    )


async def publish_reply(received: Msg, data: bytes) -> None:
    """Answer on the received message's reply subject, which the caller has checked.
    (Msg.respond would echo the request's headers back, Nats-Msg-Id included.)"""
    await received._client.publish(received.reply, data)


# A streaming handler: (tenant token, headers, body, send) -> the final answer's bytes; `send`
# publishes an intermediate message on the same (checked) reply subject.
Send = Callable[[bytes], Awaitable[None]]
StreamHandler = Callable[[str, dict[str, str], bytes, Send], Awaitable[bytes]]


@dataclass(frozen=True)
class Door:
    """A tenant-facing subject (tenant.*.…) and how its messages are admitted."""

    subject: str
    trail: AuditTrail
    action: str
    queue: str
    max_workers: int
    max_body_bytes: int
    refusal: Refusal
    tenant_position: int = 1
    payload: type[Any] | None = None  # what travels here, for the AsyncAPI documents


def tenant_door(router: NatsRouter, door: Door) -> Callable[[Handler], Handler]:
    """Register a request/reply subscriber on a tenant-facing subject.

    Every message gets exactly one answer on an allowed reply subject: the handler's,
    or a typed error if the body is over `max_body_bytes` (refused before parsing) or
    the handler crashed. A message whose reply subject is not the sender's own inbox
    is not worked and not answered, only audited."""

    def decorate(fn: Handler) -> Handler:
        async def work(token: str, raw: Msg, _: Send) -> bytes:
            return await fn(token, raw.headers or {}, raw.data)

        _subscribe(router, door, work)
        return fn

    return decorate


def tenant_stream_door(router: NatsRouter, door: Door) -> Callable[[StreamHandler], StreamHandler]:
    """tenant_door for a streamed answer: any number of messages, then the final one,
    all on the same checked reply subject."""

    def decorate(fn: StreamHandler) -> StreamHandler:
        async def work(token: str, raw: Msg, send: Send) -> bytes:
            return await fn(token, raw.headers or {}, raw.data, send)

        _subscribe(router, door, work)
        return fn

    return decorate


def _subscribe(
    router: NatsRouter, door: Door, work: Callable[[str, Msg, Send], Awaitable[bytes]]
) -> None:
    trail, action, refusal = door.trail, door.action, door.refusal
    max_body_bytes = door.max_body_bytes

    async def handler(msg: NatsMessage) -> None:
        raw = msg.raw_message
        token = subjects.tenant_from_subject(raw.subject, door.tenant_position)
        reply = raw.reply or ""
        if reply and not reply_allowed(reply, token):
            await refuse_reply(trail, token, reply, action, raw.subject)
            return

        async def send(data: bytes) -> None:
            if reply:
                await publish_reply(raw, data)

        headers = raw.headers or {}
        if len(raw.data) > max_body_bytes:
            info = ErrorInfo(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"message body is {len(raw.data)} bytes; the limit is {max_body_bytes}",
            )
            answer = await refusal(token, headers, b"", info)
        else:
            try:
                answer = await work(token, raw, send)
            except Exception:
                # The sender still gets an answer now (no redelivery on this path); the
                # traceback stays in the service log.
                log.exception("door.failed", action=action)
                info = ErrorInfo(
                    code=ErrorCode.INTERNAL, message="internal error; please retry", retryable=True
                )
                answer = await refusal(token, headers, raw.data, info)
        await send(answer)

    declare_payload(handler, door.payload)
    # no_reply: FastStream would publish the return value to whatever reply subject
    # came in; answers go out above, only after the check.
    router.subscriber(door.subject, queue=door.queue, max_workers=door.max_workers, no_reply=True)(
        handler
    )
