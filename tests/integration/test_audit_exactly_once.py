"""Exactly once into ClickHouse across a crash: SIGKILL the audit writer (a real
`python -m services.audit` process with its own chDB folder) while a batch is in
flight, restart it, and count: every event stored once, none lost, chains intact.

Its own nats-server too, so the writer lease and the durable consumers start fresh.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker
from nats.js.errors import NotFoundError

from services.audit.handlers import AUDIT_CONSUMER
from shared import natsserver, subjects
from shared.bus import call, ensure_topology, publish_event
from shared.messages.audit import (
    AuditPage,
    AuditRecorded,
    AuditVerified,
    QueryAudit,
    VerifyAudit,
)
from tests.integration.test_audit import audit_event

pytestmark = pytest.mark.integration

EVENTS_PER_TENANT = 2_500
BATCH = 200
JUNK = 400  # malformed messages; each becomes one dead-letter audit row of its tenant


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[str]:
    proc, port = natsserver.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest_asyncio.fixture
async def broker(nats: str) -> AsyncIterator[NatsBroker]:
    client = NatsBroker(nats)
    await client.connect()
    await ensure_topology(client.connection.jetstream())
    yield client
    await client.stop()


def start_writer(nats: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "TENANTRY_NATS_URL": nats,
        "TENANTRY_DATA_DIR": str(data_dir),
        "TENANTRY_BATCH_SIZE": str(BATCH),
        "TENANTRY_BATCH_TIMEOUT_S": "0.05",
        # A killed writer cannot release its lease or ack: keep both waits short.
        "TENANTRY_WRITER_LEASE_S": "2",
        "TENANTRY_ACK_WAIT_S": "3",
        "TENANTRY_LOG_FORMAT": "json",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.audit"], env=env, stdout=out, stderr=out
        )


async def total(broker: NatsBroker, tid: str) -> int:
    page = await call(
        broker,
        subjects.service("audit", "query", tid),
        QueryAudit(tenant_id=tid, limit=1),
        AuditPage,
        30,
    )
    return page.total


async def test_sigkill_mid_batch_then_restart_stores_every_event_once(
    broker: NatsBroker, nats: str, tmp_path: Path
) -> None:
    tenants = [f"crash-{i}-{os.getpid()}" for i in range(2)]
    junk = f"crash-junk-{os.getpid()}"
    log = tmp_path / "audit.log"
    # The backlog is published before the writer starts, so every batch it fetches is
    # full and mixes good events with malformed ones.
    events = [audit_event(t, f"e.{i}") for i in range(EVENTS_PER_TENANT) for t in tenants]
    await publish_all(broker, events, junk)
    js = broker.connection.jetstream()
    writer = start_writer(nats, tmp_path / "data", log)
    try:
        # Kill between a batch's insert and its ack. Malformed messages widen that window
        # naturally: store_batch dead-letters them (two acknowledged JetStream publishes
        # each) after the insert succeeded and before returning, i.e. before the ack.
        # So: a new dead-letter copy while messages are unacked = insert done, ack not.
        killed_with_pending = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline and not killed_with_pending:
            before = (await js.stream_info(subjects.DEADLETTER_STREAM)).state.messages
            try:
                info = await js.consumer_info(subjects.EVENTS_STREAM, AUDIT_CONSUMER)
            except NotFoundError:
                await asyncio.sleep(0.05)  # the writer creates it as it starts
                continue
            after = (await js.stream_info(subjects.DEADLETTER_STREAM)).state.messages
            if after > before and info.num_ack_pending:
                writer.send_signal(signal.SIGKILL)
                killed_with_pending = info.num_ack_pending
        writer.wait(timeout=10)
        assert killed_with_pending > 0, "never caught a batch between insert and ack"
        assert writer.returncode == -signal.SIGKILL

        writer = start_writer(nats, tmp_path / "data", log)
        expected = dict.fromkeys(tenants, EVENTS_PER_TENANT) | {junk: JUNK}
        for tid, count in expected.items():
            deadline = asyncio.get_running_loop().time() + 60
            while await total_or_zero(broker, tid) < count:
                assert asyncio.get_running_loop().time() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # anything still redelivered would have landed by now
        info = await js.consumer_info(subjects.EVENTS_STREAM, AUDIT_CONSUMER)
        assert info.num_ack_pending == 0 and info.num_pending == 0
        for tid, count in expected.items():
            report = await call(
                broker,
                subjects.service("audit", "verify", tid),
                VerifyAudit(tenant_id=tid),
                AuditVerified,
                60,
            )
            # rows counts every stored row, duplicates included: exactly once means equal.
            assert report.rows == count, report
            assert report.intact and report.last_seq == count, report.issues[:3]
        # The restarted writer met rows the killed one had stored but not acked.
        assert "batch.already_stored" in log.read_text()
    finally:
        writer.terminate()
        writer.wait(timeout=20)


async def total_or_zero(broker: NatsBroker, tid: str) -> int:
    try:
        return await total(broker, tid)
    except Exception:
        return 0  # the restarted writer is still waiting for the lease


async def publish_all(broker: NatsBroker, events: list[AuditRecorded], junk: str) -> None:
    """Good events in concurrent chunks, with malformed ones (dead-lettered, and recorded
    as audit rows of `junk`) sprinkled between them."""
    js = broker.connection.jetstream()
    per_chunk = JUNK // (len(events) // 250)
    for start in range(0, len(events), 250):
        chunk = events[start : start + 250]
        await asyncio.gather(
            *(publish_event(broker, e, subjects.audit_event(e.tenant_id)) for e in chunk)
        )
        for _ in range(per_chunk):
            await js.publish(subjects.audit_event(junk), b"{not json")
