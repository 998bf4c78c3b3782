"""promptconfig's view of the services its lifecycle saga drives."""

from __future__ import annotations

from faststream.nats import NatsBroker

from shared import subjects
from shared.bus import call, publish_event
from shared.messages.access import (
    CredentialsIssued,
    CredentialsRevoked,
    IssueCredentials,
    RevokeCredentials,
)
from shared.messages.base import Envelope
from shared.messages.lifecycle import (
    DeprovisionTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantProvisioned,
)


class BusLifecyclePorts:
    def __init__(self, broker: NatsBroker, timeout_s: float) -> None:
        self._broker = broker
        self._timeout = timeout_s

    async def provision(self, service: str, msg: ProvisionTenant) -> TenantProvisioned:
        subject = subjects.service(service, "provision", msg.tenant_id)
        return await call(self._broker, subject, msg, TenantProvisioned, self._timeout)

    async def deprovision(self, service: str, msg: DeprovisionTenant) -> TenantDeprovisioned:
        subject = subjects.service(service, "deprovision", msg.tenant_id)
        return await call(self._broker, subject, msg, TenantDeprovisioned, self._timeout)

    async def issue(self, msg: IssueCredentials) -> CredentialsIssued:
        subject = subjects.service("access", "issue", msg.tenant_id)
        return await call(self._broker, subject, msg, CredentialsIssued, self._timeout)

    async def revoke(self, msg: RevokeCredentials) -> CredentialsRevoked:
        subject = subjects.service("access", "revoke", msg.tenant_id)
        return await call(self._broker, subject, msg, CredentialsRevoked, self._timeout)

    async def publish(self, event: Envelope, subject: str) -> None:
        await publish_event(self._broker, event, subject)
