"""access's handlers with in-memory stores: no broker, no nats-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from services.access.adapters import UsersLoader
from services.access.handlers import Deps, issue, revoke, revoke_key, rotate_key
from shared.apikeys import StoredKey
from shared.messages.access import IssueCredentials, RevokeCredentials
from shared.messages.apikeys import RevokeApiKey, RotateApiKey
from shared.messages.audit import AuditEventType
from shared.messages.base import ErrorCode
from shared.natsauth import NatsUser
from tests.support.handlers import recording_trail


class Credentials:
    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}

    async def get(self, tenant_id: str) -> Any:
        return self.stored.get(tenant_id)

    async def put(self, creds: Any) -> None:
        self.stored[creds.tenant_id] = creds

    async def delete(self, tenant_id: str) -> bool:
        return self.stored.pop(tenant_id, None) is not None

    async def all(self) -> list[Any]:
        return list(self.stored.values())


class Server:
    def __init__(self) -> None:
        self.applied: list[list[NatsUser]] = []
        self._lock = asyncio.Lock()  # FileServerUsers orders its writes the same way

    async def apply(self, load: UsersLoader) -> None:
        async with self._lock:
            self.applied.append(await load())


class Keys:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], StoredKey] = {}

    async def issue(self, tenant_id: str, name: str, actor: str) -> tuple[StoredKey, str]:
        key_id = f"{len(self.stored) + 1:012x}"
        stored = StoredKey(
            tenant_id=tenant_id,
            key_id=key_id,
            name=name,
            sha256="0" * 64,
            created_at=datetime.now(UTC),
            created_by=actor,
            hint="abcd",
        )
        self.stored[tenant_id, key_id] = stored
        return stored, f"secret-{key_id}"

    async def get(self, tenant_id: str, key_id: str) -> StoredKey | None:
        return self.stored.get((tenant_id, key_id))

    async def revoke(self, tenant_id: str, key_id: str) -> bool:
        return self.stored.pop((tenant_id, key_id), None) is not None

    async def revoke_all(self, tenant_id: str) -> int:
        mine = [k for k in self.stored if k[0] == tenant_id]
        for k in mine:
            del self.stored[k]
        return len(mine)


def make() -> tuple[Deps, Server, Keys, list[Any]]:
    trail, events = recording_trail("access")
    server, keys = Server(), Keys()
    deps = Deps(store=cast(Any, Credentials()), server=server, keys=cast(Any, keys), trail=trail)
    return deps, server, keys, events


async def test_issue_is_idempotent_and_audited_once() -> None:
    deps, server, _, events = make()
    first = await issue(IssueCredentials(tenant_id="acme", request_id="r1"), deps)
    again = await issue(IssueCredentials(tenant_id="acme", request_id="r2"), deps)
    assert first.ok and first.created and first.password
    assert again.ok and not again.created and again.password == ""
    assert [u.user for u in server.applied[-1]] == [first.user]
    (event,) = events
    assert (event.tenant_id, event.request_id, event.action) == ("acme", "r1", "credentials.issue")


async def test_revoke_takes_the_api_keys_with_it() -> None:
    deps, server, keys, events = make()
    await issue(IssueCredentials(tenant_id="acme"), deps)
    await keys.issue("acme", "ci", "ops")
    done = await revoke(RevokeCredentials(tenant_id="acme", request_id="r9"), deps)
    assert done.existed and done.api_keys == 1 and server.applied[-1] == []
    assert events[-1].event_type is AuditEventType.DELETION
    assert events[-1].details == {"existed": True, "api_keys": 1}


async def test_rotating_an_unknown_key_is_not_found_and_changes_nothing() -> None:
    deps, _, keys, events = make()
    reply = await rotate_key(RotateApiKey(tenant_id="acme", key_id="0000000000ff"), deps)
    assert reply.error is not None and reply.error.code is ErrorCode.NOT_FOUND
    assert keys.stored == {} and events == []


async def test_rotate_issues_the_new_key_before_revoking_the_old() -> None:
    deps, _, keys, events = make()
    old, _ = await keys.issue("acme", "ci", "ops")
    reply = await rotate_key(RotateApiKey(tenant_id="acme", key_id=old.key_id), deps)
    assert reply.ok and reply.name == "ci" and reply.key_id != old.key_id
    assert list(keys.stored) == [("acme", reply.key_id)]
    assert [e.action for e in events] == ["api_key.rotate"]
    gone = await revoke_key(RevokeApiKey(tenant_id="acme", key_id=old.key_id), deps)
    assert not gone.existed


class SlowFirstList(Credentials):
    """The first listing of the store takes longer than the ones after it, as a KV
    watch can: the list it read is then older than a later caller's."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    async def all(self) -> list[Any]:
        self.listings += 1
        snapshot = list(self.stored.values())
        await asyncio.sleep(0.05 if self.listings == 1 else 0)
        return snapshot


async def test_issues_at_once_never_write_an_older_user_list_last() -> None:
    deps, server, _, _ = make()
    deps = Deps(store=cast(Any, SlowFirstList()), server=server, keys=deps.keys, trail=deps.trail)
    issued = await asyncio.gather(
        *(issue(IssueCredentials(tenant_id=t, request_id=t), deps) for t in ("acme", "beta"))
    )
    assert all(i.ok and i.created for i in issued)
    assert sorted(u.user for u in server.applied[-1]) == sorted(i.user for i in issued)
