"""A stand-in for the broker's nats-py connection in unit tests: records what is
published to JetStream, and serves one stored message by sequence."""

from __future__ import annotations

from typing import Any

from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from shared.messages.audit import AuditRecorded

Published = tuple[Any, str, dict[str, Any]]


class FakeJs:
    def __init__(self, stored: RawStreamMsg | None = None) -> None:
        self.stored = stored
        self.published: list[Published] = []

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> None:
        # Audit events come back as the AuditRecorded they encode, anything else as bytes.
        body: Any = payload
        try:
            body = AuditRecorded.model_validate_json(payload)
        except ValidationError:
            pass
        self.published.append((body, subject, kwargs))

    async def get_msg(self, stream: str, seq: int) -> RawStreamMsg:
        if self.stored is None:
            raise NotFoundError
        return self.stored


class FakeBroker:
    """Duck-types NatsBroker.connection (a nats-py Client) for shared.bus.publish_event."""

    def __init__(self, stored: RawStreamMsg | None = None) -> None:
        self.js = FakeJs(stored)
        self.published = self.js.published
        self.connection = self

    def jetstream(self) -> FakeJs:
        return self.js
