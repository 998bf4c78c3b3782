"""A real nats-server per test session, on a free loopback port, with JetStream on."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from shared import natsserver
from shared.bus import ensure_topology


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = tmp_path_factory.mktemp("nats")
    proc, port = natsserver.start(store, log_file=store / "nats.log")
    os.environ["TENANTRY_NATS_URL"] = f"nats://127.0.0.1:{port}"
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest_asyncio.fixture(scope="session")
async def client_broker(nats_url: str) -> AsyncIterator[NatsBroker]:
    """A plain broker connection for tests to publish, request and inspect with."""
    broker = NatsBroker(nats_url)
    await broker.connect()
    await ensure_topology(broker.connection.jetstream())
    yield broker
    await broker.stop()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")
