"""The dead-letter path: copy a message that cannot be processed to TENANTRY_DEADLETTER.

Two ways in: a message audit itself cannot parse (malformed event in a batch), and a
MAX_DELIVERIES advisory from nats-server about any durable consumer that gave up on a
message. Either way the original bytes and headers are republished to
`deadletter.<stream>.<consumer>` (kept 30 days, replayable) and an audit row records it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from faststream.nats import NatsBroker
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict

from shared import subjects
from shared.bus import publish_event
from shared.logging import get_logger
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.base import new_id
from shared.tenancy import UNATTRIBUTED, describe_raw, is_valid_tenant_id

log = get_logger("tenantry.audit.deadletter")

SERVICE = "audit"
ACTION = "message.dead_lettered"

# Tenantry's stream subjects carry the tenant as the second token (tenant.<tid>.…,
# evt.<tid>.…). Other subjects ($KV.<bucket>.<key>, …) are never attributed to a tenant.
TENANT_POSITION = 1
TENANT_SUBJECT_ROOTS = ("tenant", "evt")

# Headers added to the dead-letter copy; the original's own headers are kept beside them.
H_SUBJECT = "Tenantry-Original-Subject"
H_STREAM = "Tenantry-Original-Stream"
H_SEQUENCE = "Tenantry-Original-Sequence"
H_CONSUMER = "Tenantry-Consumer"
H_REASON = "Tenantry-Dead-Letter-Reason"

# The original's Nats-* headers are JetStream controls (Nats-Msg-Id, Nats-Expected-*,
# Nats-Rollup, Nats-TTL…) and must not steer the copy: the original's Nats-Msg-Id
# alone would make the dead-letter stream drop the copy as a duplicate.
_CONTROL_HEADER_PREFIX = "nats-"


class MaxDeliveriesAdvisory(BaseModel):
    """io.nats.jetstream.advisory.v1.max_deliver, as nats-server publishes it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int = 0


def deadletter_subject(stream: str, consumer: str) -> str:
    """deadletter.<stream>.<consumer>; names from the server are made valid tokens first."""

    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "unknown"

    return subjects.deadletter(safe(stream), safe(consumer))


def tenant_of(subject: str) -> str:
    if subject.split(".", 1)[0] not in TENANT_SUBJECT_ROOTS:
        return UNATTRIBUTED
    raw = subjects.tenant_from_subject(subject, TENANT_POSITION)
    return raw if is_valid_tenant_id(raw) else UNATTRIBUTED


def dead_letter_id(stream: str, consumer: str, sequence: int) -> str:
    """One id per (stream, consumer, message): a retried dead-lettering is de-duplicated."""
    digest = hashlib.sha256(f"{stream}/{consumer}/{sequence}".encode()).hexdigest()
    return f"dl-{digest[:32]}"


def _one_line(value: str) -> str:
    # A CR/LF in a header value would end the header block early (header injection).
    return " ".join(value.splitlines())


def copy_headers(
    original: Mapping[str, str] | None,
    *,
    subject: str,
    stream: str,
    consumer: str,
    sequence: int,
    reason: str,
) -> dict[str, str]:
    headers = {
        k: v
        for k, v in (original or {}).items()
        if not k.lower().startswith(_CONTROL_HEADER_PREFIX)
    }
    headers.update(
        {
            "Nats-Msg-Id": dead_letter_id(stream, consumer, sequence),
            H_SUBJECT: _one_line(subject),
            H_STREAM: _one_line(stream),
            H_SEQUENCE: str(sequence),
            H_CONSUMER: _one_line(consumer),
            H_REASON: _one_line(reason)[:500],
        }
    )
    return headers


def is_dead_letter_record(subject: str, data: bytes) -> bool:
    """Whether the message is itself our audit row about a dead letter.

    Such a row failing in turn (e.g. ClickHouse down) must not beget another row about
    it, and another about that: the copy is still kept, the chain stops here.
    """
    if not subject.endswith(".audit"):
        return False
    try:
        body = json.loads(data)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("action") == ACTION


def request_id_of(data: bytes) -> str:
    """The original's request_id when it has a usable one, for correlation; else a new id."""
    try:
        body = json.loads(data)
    except ValueError:
        return new_id()
    value = body.get("request_id") if isinstance(body, dict) else None
    try:
        return subjects.token(value) if isinstance(value, str) else new_id()
    except ValueError:
        return new_id()


def dead_letter_event(
    *, subject: str, data: bytes, stream: str, consumer: str, sequence: int, reason: str
) -> AuditRecorded:
    tenant_id = tenant_of(subject)
    return AuditRecorded(
        tenant_id=tenant_id,
        event_id=dead_letter_id(stream, consumer, sequence),
        request_id=request_id_of(data),
        event_type=AuditEventType.ERROR,
        service=SERVICE,
        action=ACTION,
        resource_type="message",
        resource_id=f"{stream}/{sequence}",
        status=AuditStatus.FAILURE,
        error=reason[:1_000],
        actor=SERVICE,
        details={
            "stream": stream,
            "consumer": consumer,
            "stream_seq": sequence,
            "deadletter_subject": deadletter_subject(stream, consumer),
            # The raw subject may hold an invalid (hostile) tenant token: store a preview.
            "subject": subject if tenant_id != UNATTRIBUTED else describe_raw(subject, 120),
        },
    )


async def dead_letter(
    broker: NatsBroker,
    *,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    stream: str,
    consumer: str,
    sequence: int,
    reason: str,
) -> None:
    """Copy the message to the dead-letter stream, then record it. Both are idempotent."""
    await broker.connection.jetstream().publish(
        deadletter_subject(stream, consumer),
        data,
        stream=subjects.DEADLETTER_STREAM,
        headers=copy_headers(
            headers,
            subject=subject,
            stream=stream,
            consumer=consumer,
            sequence=sequence,
            reason=reason,
        ),
    )
    log.warning(
        "message.dead_lettered",
        stream=stream,
        consumer=consumer,
        stream_seq=sequence,
        reason=reason[:200],
    )
    if is_dead_letter_record(subject, data):
        log.error("deadletter.record_dead_lettered", stream=stream, stream_seq=sequence)
        return
    event = dead_letter_event(
        subject=subject,
        data=data,
        stream=stream,
        consumer=consumer,
        sequence=sequence,
        reason=reason,
    )
    await publish_event(broker, event, subjects.audit_event(event.tenant_id))


async def on_advisory(broker: NatsBroker, advisory: MaxDeliveriesAdvisory) -> None:
    """Fetch the message the advisory names, by stream sequence, and dead-letter it."""
    js = broker.connection.jetstream()
    reason = f"max deliveries reached ({advisory.deliveries})"
    try:
        original = await js.get_msg(advisory.stream, seq=advisory.stream_seq)
    except NotFoundError:
        # Gone already (max_age, or acked meanwhile): nothing to copy, but keep a record.
        log.error("deadletter.message_gone", stream=advisory.stream, seq=advisory.stream_seq)
        event = dead_letter_event(
            subject="",
            data=b"",
            stream=advisory.stream,
            consumer=advisory.consumer,
            sequence=advisory.stream_seq,
            reason=f"{reason}; the message is no longer in the stream",
        )
        await publish_event(broker, event, subjects.audit_event(event.tenant_id))
        return
    await dead_letter(
        broker,
        subject=original.subject or "",
        data=original.data or b"",
        headers=original.headers,
        stream=advisory.stream,
        consumer=advisory.consumer,
        sequence=advisory.stream_seq,
        reason=reason,
    )
