"""access's subscribers: a tenant's NATS credentials and its API keys for the HTTP door."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsRouter

from services.access import credentials
from services.access.adapters import CredentialStore, ServerUsers
from services.access.apikeys import KeyStore
from shared import subjects
from shared.audit import AuditTrail
from shared.messages.access import (
    CredentialsIssued,
    CredentialsRevoked,
    IssueCredentials,
    RevokeCredentials,
)
from shared.messages.apikeys import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ApiKeysListed,
    IssueApiKey,
    ListApiKeys,
    RevokeApiKey,
    RotateApiKey,
)
from shared.messages.audit import AuditEventType
from shared.messages.base import ErrorCode, ErrorInfo
from shared.service import error_reply, reply_ok, rpc

SERVICE = "access"


@dataclass
class Deps:
    store: CredentialStore
    server: ServerUsers
    trail: AuditTrail
    keys: KeyStore


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
        # A tenant locked out of the bus is locked out of the HTTP door too.
        api_keys = await deps.keys.revoke_all(msg.tenant_id)
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.DELETION,
            action="credentials.revoke",
            actor=msg.actor,
            resource_type="nats_user",
            details={"existed": existed, "api_keys": api_keys},
        )
        return reply_ok(CredentialsRevoked, msg, existed=existed, api_keys=api_keys)

    _api_key_verbs(router, deps)
    return router


def _api_key_verbs(router: NatsRouter, deps: Deps) -> None:
    async def issued(msg: IssueApiKey | RotateApiKey, name: str, action: str) -> ApiKeyIssued:
        stored, key = await deps.keys.issue(msg.tenant_id, name, msg.actor)
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.CONFIGURATION_CHANGE,
            action=action,
            actor=msg.actor,
            resource_type="api_key",
            resource_id=stored.key_id,
        )
        return reply_ok(ApiKeyIssued, msg, key_id=stored.key_id, key=key, name=stored.name)

    @rpc(router, SERVICE, "key_issue", IssueApiKey, ApiKeyIssued, deps.trail)
    async def issue_key(msg: IssueApiKey) -> ApiKeyIssued:
        return await issued(msg, msg.name, "api_key.issue")

    @rpc(router, SERVICE, "key_list", ListApiKeys, ApiKeysListed, deps.trail)
    async def list_keys(msg: ListApiKeys) -> ApiKeysListed:
        return reply_ok(ApiKeysListed, msg, keys=await deps.keys.list(msg.tenant_id))

    @rpc(router, SERVICE, "key_revoke", RevokeApiKey, ApiKeyRevoked, deps.trail)
    async def revoke_key(msg: RevokeApiKey) -> ApiKeyRevoked:
        existed = await deps.keys.revoke(msg.tenant_id, msg.key_id)
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.DELETION,
            action="api_key.revoke",
            actor=msg.actor,
            resource_type="api_key",
            resource_id=msg.key_id,
            details={"existed": existed},
        )
        return reply_ok(ApiKeyRevoked, msg, existed=existed)

    @rpc(router, SERVICE, "key_rotate", RotateApiKey, ApiKeyIssued, deps.trail)
    async def rotate_key(msg: RotateApiKey) -> ApiKeyIssued:
        old = await deps.keys.get(msg.tenant_id, msg.key_id)
        if old is None:
            return error_reply(
                ApiKeyIssued,
                msg.tenant_id,
                msg.request_id,
                ErrorInfo(code=ErrorCode.NOT_FOUND, message=f"no API key {msg.key_id}"),
            )
        # New key first: a client switching over never finds itself with none.
        done = await issued(msg, old.name, "api_key.rotate")
        await deps.keys.revoke(msg.tenant_id, msg.key_id)
        return done
