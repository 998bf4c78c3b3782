"""Audit throughput into chDB, and the time to export 1,000,000 rows.

1. ingest: EVENTS audit events published through JetStream (acknowledged publishes,
   PUBLISH_WINDOW in flight) to `python -m services.audit` running as its own process
   (as in production) with its own chDB folder; measured from the first publish until
   every row is stored and readable (polled over the bus). The publisher, nats-server
   and the writer share this machine's cores.
2. export: 1,000,000 chained rows for one tenant are written straight into that chDB
   folder (the writer's own row and chain code, batched inserts; not timed as ingest),
   then the service is restarted and `OpsClient.audit_export` streams them to a CSV
   file over the bus, keyset page by page, exactly as `tenantry audit export` does.
   Then `audit verify` walks the same 1,000,001-row chain (the export adds its own
   data_access row).

BENCH_AUDIT_PARTS=ingest (or export) runs only that part; unset runs both.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
from faststream.nats import NatsBroker

from services.audit.chain import Head, link
from services.audit.rows import AUDIT_COLUMNS, as_utc, audit_row, to_millis
from shared import natsserver, subjects
from shared.bus import call
from shared.cli.audit import ExportFormat, write_export
from shared.messages.audit import AuditEventType, AuditPage, AuditRecorded, QueryAudit
from shared.ops import OpsClient

# BENCH_AUDIT_EVENTS for a longer run: 40,000 is ~2 s of writing, where start-up counts.
EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "40000"))
PUBLISH_WINDOW = 1_000
TENANTS = 8
EXPORT_ROWS = 1_000_000
INSERT_CHUNK = 100_000
# The service default (AuditSettings.batch_size); BENCH_AUDIT_BATCH_SIZE to compare.
BATCH_SIZE = int(os.environ.get("BENCH_AUDIT_BATCH_SIZE", "5000"))


def start_audit(nats_url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "TENANTRY_NATS_URL": nats_url,
        "TENANTRY_DATA_DIR": str(data_dir),
        "TENANTRY_BATCH_SIZE": str(BATCH_SIZE),
        "TENANTRY_LOG_LEVEL": "WARNING",
        "TENANTRY_WRITER_LEASE_S": "2",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.audit"], env=env, stdout=out, stderr=out
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


async def stored(ops: OpsClient, tenant: str) -> int:
    try:
        page = await call(
            ops.nc,
            subjects.service("audit", "query", tenant),
            QueryAudit(tenant_id=tenant, limit=1),
            AuditPage,
            30,
        )
    except Exception:
        return -1  # not serving yet
    return page.total


async def poll(probe: Callable[[], Awaitable[bool]], interval: float, timeout: float) -> None:
    for _ in range(int(timeout / interval)):
        if await probe():
            return
        await asyncio.sleep(interval)
    raise TimeoutError("the audit service did not get there in time")


async def wait_serving(ops: OpsClient, tenant: str) -> None:
    async def serving() -> bool:
        return await stored(ops, tenant) >= 0

    await poll(serving, 0.2, 120)


def event(tenant: str, i: int, at: datetime | None = None) -> AuditRecorded:
    return AuditRecorded(
        tenant_id=tenant,
        event_type=AuditEventType.API_CALL,
        service="gateway",
        action="completion.create",
        resource_type="completion",
        resource_id=f"c-{i}",
        actor="user-1",
        client_ip="10.0.0.1",
        details={"model": "claude-haiku-4-5", "tokens": i % 1000},
        **({"occurred_at": at} if at else {}),
    )


Wire = tuple[str, bytes, dict[str, str]]


def wire(events: list[AuditRecorded]) -> list[Wire]:
    """Subject, body and headers as publish_event sends them, made before the clock
    starts: serialising is the publisher's cost, not the sink's."""
    return [
        (
            subjects.audit_event(e.tenant_id),
            e.model_dump_json().encode(),
            {"Nats-Msg-Id": e.event_id},
        )
        for e in events
    ]


async def publish_all(broker: NatsBroker, events: list[Wire]) -> None:
    """Acknowledged JetStream publishes, PUBLISH_WINDOW in flight (nats-py's
    publish_async: one future per message instead of a request coroutine each, so the
    one publishing process can offer more than the writer takes)."""
    js = broker.connection.jetstream(publish_async_max_pending=PUBLISH_WINDOW)
    acks = [
        await js.publish_async(subject, body, stream=subjects.EVENTS_STREAM, headers=headers)
        for subject, body, headers in events
    ]
    await asyncio.gather(*acks)  # raises if any publish was refused


def batches(data_dir: Path, since: datetime) -> list[tuple[datetime, int]]:
    """(recorded_at, rows) of each batch written after `since`: a batch's rows share the
    recorded_at taken as the writer wrote it. Read once the service is stopped (chDB:
    one engine per folder)."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{(data_dir / 'clickhouse').resolve()}")
    try:
        rows = client.query(
            "SELECT recorded_at, count() FROM tenantry.audit_events "
            "WHERE recorded_at > {since:DateTime64(3, 'UTC')} "
            "GROUP BY recorded_at ORDER BY recorded_at",
            parameters={"since": since},
        ).result_rows
    finally:
        client.close()
    return [(as_utc(at), int(n)) for at, n in rows]


def write_rate(written: list[tuple[datetime, int]]) -> float:
    """Events/s as the writer itself paced them, from its first batch to its last: free
    of start-up and of the polling's granularity. The last batch's rows were written
    after the span ends, so they are not counted."""
    span = (written[-1][0] - written[0][0]).total_seconds()
    return sum(n for _, n in written[:-1]) / span if span > 0 else 0.0


