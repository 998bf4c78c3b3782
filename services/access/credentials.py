"""Issuing and revoking a tenant's credentials: plain functions over the two adapters."""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.access.adapters import CredentialStore, ServerUsers, StoredCredentials
from shared.natsauth import NatsUser, hash_password, new_password, tenant_user, tenant_user_name


@dataclass(frozen=True)
class Issued:
    user: str
    password: str  # empty when the credentials already existed
    created: bool


async def issue(
    store: CredentialStore, server: ServerUsers, tenant_id: str, actor: str, rotate: bool
) -> Issued:
    existing = await store.get(tenant_id)
    if existing is not None and not rotate:
        return Issued(existing.user, "", created=False)  # idempotent: shown once only
    password = new_password()
    await store.put(
        StoredCredentials(
            tenant_id=tenant_id,
            user=tenant_user_name(tenant_id),
            password_hash=hash_password(password),
            issued_by=actor,
            issued_at=time.time(),
        )
    )
    await sync(store, server)
    return Issued(tenant_user_name(tenant_id), password, created=True)


async def revoke(store: CredentialStore, server: ServerUsers, tenant_id: str) -> bool:
    existed = await store.delete(tenant_id)
    await sync(store, server)  # even if nothing was stored: make the server agree
    return existed


async def sync(store: CredentialStore, server: ServerUsers) -> None:
    async def users() -> list[NatsUser]:
        return [tenant_user(c.tenant_id, c.password_hash) for c in await store.all()]

    await server.apply(users)  # reads the list under its lock: see UsersLoader
