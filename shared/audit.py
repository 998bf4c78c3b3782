"""How every service records audit events: a typed event, published durably to JetStream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from faststream.nats import NatsBroker

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


class AuditTrail:
    """One per service; `record` publishes an AuditRecorded that audit writes to ClickHouse."""

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
        status: AuditStatus = AuditStatus.SUCCESS,
        resource_type: str = "",
        resource_id: str = "",
        error: str | None = None,
        actor: str = "",
        client_ip: str | None = None,
        user_agent: str | None = None,
        details: dict[str, DetailValue] | None = None,
        carried: Sequence[AuditRecorded] = (),
    ) -> AuditRecorded:
        """The event `record` would publish, not published: a row a caller carries in
        its own event (a request's trail, see AuditRecorded.carried)."""
        return AuditRecorded(
            tenant_id=tenant_id,
            request_id=request_id,
            event_type=event_type,
            service=self._service,
            action=action,
            status=status,
            resource_type=resource_type,
            resource_id=resource_id[:200],
            error=error[:1_000] if error else None,
            actor=actor or self._service,
            client_ip=client_ip,
            user_agent=user_agent,
            details=details or {},
            carried=list(carried[:MAX_CARRIED]),
        )

    async def record(
        self,
        *,
        tenant_id: str,
        request_id: str,
        event_type: AuditEventType,
        action: str,
        status: AuditStatus = AuditStatus.SUCCESS,
        resource_type: str = "",
        resource_id: str = "",
        error: str | None = None,
        actor: str = "",
        client_ip: str | None = None,
        user_agent: str | None = None,
        details: dict[str, DetailValue] | None = None,
        carried: Sequence[AuditRecorded] = (),
    ) -> AuditRecorded:
        event = self.build(
            tenant_id=tenant_id,
            request_id=request_id,
            event_type=event_type,
            action=action,
            status=status,
            resource_type=resource_type,
            resource_id=resource_id,
            error=error,
            actor=actor,
            client_ip=client_ip,
            user_agent=user_agent,
            details=details,
            carried=carried,
        )
        await self.publish(event)
        return event

    async def publish(self, event: AuditRecorded) -> None:
        """Publish an event `build` made (durably; its event_id de-duplicates retries)."""
        await publish_event(self._broker, event, subjects.audit_event(event.tenant_id))

    def build_for(
        self,
        msg: Correlated,
        *,
        event_type: AuditEventType,
        action: str,
        status: AuditStatus = AuditStatus.SUCCESS,
        resource_type: str = "",
        resource_id: str = "",
        error: str | None = None,
        actor: str = "",
        details: dict[str, DetailValue] | None = None,
    ) -> AuditRecorded:
        """`build` for the tenant and request of `msg`, the message being handled."""
        return self.build(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=event_type,
            action=action,
            status=status,
            resource_type=resource_type,
            resource_id=resource_id,
            error=error,
            actor=actor,
            details=details,
        )

    async def record_for(
        self,
        msg: Correlated,
        *,
        event_type: AuditEventType,
        action: str,
        status: AuditStatus = AuditStatus.SUCCESS,
        resource_type: str = "",
        resource_id: str = "",
        error: str | None = None,
        actor: str = "",
        details: dict[str, DetailValue] | None = None,
    ) -> AuditRecorded:
        """`record` for the tenant and request of `msg`, the message being handled."""
        event = self.build_for(
            msg,
            event_type=event_type,
            action=action,
            status=status,
            resource_type=resource_type,
            resource_id=resource_id,
            error=error,
            actor=actor,
            details=details,
        )
        await self.publish(event)
        return event
