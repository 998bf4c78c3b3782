"""The two outside systems access drives: the credentials KV bucket, and nats-server's
users file (rewritten, then hot-reloaded with SIGHUP, confirmed by a probe login)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import nats
import nats.errors
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from shared.natsauth import NatsUser, hash_password, new_password, render, write_private

AUTH_FILE = "auth.conf"
STATIC_USERS_FILE = "static-users.json"
PID_FILE = "nats-server.pid"
PROBE_USER = "tenantry-reload-probe"
_NOWHERE = "_tenantry.nowhere"


class StoredCredentials(BaseModel):
    tenant_id: str
    user: str
    password_hash: str
    issued_by: str
    issued_at: float


class CredentialStore:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def get(self, tenant_id: str) -> StoredCredentials | None:
        try:
            entry = await self._kv.get(tenant_id)
        except KeyNotFoundError:
            return None
        return StoredCredentials.model_validate_json(entry.value) if entry.value else None

    async def put(self, creds: StoredCredentials) -> None:
        await self._kv.put(creds.tenant_id, creds.model_dump_json().encode())

    async def delete(self, tenant_id: str) -> bool:
        if await self.get(tenant_id) is None:
            return False
        await self._kv.purge(tenant_id)
        return True

    async def all(self) -> list[StoredCredentials]:
        watcher = await self._kv.watchall(ignore_deletes=True)
        found = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    found.append(StoredCredentials.model_validate_json(entry.value))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return found


# Reads the tenant users from the store. Called under the writer's lock: a list read
# before another issue's and written after it would drop that tenant's user (seen when
# the pipeline bench onboarded 100 tenants at once).
UsersLoader = Callable[[], Awaitable[list[NatsUser]]]


class ServerUsers(Protocol):
    async def apply(self, load: UsersLoader) -> None:
        """Make exactly the tenant users `load` returns (plus the static ones) valid, at
        once; `load` is called under the lock that orders the writes."""


class UnmanagedServerUsers:
    """Server mode where nats-server's users are managed elsewhere (e.g. auth callout)."""

    async def apply(self, load: UsersLoader) -> None:
        return None


class FileServerUsers:
    """Rewrites auth.conf and reloads nats-server; returns once the reload is in force."""

    def __init__(self, auth_dir: Path, nats_url: str, timeout_s: float) -> None:
        self._dir = auth_dir
        self._url = nats_url
        self._timeout = timeout_s
        self._lock = asyncio.Lock()

    async def apply(self, load: UsersLoader) -> None:
        async with self._lock:
            users = await load()
            static = [
                NatsUser.from_dict(u)
                for u in json.loads((self._dir / STATIC_USERS_FILE).read_text())
            ]
            # A fresh probe password per write: logging in with it proves the server has
            # loaded this very file, so a revoked user is locked out when we return.
            probe_password = new_password()
            probe = NatsUser(
                PROBE_USER, hash_password(probe_password, rounds=4), [_NOWHERE], [_NOWHERE]
            )
            write_private(self._dir / AUTH_FILE, render([*static, *users, probe]))
            pid = int((self._dir / PID_FILE).read_text().strip())
            os.kill(pid, signal.SIGHUP)
            await self._wait_for(probe_password)

    async def _wait_for(self, probe_password: str) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                nc = await nats.connect(
                    self._url,
                    user=PROBE_USER,
                    password=probe_password,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=1,
                )
                await nc.close()
                return
            except (nats.errors.Error, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError("nats-server did not apply the new users in time") from None
                await asyncio.sleep(0.05)
