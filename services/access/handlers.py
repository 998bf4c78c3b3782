"""access's handlers: a tenant's NATS credentials and its API keys for the HTTP door.

Each handler is `(msg, deps) -> reply`; HANDLERS is the one table that registers them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.access import credentials
from services.access.adapters import CredentialStore, ServerUsers
from services.access.apikeys import KeyStore
from shared import subjects
from shared.audit import AuditTrail
from shared.intake import error_reply, reply_ok
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
from shared.service import Handlers, Rpc

SERVICE = "access"


@dataclass(frozen=True)
class Deps:
    store: CredentialStore
    server: ServerUsers
    keys: KeyStore
    trail: AuditTrail


async def issue(msg: IssueCredentials, deps: Deps) -> CredentialsIssued:
    issued = await credentials.issue(deps.store, deps.server, msg.tenant_id, msg.actor, msg.rotate)
    if issued.created:
        await deps.trail.record_for(
            msg,
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


async def revoke(msg: RevokeCredentials, deps: Deps) -> CredentialsRevoked:
    existed = await credentials.revoke(deps.store, deps.server, msg.tenant_id)
    # A tenant locked out of the bus is locked out of the HTTP door too.
    api_keys = await deps.keys.revoke_all(msg.tenant_id)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action="credentials.revoke",
        actor=msg.actor,
        resource_type="nats_user",
        details={"existed": existed, "api_keys": api_keys},
    )
    return reply_ok(CredentialsRevoked, msg, existed=existed, api_keys=api_keys)


async def _issued(
    msg: IssueApiKey | RotateApiKey, deps: Deps, name: str, action: str
) -> ApiKeyIssued:
    stored, key = await deps.keys.issue(msg.tenant_id, name, msg.actor)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.CONFIGURATION_CHANGE,
        action=action,
        actor=msg.actor,
        resource_type="api_key",
        resource_id=stored.key_id,
    )
    return reply_ok(ApiKeyIssued, msg, key_id=stored.key_id, key=key, name=stored.name)


async def issue_key(msg: IssueApiKey, deps: Deps) -> ApiKeyIssued:
    return await _issued(msg, deps, msg.name, "api_key.issue")


async def list_keys(msg: ListApiKeys, deps: Deps) -> ApiKeysListed:
    return reply_ok(ApiKeysListed, msg, keys=await deps.keys.list(msg.tenant_id))


async def revoke_key(msg: RevokeApiKey, deps: Deps) -> ApiKeyRevoked:
    existed = await deps.keys.revoke(msg.tenant_id, msg.key_id)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action="api_key.revoke",
        actor=msg.actor,
        resource_type="api_key",
        resource_id=msg.key_id,
        details={"existed": existed},
    )
    return reply_ok(ApiKeyRevoked, msg, existed=existed)


async def rotate_key(msg: RotateApiKey, deps: Deps) -> ApiKeyIssued:
    old = await deps.keys.get(msg.tenant_id, msg.key_id)
    if old is None:
        info = ErrorInfo(code=ErrorCode.NOT_FOUND, message=f"no API key {msg.key_id}")
        return error_reply(ApiKeyIssued, msg, info)
    # New key first: a client switching over never finds itself with none.
    done = await _issued(msg, deps, old.name, "api_key.rotate")
    await deps.keys.revoke(msg.tenant_id, msg.key_id)
    return done


HANDLERS = Handlers[Deps](
    SERVICE,
    rpcs=[
        # One at a time: each change rewrites the whole users file and reloads the server.
        Rpc("issue", IssueCredentials, CredentialsIssued, issue, max_workers=1),
        Rpc("revoke", RevokeCredentials, CredentialsRevoked, revoke, max_workers=1),
        Rpc("key_issue", IssueApiKey, ApiKeyIssued, issue_key),
        Rpc("key_list", ListApiKeys, ApiKeysListed, list_keys),
        Rpc("key_revoke", RevokeApiKey, ApiKeyRevoked, revoke_key),
        Rpc("key_rotate", RotateApiKey, ApiKeyIssued, rotate_key),
    ],
)