async def ingest(nats_url: str, data_dir: Path, log: Path) -> dict[str, Any]:
    """Live (publisher and writer at once), then a backlog drained by a fresh writer."""
    tenants = [f"bench-{i}" for i in range(TENANTS)]
    broker = NatsBroker(nats_url)
    await broker.connect()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with OpsClient(nats_url) as ops:

            def stored_at_least(n: int) -> Callable[[], Awaitable[bool]]:
                """Every tenant holds n // TENANTS rows. A tenant once complete is not
                asked again: the probe's own queries run on the writer's chDB, and
                asking all eight every 50 ms took a large share of it."""
                pending = list(tenants)

                async def probe() -> bool:
                    while pending and await stored(ops, pending[0]) >= n // TENANTS:
                        pending.pop(0)
                    return not pending

                return probe

            live_events = wire([event(tenants[i % TENANTS], i) for i in range(EVENTS)])
            live_since = datetime.now(UTC)
            procs.append(proc := start_audit(nats_url, data_dir, log))
            await wait_serving(ops, tenants[0])
            started = time.perf_counter()
            await publish_all(broker, live_events)
            published = time.perf_counter() - started
            await poll(stored_at_least(EVENTS), 0.05, 300)
            live = time.perf_counter() - started
            stop(proc)
            live_write = write_rate(batches(data_dir, live_since))
            backlog_since = datetime.now(UTC)

            await publish_all(broker, wire([event(tenants[i % TENANTS], i) for i in range(EVENTS)]))
            procs.append(proc := start_audit(nats_url, data_dir, log))
            await wait_serving(ops, tenants[0])
            started = time.perf_counter()
            serving_at = datetime.now(UTC)
            await poll(stored_at_least(2 * EVENTS), 0.05, 300)
            drained = time.perf_counter() - started
            stop(proc)
            written = batches(data_dir, backlog_since)
            backlog_write = write_rate(written)
            # Written before the clock started (the consumers start just before the
            # query verbs answer): from the rows' own times, not by asking each tenant,
            # which took a second of queries queued behind the writer's inserts.
            already = sum(n for at, n in written if at <= serving_at)
    finally:
        for running in procs:
            if running.poll() is None:
                stop(running)
        await broker.stop()
    return {
        "events": EVENTS,
        "tenants": TENANTS,
        "batch_size": BATCH_SIZE,
        "live_publish_events_per_s": round(EVENTS / published),
        "live_stored_events_per_s": round(EVENTS / live),
        "backlog_drain_events_per_s": round((EVENTS - already) / drained),
        # The writer's own pace (write_rate): live it can be no faster than the publisher.
        "live_write_events_per_s": round(live_write),
        "backlog_write_events_per_s": round(backlog_write),
    }


def load_rows(data_dir: Path, tenant: str) -> float:
    """EXPORT_ROWS chained rows for `tenant`, straight into chDB. Returns seconds."""
    started = time.perf_counter()
    client = clickhouse_connect.get_client(dsn=f"chdb://{(data_dir / 'clickhouse').resolve()}")
    try:
        head = Head()
        t0 = datetime.now(UTC) - timedelta(days=30)
        recorded = to_millis(datetime.now(UTC))
        for start in range(0, EXPORT_ROWS, INSERT_CHUNK):
            content = [
                audit_row(event(tenant, i, t0 + timedelta(milliseconds=2 * i)), 365)
                for i in range(start, min(start + INSERT_CHUNK, EXPORT_ROWS))
            ]
            linked, head = link(content, head)
            client.insert(
                "tenantry.audit_events",
                [(*r, recorded) for r in linked],
                column_names=list(AUDIT_COLUMNS),
            )
    finally:
        client.close()
    return time.perf_counter() - started


async def export(nats_url: str, data_dir: Path, log: Path, out: Path) -> dict[str, Any]:
    tenant = "bench-export"
    load_s = load_rows(data_dir, tenant)
    proc = start_audit(nats_url, data_dir, log)
    try:
        async with OpsClient(nats_url, timeout_s=120) as ops:
            await wait_serving(ops, tenant)
            started = time.perf_counter()
            with out.open("w", encoding="utf-8", newline="") as target:
                rows = await write_export(ops.audit_export(tenant), ExportFormat.CSV, target)
                size = target.tell()
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            verified = await ops.audit_verify(tenant)
            verify_s = time.perf_counter() - started
    finally:
        stop(proc)
    return {
        "rows": rows,
        "verify_seconds": round(verify_s, 1),
        "verify_intact": verified.intact and verified.rows == rows,
        "load_seconds": round(load_s, 1),
        "export_seconds": round(elapsed, 1),
        "export_rows_per_s": round(rows / elapsed),
        "csv_megabytes": round(size / 1e6, 1),
    }


def run(results_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-audit-") as tmp:
        root = Path(tmp)
        proc, port = natsserver.start(root / "nats", log_file=root / "nats.log")
        url = f"nats://127.0.0.1:{port}"
        parts = os.environ.get("BENCH_AUDIT_PARTS", "ingest,export").split(",")
        result: dict[str, Any] = {}
        try:
            if "ingest" in parts:
                result["ingest"] = asyncio.run(ingest(url, root / "data", root / "audit.log"))
            if "export" in parts:
                result["export"] = asyncio.run(
                    export(url, root / "data", root / "audit.log", root / "export.csv")
                )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return result


if __name__ == "__main__":
    sys.stdout.write(f"{run(Path('bench-results'))}\n")
