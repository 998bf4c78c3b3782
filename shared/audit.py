"""How every service records audit events: a typed event, published durably to JetStream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypedDict

from faststream.nats import NatsBroker
from typing_extensions import Unpack

from shared import subjects
from shared.bus import publish_event
from shared.messages.audit import (
    MAX_CARRIED,
    AuditEventType,
    AuditRecorded,
    AuditStatus,
    DetailValue,
)


class Correlated(Protocol):
    """A message (or a refusal of one): the tenant and request an event is about."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def request_id(self) -> str: ...


class RowFields(TypedDict, total=False):
    """What a row may say beyond its tenant, request, event type and action."""

    status: AuditStatus
    resource_type: str
    resource_id: str
    error: str | None
    actor: str
    client_ip: str | None
    user_agent: str | None
    details: dict[str, DetailValue] | None
    carried: Sequence[AuditRecorded]


class AuditTrail:
    """One per service; `record` publishes an AuditRecorded that audit writes to ClickHouse.

    `build` makes the event without publishing it: a row a caller carries in its own
    event (a request's trail, see AuditRecorded.carried). The `_for` forms take the
    tenant and request from the message being handled."""

    def __init__(self, broker: NatsBroker, service: str) -> None:
        self._broker = broker
        self._service = service

    def build(
        self,
        *,
        tenant_id: str,
        request_id: str,
        event_type: AuditEventType,
        action: str,
        **fields: Unpack[RowFields],
    ) -> AuditRecorded:
        error = fields.get("error")
        return AuditRecorded(
            tenant_id=tenant_id,
            request_id=request_id,
            event_type=event_type,
            service=self._service,
            action=action,
            status=fields.get("status", AuditStatus.SUCCESS),
            resource_type=fields.get("resource_type", ""),
            resource_id=fields.get("resource_id", "")[:200],
            error=error[:1_000] if error else None,
            actor=fields.get("actor") or self._service,
            client_ip=fields.get("client_ip"),
            user_agent=fields.get("user_agent"),
            details=fields.get("details") or {},
            carried=list(fields.get("carried", ())[:MAX_CARRIED]),
        )

    def build_for(
        self,
        msg: Correlated,
        *,
        event_type: AuditEventType,
        action: str,
        **fields: Unpack[RowFields],
    ) -> AuditRecorded:
        return self.build(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=event_type,
            action=action,
            **fields,
        )

    async def record(
        self,
        *,
        tenant_id: str,
        request_id: str,
        event_type: AuditEventType,
        action: str,
        **fields: Unpack[RowFields],
    ) -> AuditRecorded:
        event = self.build(
            tenant_id=tenant_id,
            request_id=request_id,
            event_type=event_type,
            action=action,
            **fields,
        )
        await self.publish(event)
        return event

    async def record_for(
        self,
        msg: Correlated,
        *,
        event_type: AuditEventType,
        action: str,
        **fields: Unpack[RowFields],
    ) -> AuditRecorded:
        event = self.build_for(msg, event_type=event_type, action=action, **fields)
        await self.publish(event)
        return event

    async def publish_unless_carried(
        self, row: AuditRecorded, by_caller: bool
    ) -> AuditRecorded | None:
        """A called service's row: handed back for the reply when the caller records the
        request's trail (`audit_by_caller`: it carries the row in its own event, one
        JetStream write per request), else published here. None once published."""
        if by_caller:
            return row
        await self.publish(row)
        return None

    async def publish(self, event: AuditRecorded) -> None:
        """Publish an event `build` made (durably; its event_id de-duplicates retries)."""
        await publish_event(self._broker, event, subjects.audit_event(event.tenant_id))
