"""Bus helpers for tests."""

from __future__ import annotations

import asyncio
import time

import nats.errors
from faststream.nats import NatsBroker

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
