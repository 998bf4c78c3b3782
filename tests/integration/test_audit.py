"""audit against a real nats-server and real chDB: ingest, scoping, de-dup, dead letters.

chDB hosts one engine per process, at one path. The audit service (and with it the
engine) is opened once for this module and closed at its end, so another module may
open chDB afterwards, at any path, but not while this module's fixture is alive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import clickhouse_connect
import pytest
import pytest_asyncio
from clickhouse_connect.driver.client import Client
from faststream.nats import NatsBroker
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.audit import deadletter
from services.audit.app import make_service
from services.audit.handlers import AUDIT_CONSUMER, COST_CONSUMER
from services.audit.settings import AuditSettings
from shared import subjects
from shared.bus import call, publish_event
from shared.messages.audit import (
    AuditEventType,
    AuditPage,
    AuditRecorded,
    AuditStatus,
    QueryAudit,
    QueryUsage,
    UsageReport,
)
from shared.messages.completions import Usage
from shared.messages.metering import CostRecorded
from shared.service import Service

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest_asyncio.fixture(scope="module")
async def audit(nats_url: str, audit_dir: Path) -> AsyncIterator[Service]:
    service = make_service(
        AuditSettings(nats_url=nats_url, data_dir=audit_dir, batch_timeout_s=0.2)
    )
    await service.start()
    yield service
    await service.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 15
) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if done(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


def audit_event(tid: str, action: str = "completion.create", **fields: object) -> AuditRecorded:
    values: dict[str, object] = {
        "tenant_id": tid,
        "event_type": AuditEventType.API_CALL,
        "service": "gateway",
        "action": action,
        "resource_type": "completion",
        "resource_id": "r-1",
        "actor": "user-1",
        "client_ip": "10.0.0.1",
        "details": {"model": "claude-haiku-4-5", "tokens": 12},
    }
    return AuditRecorded.model_validate(values | fields)


def cost_event(tid: str, model: str, cost: int, **fields: object) -> CostRecorded:
    return CostRecorded(
        tenant_id=tid,
        model=model,
        usage=Usage(input_tokens=100, output_tokens=20, cache_read_input_tokens=5),
        cost_nanousd=cost,
        price_version="2025-01",
        **fields,
    )


async def query(broker: NatsBroker, tid: str, **fields: object) -> AuditPage:
    return await call(
        broker,
        subjects.service("audit", "query", tid),
        QueryAudit(tenant_id=tid, **fields),
        AuditPage,
        10,
    )


async def usage(broker: NatsBroker, tid: str, month: str | None = None) -> UsageReport:
    return await call(
        broker,
        subjects.service("audit", "usage", tid),
        QueryUsage(tenant_id=tid, month=month),
        UsageReport,
        10,
    )


async def test_events_are_stored_and_scoped_to_their_tenant(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    a, b = new_tenant_id("a"), new_tenant_id("b")
    for i in range(3):
        await publish_event(client_broker, audit_event(a, f"a.{i}"), subjects.audit_event(a))
    await publish_event(client_broker, audit_event(b, "b.secret"), subjects.audit_event(b))

    page = await eventually(lambda: query(client_broker, a), lambda p: p.total >= 3)
    assert page.ok and page.total == 3 and len(page.rows) == 3
    assert {r.action for r in page.rows} == {"a.0", "a.1", "a.2"}
    assert [r.occurred_at for r in page.rows] == sorted(
        (r.occurred_at for r in page.rows), reverse=True
    )
    assert json.loads(page.rows[0].details) == {"model": "claude-haiku-4-5", "tokens": 12}
    page_b = await eventually(lambda: query(client_broker, b), lambda p: p.total >= 1)
    assert [r.action for r in page_b.rows] == ["b.secret"]

    # Filters: event type, time range, limit.
    await publish_event(
        client_broker,
        audit_event(a, "a.denied", event_type=AuditEventType.ACCESS_DENIED),
        subjects.audit_event(a),
    )
    denied = await eventually(
        lambda: query(client_broker, a, event_type=AuditEventType.ACCESS_DENIED),
        lambda p: p.total >= 1,
    )
    assert [r.action for r in denied.rows] == ["a.denied"]
    limited = await query(client_broker, a, limit=2)
    assert limited.total == 4 and len(limited.rows) == 2
    future = datetime.now(UTC) + timedelta(days=1)
    assert (await query(client_broker, a, since=future)).total == 0
    assert (await query(client_broker, a, until=future)).total == 4


async def test_usage_sums_the_month_by_model(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    a, b = new_tenant_id("ua"), new_tenant_id("ub")
    last_month = datetime.now(UTC).replace(day=1) - timedelta(days=2)
    events = [
        cost_event(a, "claude-haiku-4-5", 1_000),
        cost_event(a, "claude-haiku-4-5", 2_500),
        cost_event(a, "claude-sonnet-4-5", 9_000_000_001),  # > 2**32: no float/int32 loss
        cost_event(a, "claude-sonnet-4-5", 7, occurred_at=last_month),
        cost_event(b, "claude-haiku-4-5", 123),
    ]
    for event in events:
        await publish_event(client_broker, event, subjects.cost_event(event.tenant_id))
    await publish_event(client_broker, audit_event(a), subjects.audit_event(a))

    report = await eventually(
        lambda: usage(client_broker, a), lambda r: r.requests >= 3 and r.audit_events >= 1
    )
    assert report.ok and report.requests == 3 and report.audit_events == 1
    assert report.cost_nanousd == 9_000_003_501
    by_model = {m.model: m for m in report.by_model}
    assert by_model["claude-haiku-4-5"].requests == 2
    assert by_model["claude-haiku-4-5"].input_tokens == 200
    assert by_model["claude-sonnet-4-5"].cost_nanousd == 9_000_000_001
    previous = await usage(client_broker, a, last_month.strftime("%Y-%m"))
    assert previous.requests == 1 and previous.cost_nanousd == 7
    other = await eventually(lambda: usage(client_broker, b), lambda r: r.requests >= 1)
    assert other.cost_nanousd == 123 and other.audit_events == 0

    bad_month = await usage(client_broker, a, "2025-13")
    assert bad_month.error and bad_month.error.code == "malformed_request"


async def test_the_same_event_twice_lands_once(
    audit: Service, client_broker: NatsBroker, audit_dir: Path, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("dup")
    event = audit_event(tid)
    cost = cost_event(tid, "claude-haiku-4-5", 10)
    for _ in range(2):
        await publish_event(client_broker, event, subjects.audit_event(tid))
        await publish_event(client_broker, cost, subjects.cost_event(tid))
    report = await eventually(
        lambda: usage(client_broker, tid), lambda r: r.requests >= 1 and r.audit_events >= 1
    )
    await asyncio.sleep(0.5)  # a second copy, if any, would have landed by now
    assert (await query(client_broker, tid)).total == 1
    assert report.requests == 1 and report.cost_nanousd == 10
    # Not just hidden by the read side's de-dup: stored once. chDB lets a second client
    # open the engine at the same path in this process.
    client = chdb_client(audit_dir)
    try:
        for table in ("audit_events", "cost_events"):
            stored = client.query(
                f"SELECT count() FROM tenantry.{table} WHERE event_id = {{id:String}}",
                parameters={"id": event.event_id if table == "audit_events" else cost.event_id},
            )
            assert stored.result_rows[0][0] == 1
    finally:
        client.close()


def chdb_client(audit_dir: Path) -> Client:
    """A second client on the service's engine: chDB allows that at the same path."""
    return clickhouse_connect.get_client(dsn=f"chdb://{(audit_dir / 'clickhouse').resolve()}")


