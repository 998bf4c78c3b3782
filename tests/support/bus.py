"""Bus helpers for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import nats.errors
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient

from shared import subjects


async def ready(client: NatsBroker, service: str, verb: str) -> None:
    """Wait until `service` answers on `verb` (a malformed probe gets an error reply):
    start() returning is not proof that the server routes requests to it yet."""
    probe = subjects.service(service, verb, "ready-probe")
    deadline = time.monotonic() + 5
    while True:
        try:
            await client.connection.request(probe, b"{}", timeout=1)
            return
        except nats.errors.NoRespondersError:
            assert time.monotonic() < deadline, f"{service} never answered"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def as_tenant(nats_url: str, tenant_token: str) -> AsyncIterator[NatsClient]:
    """A connection whose replies come to `tenant_token`'s own inbox prefix: the only
    reply subjects the platform answers a tenant subject on (shared.replies)."""
    nc = await nats.connect(nats_url, inbox_prefix=f"{subjects.TENANT_INBOX_ROOT}.{tenant_token}")
    try:
        yield nc
    finally:
        await nc.close()
