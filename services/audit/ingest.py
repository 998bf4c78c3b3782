"""Turning a fetched batch of JetStream messages into events, one message at a time.

Each message is parsed on its own so one malformed event cannot poison its batch:
good ones become events, bad ones are returned with a reason for the dead-letter path.
No broker or ClickHouse here, so it is testable with plain objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import ValidationError

from shared import subjects
from shared.messages.base import Envelope
from shared.service import summarise_validation

E = TypeVar("E", bound=Envelope)
M = TypeVar("M", bound="RawEvent")

# evt.<tid>.<kind>: the tenant token is the second one.
EVENT_TENANT_POSITION = 1


class RawEvent(Protocol):
    """What ingest needs of a message (nats.aio.msg.Msg has both)."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True)
class Rejected(Generic[M]):
    message: M
    reason: str


@dataclass
class ParsedBatch(Generic[M, E]):
    events: list[E] = field(default_factory=list)
    rejected: list[Rejected[M]] = field(default_factory=list)
    duplicates: int = 0


def parse_batch(messages: Sequence[M], event_type: type[E]) -> ParsedBatch[M, E]:
    parsed: ParsedBatch[M, E] = ParsedBatch()
    seen: set[str] = set()
    for message in messages:
        try:
            event = event_type.model_validate_json(message.data)
        except ValidationError as exc:
            # summarise_validation names fields and reasons only; it never echoes input.
            reason = f"malformed {event_type.__name__}: {summarise_validation(exc)}"
            parsed.rejected.append(Rejected(message, reason))
            continue
        subject_tenant = subjects.tenant_from_subject(message.subject, EVENT_TENANT_POSITION)
        if event.tenant_id != subject_tenant:
            # Subject permissions key on the subject's tenant token; a body claiming
            # another tenant must not be attributed to either.
            parsed.rejected.append(Rejected(message, "tenant_id does not match the subject"))
            continue
        rows = _with_carried(event)
        if isinstance(rows, str):
            parsed.rejected.append(Rejected(message, rows))
            continue
        for row in rows:
            if row.event_id in seen:
                # JetStream de-duplicates on Nats-Msg-Id; this only catches publishers
                # that did not set it and repeated an event inside one batch.
                parsed.duplicates += 1
                continue
            seen.add(row.event_id)
            parsed.events.append(row)
    return parsed


def _with_carried(event: E) -> list[E] | str:
    """The event and the rows it carries (a request's trail, AuditRecorded.carried), each
    stored as its own row; or why the message is refused. A carried row must be the
    carrier's tenant's and carry nothing itself: one message cannot speak for another
    tenant or hide a tree of rows."""
    carried = getattr(event, "carried", None)
    if not carried:
        return [event]
    for row in carried:
        if row.tenant_id != event.tenant_id:
            return "a carried row names another tenant"
        if row.carried:
            return "a carried row carries rows of its own"
    return [event, *carried]
