"""Driving a service's handler table without a broker: the subscriber functions
shared.handlers registers, called with a stand-in message; replies and audit events
land in lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from faststream.nats import NatsBroker, NatsMessage

from shared.audit import AuditTrail
from shared.messages.audit import AuditRecorded
from shared.service import Handlers
from tests.support.fakebus import FakeBroker


def recording_trail(service: str) -> tuple[AuditTrail, list[AuditRecorded]]:
    """An AuditTrail whose events are kept in the returned list instead of published."""
    broker = FakeBroker()
    events: list[AuditRecorded] = []

    class _Kept(list[Any]):
        def append(self, item: Any) -> None:
            events.append(item[0])

    broker.js.published = _Kept()
    return AuditTrail(cast(NatsBroker, broker), service), events


@dataclass
class FakeClient:
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((subject, data))


@dataclass
class RawMsg:
    subject: str
    data: bytes
    reply: str
    _client: FakeClient
    headers: dict[str, str] | None = None


@dataclass
class Msg:
    raw_message: RawMsg


class InMemoryBus:
    """Delivers a message to the table's subscriber for its subject, as the broker would."""

    def __init__(self, handlers: Handlers[Any], deps: Any) -> None:
        router = handlers.router(lambda: deps)
        self._subs = {
            str(getattr(s.subject, "template", s.subject)): s.calls[0].handler._original_call
            for s in router.subscribers
        }
        self.client = FakeClient()

    async def deliver(self, pattern: str, subject: str, body: bytes, reply: str = "") -> None:
        msg = Msg(RawMsg(subject, body, reply, self.client))
        await self._subs[pattern](cast(NatsMessage, msg))