async def test_a_failed_insert_is_redelivered_not_dropped(
    audit: Service, client_broker: NatsBroker, audit_dir: Path, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("retry")
    js = client_broker.connection.jetstream()
    # The consumer is the session's: earlier modules can leave messages of their own in
    # flight (poison ones waiting out a redelivery delay), so compare with before.
    before = await js.consumer_info(subjects.EVENTS_STREAM, COST_CONSUMER)
    client = chdb_client(audit_dir)
    try:
        # Make every cost insert fail, as if ClickHouse were down.
        client.command("DETACH TABLE tenantry.cost_events")
        try:
            await publish_event(
                client_broker, cost_event(tid, "claude-haiku-4-5", 42), subjects.cost_event(tid)
            )
            info = await eventually(
                lambda: js.consumer_info(subjects.EVENTS_STREAM, COST_CONSUMER),
                lambda i: i.num_ack_pending >= 1,
            )
            # Delivered, not acked: the batch was nacked (with a delay), not dropped.
            assert info.num_ack_pending >= 1
            # Audit events flow on meanwhile: their consumer is independent.
            await publish_event(client_broker, audit_event(tid), subjects.audit_event(tid))
            page = await eventually(lambda: query(client_broker, tid), lambda p: p.total >= 1)
            assert page.total == 1
        finally:
            client.command("ATTACH TABLE tenantry.cost_events")
    finally:
        client.close()
    report = await eventually(lambda: usage(client_broker, tid), lambda r: r.requests >= 1)
    assert report.requests == 1 and report.cost_nanousd == 42
    # The batch is acked after its insert, so the ack can reach the server a moment after
    # the row is readable.
    info = await eventually(
        lambda: js.consumer_info(subjects.EVENTS_STREAM, COST_CONSUMER),
        lambda i: i.num_ack_pending <= before.num_ack_pending,
    )
    assert info.num_ack_pending <= before.num_ack_pending
    assert info.num_redelivered <= before.num_redelivered


async def read_deadletters(broker: NatsBroker, consumer: str) -> list[tuple[str, dict[str, str]]]:
    js = broker.connection.jetstream()
    sub = await js.pull_subscribe(
        subjects.deadletter(subjects.EVENTS_STREAM, consumer),
        stream=subjects.DEADLETTER_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        msgs = await sub.fetch(100, timeout=1)
    except TimeoutError:
        msgs = []
    finally:
        await sub.unsubscribe()
    return [(m.data.decode(errors="replace"), dict(m.headers or {})) for m in msgs]


async def test_malformed_events_are_dead_lettered_and_ingest_goes_on(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid, other = new_tenant_id("dl"), new_tenant_id("dlo")
    js = client_broker.connection.jetstream()
    # Bad JSON, a bad field, and a body claiming another tenant than its subject,
    # published between good events so they share batches with them.
    await publish_event(client_broker, audit_event(tid, "before"), subjects.audit_event(tid))
    await js.publish(subjects.audit_event(tid), b"{not json")
    bad_field = audit_event(tid).model_dump(mode="json") | {"status": "maybe"}
    await js.publish(subjects.audit_event(tid), json.dumps(bad_field).encode())
    mismatched = audit_event(other, "claims.other")
    await js.publish(subjects.audit_event(tid), mismatched.model_dump_json().encode())
    await js.publish(subjects.cost_event(tid), b'{"tenant_id": "' + tid.encode() + b'"}')
    await publish_event(client_broker, audit_event(tid, "after"), subjects.audit_event(tid))

    page = await eventually(
        lambda: query(client_broker, tid),
        lambda p: sum(r.action == deadletter.ACTION for r in p.rows) >= 4,
    )
    actions = sorted(r.action for r in page.rows)
    assert actions == ["after", "before", *[deadletter.ACTION] * 4]
    records = [r for r in page.rows if r.action == deadletter.ACTION]
    assert all(r.event_type == "error" and r.status == AuditStatus.FAILURE for r in records)
    assert any("status" in r.error for r in records)
    assert any("does not match the subject" in r.error for r in records)
    # The other tenant was claimed by a body, not the subject: nothing is attributed to it.
    assert (await query(client_broker, other)).total == 0

    # The dead-letter copies keep the original bytes, and say where they came from.
    dead = [
        (body, headers)
        for body, headers in await read_deadletters(client_broker, AUDIT_CONSUMER)
        if headers.get(deadletter.H_SUBJECT) == subjects.audit_event(tid)
    ]
    bodies = [body for body, _ in dead]
    assert len(dead) == 3 and "{not json" in bodies and any('"maybe"' in b for b in bodies)
    assert all(h[deadletter.H_STREAM] == subjects.EVENTS_STREAM for _, h in dead)
    assert all(int(h[deadletter.H_SEQUENCE]) > 0 and h[deadletter.H_REASON] for _, h in dead)
    cost_dead = await read_deadletters(client_broker, COST_CONSUMER)
    assert any(h.get(deadletter.H_SUBJECT) == subjects.cost_event(tid) for _, h in cost_dead)


async def test_max_deliveries_advisory_dead_letters_the_message(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    """Another service's consumer gives up on a message: audit copies it and records it."""
    tid = new_tenant_id("adv")
    consumer = f"test-giveup-{tid}"
    js = client_broker.connection.jetstream()
    event = audit_event(tid, "poison")
    # A subject the events stream captures and no service consumes (budget events are
    # read by ops, not by a service), so only this test's consumer sees the message.
    ack = await js.publish(subjects.budget_event(tid), event.model_dump_json().encode())
    sub = await js.pull_subscribe(
        subjects.budget_event(tid),
        durable=consumer,
        stream=subjects.EVENTS_STREAM,
        config=ConsumerConfig(max_deliver=2, ack_wait=5),
    )
    try:
        for _ in range(2):
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.nak()
        # The server notices the exhausted message (and advises) on the next pull.
        with pytest.raises(TimeoutError):
            await sub.fetch(1, timeout=1)
        page = await eventually(
            lambda: query(client_broker, tid), lambda p: p.total >= 1, timeout=20
        )
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(subjects.EVENTS_STREAM, consumer)
    (record,) = page.rows
    assert record.action == deadletter.ACTION and record.resource_id.endswith(f"/{ack.seq}")
    assert record.request_id == event.request_id
    details = json.loads(record.details)
    assert details["consumer"] == consumer and details["stream_seq"] == ack.seq
    dead = await read_deadletters(client_broker, consumer)
    assert [body for body, _ in dead] == [event.model_dump_json()]
