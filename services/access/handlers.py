"""access's subscribers: issue and revoke a tenant's NATS credentials."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsRouter

from services.access import credentials
from services.access.adapters import CredentialStore, ServerUsers
from shared import subjects
from shared.audit import AuditTrail
from shared.messages.access import (
    CredentialsIssued,
    CredentialsRevoked,
    IssueCredentials,
    RevokeCredentials,
)
from shared.messages.audit import AuditEventType
from shared.service import reply_ok, rpc

SERVICE = "access"


@dataclass
class Deps:
    store: CredentialStore
    server: ServerUsers
    trail: AuditTrail


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    # One at a time: each change rewrites the whole users file and reloads the server.
    @rpc(router, SERVICE, "issue", IssueCredentials, CredentialsIssued, deps.trail, max_workers=1)
    async def issue(msg: IssueCredentials) -> CredentialsIssued:
        issued = await credentials.issue(
            deps.store, deps.server, msg.tenant_id, msg.actor, msg.rotate
        )
        if issued.created:
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.CONFIGURATION_CHANGE,
                action="credentials.rotate" if msg.rotate else "credentials.issue",
                actor=msg.actor,
                resource_type="nats_user",
                resource_id=issued.user,
            )
        return reply_ok(
            CredentialsIssued,
            msg,
            user=issued.user,
            password=issued.password,
            inbox_prefix=subjects.tenant_inbox_prefix(msg.tenant_id),
            created=issued.created,
        )

    @rpc(
        router, SERVICE, "revoke", RevokeCredentials, CredentialsRevoked, deps.trail, max_workers=1
    )
    async def revoke(msg: RevokeCredentials) -> CredentialsRevoked:
        existed = await credentials.revoke(deps.store, deps.server, msg.tenant_id)
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.DELETION,
            action="credentials.revoke",
            actor=msg.actor,
            resource_type="nats_user",
            details={"existed": existed},
        )
        return reply_ok(CredentialsRevoked, msg, existed=existed)

    return router
