"""Issue 6 against real nats-server and chDB: tamper evidence, export, retention,
injection-proof scoped queries, and the cost rollup (issue 4).

chDB hosts one engine per process: this module opens its own audit service (and path)
after test_audit.py has closed its own, and tampers through a second client on the
same path (chDB allows that within one process).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import pytest
import pytest_asyncio
from clickhouse_connect.driver.client import Client
from faststream.nats import NatsBroker

from services.audit.adapters import ClickHouseStore
from services.audit.app import make_service
from services.audit.retention import RetentionPolicy
from services.audit.settings import AuditSettings
from services.audit.writer import AuditWriter
from shared import subjects
from shared.bus import TENANTS_BUCKET, call, publish_event
from shared.cli.audit import CSV_COLUMNS, ExportFormat, write_export
from shared.messages.audit import (
    AuditPage,
    AuditVerified,
    ChainIssueKind,
    QueryAudit,
    VerifyAudit,
)
from shared.messages.tenants import TenantConfig, TenantLimits, Tier
from shared.ops import OpsClient
from shared.service import Service
from tests.integration.test_audit import audit_event, cost_event, eventually, query, usage

pytestmark = pytest.mark.integration

FREE_DAYS = 30


@pytest.fixture(scope="module")
def trail_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit-trail")


@pytest_asyncio.fixture(scope="module")
async def audit(nats_url: str, trail_dir: Path) -> AsyncIterator[Service]:
    settings = AuditSettings(
        nats_url=nats_url,
        data_dir=trail_dir,
        batch_timeout_s=0.1,
        audit_retention_by_tier={Tier.FREE.value: FREE_DAYS},
    )
    service = make_service(settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def ch(audit: Service, trail_dir: Path) -> Iterator[Client]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{(trail_dir / 'clickhouse').resolve()}")
    yield client
    client.close()


async def record(broker: NatsBroker, tid: str, n: int, **fields: object) -> list[str]:
    ids = []
    for i in range(n):
        event = audit_event(tid, f"act.{i}", **fields)
        await publish_event(broker, event, subjects.audit_event(tid))
        ids.append(event.event_id)
    await eventually(lambda: query(broker, tid), lambda p: p.total >= n)
    return ids


async def verify(broker: NatsBroker, tid: str) -> AuditVerified:
    return await call(
        broker,
        subjects.service("audit", "verify", tid),
        VerifyAudit(tenant_id=tid),
        AuditVerified,
        30,
    )


def mutate(ch: Client, sql: str, **params: object) -> None:
    ch.command(sql + " SETTINGS mutations_sync = 2", parameters=params)


# -- tamper evidence ------------------------------------------------------------------


async def test_an_untouched_chain_verifies(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("chain")
    await record(client_broker, tid, 12)
    report = await verify(client_broker, tid)
    assert report.ok and report.intact and report.rows == 12
    assert (report.first_seq, report.last_seq) == (1, 12)


async def test_verify_names_an_edited_row(
    audit: Service, client_broker: NatsBroker, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("edit")
    ids = await record(client_broker, tid, 6)
    mutate(
        ch,
        "ALTER TABLE tenantry.audit_events UPDATE actor = 'nobody' WHERE event_id = {id:String}",
        id=ids[2],
    )
    report = await verify(client_broker, tid)
    assert not report.intact
    (issue,) = report.issues
    assert issue.kind is ChainIssueKind.EDITED and issue.event_id == ids[2]


async def test_verify_names_a_deleted_row(
    audit: Service, client_broker: NatsBroker, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("del")
    await record(client_broker, tid, 6)
    mutate(
        ch,
        "ALTER TABLE tenantry.audit_events DELETE WHERE tenant_id = {tid:String} AND chain_seq = 4",
        tid=tid,
    )
    report = await verify(client_broker, tid)
    (issue,) = report.issues
    assert issue.kind is ChainIssueKind.DELETED and issue.chain_seq == 4
    assert report.rows == 5


async def test_verify_names_deleted_newest_rows_from_the_anchor(
    audit: Service, client_broker: NatsBroker, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    """Nothing in the table follows the newest row; the writer's anchor in NATS does."""
    tid = new_tenant_id("tail")
    await record(client_broker, tid, 5)
    mutate(
        ch,
        "ALTER TABLE tenantry.audit_events DELETE "
        "WHERE tenant_id = {tid:String} AND chain_seq >= 4",
        tid=tid,
    )
    report = await verify(client_broker, tid)
    (issue,) = report.issues
    assert issue.kind is ChainIssueKind.DELETED and issue.chain_seq == 4
    assert "4-5" in issue.message and report.rows == 3


async def test_verify_names_reordered_rows(
    audit: Service, client_broker: NatsBroker, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("reord")
    await record(client_broker, tid, 6)
    positions: dict[int, str] = dict(
        (int(seq), str(eid))
        for seq, eid in ch.query(
            "SELECT chain_seq, event_id FROM tenantry.audit_events WHERE tenant_id = {tid:String}",
            parameters={"tid": tid},
        ).result_rows
    )
    mutate(
        ch,
        "ALTER TABLE tenantry.audit_events UPDATE chain_seq = 5 - chain_seq "
        "WHERE tenant_id = {tid:String} AND chain_seq IN (2, 3)",
        tid=tid,
    )
    report = await verify(client_broker, tid)
    assert not report.intact
    assert {i.kind for i in report.issues} == {ChainIssueKind.REORDERED}
    text = " ".join(i.message for i in report.issues)
    assert positions[2] in text and positions[3] in text


async def test_a_replayed_batch_is_skipped_not_chained_twice(
    audit: Service, client_broker: NatsBroker, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    """What a redelivery after a lost ack looks like to a restarted writer, in-process."""
    tid = new_tenant_id("replay")
    store = ClickHouseStore(ch)
    events = [audit_event(tid, f"r.{i}") for i in range(5)]
    assert await AuditWriter(store, RetentionPolicy(365, {})).write_audit(events) == 5
    restarted = AuditWriter(store, RetentionPolicy(365, {}))  # heads reloaded from ClickHouse
    assert await restarted.write_audit(events) == 0
    assert await restarted.write_audit([*events[:2], audit_event(tid, "r.new")]) == 1
    report = await verify(client_broker, tid)
    assert report.intact and report.rows == 6 and report.last_seq == 6


# -- export -----------------------------------------------------------------------------

TRICKY = ["comma, here", 'quote " and ""two""', "new\nline\r\nand CRLF", "ünïcødé ✓ 日本"]


async def test_export_round_trips_csv_and_jsonl_for_one_tenant_only(
    audit: Service, nats_url: str, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid, other = new_tenant_id("exp"), new_tenant_id("expo")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i, text in enumerate(TRICKY * 2):
        event = audit_event(
            tid,
            f"export.{i}",
            occurred_at=t0 + timedelta(minutes=i),
            actor=text,
            error=text,
            user_agent=text,
            details={"text": text, "i": i},
        )
        await publish_event(client_broker, event, subjects.audit_event(tid))
    await publish_event(client_broker, audit_event(other, "not.mine"), subjects.audit_event(other))
    await eventually(lambda: query(client_broker, tid), lambda p: p.total >= 8)
    await eventually(lambda: query(client_broker, other), lambda p: p.total >= 1)

    async with OpsClient(nats_url) as ops:
        jsonl, csv_out = io.StringIO(), io.StringIO(newline="")
        # page_size 3: several keyset pages, including a short last one.
        n = await write_export(ops.audit_export(tid, page_size=3), ExportFormat.JSONL, jsonl)
        m = await write_export(ops.audit_export(tid, page_size=3), ExportFormat.CSV, csv_out)
        window = [
            r
            async for r in ops.audit_export(
                tid, t0 + timedelta(minutes=2), t0 + timedelta(minutes=5)
            )
        ]
    # 8 events, plus the export's own data_access row once the first export was recorded.
    lines = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert n == len(lines) and n >= 8 and m >= n
    mine = [r for r in lines if r["action"].startswith("export.")]
    assert [r["details"] for r in mine] == [
        json.dumps({"i": i, "text": t}, ensure_ascii=False, separators=(",", ":"))
        for i, t in enumerate(TRICKY * 2)
    ]
    assert all(r["tenant_id"] == tid for r in lines)
    assert [r["actor"] for r in mine] == TRICKY * 2

    parsed = list(csv.DictReader(io.StringIO(csv_out.getvalue(), newline="")))
    assert list(parsed[0]) == CSV_COLUMNS
    by_id = {r["event_id"]: r for r in parsed}
    for row in mine:
        back = by_id[row["event_id"]]
        assert back["actor"] == row["actor"] and back["error"] == row["error"]
        assert back["user_agent"] == row["user_agent"] and back["details"] == row["details"]
        assert int(back["chain_seq"]) == row["chain_seq"] and back["row_hash"] == row["row_hash"]
    assert {r["tenant_id"] for r in parsed} == {tid}
    assert [r.action for r in window] == ["export.2", "export.3", "export.4"]


# -- retention --------------------------------------------------------------------------


async def test_rows_past_their_tiers_retention_are_removed(
    audit: Service, client_broker: NatsBroker, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    free, pro = new_tenant_id("free"), new_tenant_id("pro")
    kv = await client_broker.connection.jetstream().key_value(TENANTS_BUCKET)
    for tid, tier in ((free, Tier.FREE), (pro, Tier.PRO)):
        config = TenantConfig(
            tenant_id=tid,
            version=1,
            name=tid,
            tier=tier,
            system_prompt_template="You help {{tenant_name}}.",
            allowed_models=["claude-haiku-4-5"],
            default_model="claude-haiku-4-5",
            limits=TenantLimits(
                requests_per_minute=1,
                tokens_per_minute=1,
                max_tokens_per_request=1,
                monthly_budget_nanousd=0,
            ),
        )
        await kv.put(tid, config.model_dump_json().encode())
    now = datetime.now(UTC)
    ages = {"new": 1, "mid": FREE_DAYS + 10, "old": 400}
    for tid in (free, pro):
        for name, days in ages.items():
            event = audit_event(tid, name, occurred_at=now - timedelta(days=days))
            await publish_event(client_broker, event, subjects.audit_event(tid))
    await eventually(lambda: query(client_broker, pro), lambda p: p.total >= 2)
    await eventually(lambda: query(client_broker, free), lambda p: p.total >= 1)
    kept = ch.query(
        "SELECT tenant_id, action, retention_days FROM tenantry.audit_events "
        "WHERE tenant_id IN {t:Array(String)}",
        parameters={"t": [free, pro]},
    ).result_rows
    # Each row carries its tier's retention; events already past it are not chained
    # (the TTL would drop them at insert and leave a hole in the chain).
    assert sorted(tuple(r) for r in kept) == sorted(
        [(free, "new", FREE_DAYS), (pro, "mid", 365), (pro, "new", 365)]
    )
    assert (await verify(client_broker, free)).intact
    assert (await verify(client_broker, pro)).intact


async def test_the_ttl_removes_rows_once_past_their_retention(
    audit: Service, ch: Client, new_tenant_id: Callable[[str], str]
) -> None:
    """Time cannot pass in a test, so rows land already old: TTL merges are paused for
    the insert (else ClickHouse drops expired rows while writing the part), then
    resumed and forced with OPTIMIZE FINAL, as a background merge would in time."""
    tid = new_tenant_id("ttl")
    now = datetime.now(UTC)
    rows = [
        # (name, age in days, retention_days)
        ("free-expired", FREE_DAYS + 1, FREE_DAYS),
        ("free-kept", FREE_DAYS - 1, FREE_DAYS),
        ("default-expired", 366, 365),
        ("default-kept", 364, 365),
        ("long-kept", 1000, 3650),
    ]
    ch.command("SYSTEM STOP TTL MERGES tenantry.audit_events")
    try:
        ch.insert(
            "tenantry.audit_events",
            [(name, tid, now - timedelta(days=age), days, now) for name, age, days in rows],
            column_names=["event_id", "tenant_id", "occurred_at", "retention_days", "recorded_at"],
        )
        stored = ch.query(
            "SELECT count() FROM tenantry.audit_events WHERE tenant_id = {t:String}",
            parameters={"t": tid},
        ).result_rows[0][0]
        assert stored == len(rows)
    finally:
        ch.command("SYSTEM START TTL MERGES tenantry.audit_events")
    ch.command("OPTIMIZE TABLE tenantry.audit_events FINAL")
    left = ch.query(
        "SELECT event_id FROM tenantry.audit_events WHERE tenant_id = {t:String}",
        parameters={"t": tid},
    ).result_rows
    assert sorted(r[0] for r in left) == ["default-kept", "free-kept", "long-kept"]


# -- scoped queries: injection through every filter -------------------------------------

HOSTILE = "x' OR '1'='1"


async def raw_request(
    broker: NatsBroker, subject: str, body: dict[str, object]
) -> dict[str, object]:
    reply = await broker.connection.request(subject, json.dumps(body).encode(), timeout=10)
    parsed: dict[str, object] = json.loads(reply.data)
    return parsed


async def test_no_filter_can_widen_a_query_to_another_tenant(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    me, victim = new_tenant_id("me"), new_tenant_id("victim")
    await record(client_broker, victim, 2)
    await record(client_broker, me, 1)
    query_me = subjects.service("audit", "query", me)
    base: dict[str, object] = {"tenant_id": me}
    attempts: list[tuple[str, dict[str, object]]] = [
        # tenant id in the subject: a token NATS accepts but Tenantry refuses
        (f"svc.audit.query.{HOSTILE.replace(' ', '')}", base),
        (f"svc.audit.query.{victim}", base),  # subject and body disagree
        # tenant id in the body
        (query_me, {"tenant_id": f"{me}' OR tenant_id != '"}),
        (query_me, {"tenant_id": victim}),
        # event type, times, limit
        (query_me, base | {"event_type": f"api_call{HOSTILE}"}),
        (query_me, base | {"event_type": "api_call') OR (1=1"}),
        (query_me, base | {"since": f"2020-01-01{HOSTILE}"}),
        (query_me, base | {"until": "2999-01-01') OR (1=1"}),
        (query_me, base | {"limit": "1 UNION ALL SELECT * FROM tenantry.audit_events"}),
        (query_me, base | {"limit": 10**9}),
        # export cursor and usage month
        (
            subjects.service("audit", "export", me),
            base | {"after_event_id": HOSTILE, "after_occurred_at": "2020-01-01T00:00:00Z"},
        ),
        (subjects.service("audit", "usage", me), base | {"month": "2025-01' OR '1'='1"}),
    ]
    for subject, body in attempts:
        reply = await raw_request(client_broker, subject, body)
        assert reply["error"], (subject, body)
        assert not reply.get("rows"), (subject, body)
        assert reply["tenant_id"] in (me, victim, "_unattributed")
    # Values that do validate are bound, never spliced: the widest legal query for `me`
    # still returns exactly `me`'s rows.
    widest = await query(
        client_broker,
        me,
        since=datetime(1970, 1, 1, tzinfo=UTC),
        until=datetime(2200, 1, 1, tzinfo=UTC),
        limit=10_000,
    )
    assert widest.ok and widest.total >= 1
    page = await call(
        client_broker, query_me, QueryAudit(tenant_id=me, limit=10_000), AuditPage, 10
    )
    assert {r.tenant_id for r in page.rows} == {me}
    # The table is intact: the victim's two rows, plus (depending on timing) the
    # access_denied rows the refused attempts on its subject rightly recorded.
    victim_rows = (await query(client_broker, victim)).rows
    assert len([r for r in victim_rows if r.event_type != "access_denied"]) == 2


# -- cost rollup (issue 4) ----------------------------------------------------------------


async def test_the_daily_rollup_equals_raw_cost_events(
    audit: Service,
    client_broker: NatsBroker,
    ch: Client,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid, other = new_tenant_id("roll"), new_tenant_id("rollo")
    first = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    month = first.strftime("%Y-%m")
    models = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]
    events = [
        cost_event(tid, models[i % 3], 1_000 * i + 7, occurred_at=first + timedelta(hours=7 * i))
        for i in range(60)
    ]
    events.append(cost_event(other, models[0], 5, occurred_at=first))
    for event in events:
        await publish_event(client_broker, event, subjects.cost_event(event.tenant_id))
    await eventually(lambda: usage(client_broker, tid, month), lambda r: r.requests >= 60)
    # A re-publish JetStream cannot de-duplicate (no Nats-Msg-Id), after the original is
    # stored, then a new event behind it: once that one is counted, the repeat was seen.
    js = client_broker.connection.jetstream()
    await js.publish(subjects.cost_event(tid), events[0].model_dump_json().encode())
    sentinel = cost_event(tid, models[0], 1, occurred_at=first)
    await publish_event(client_broker, sentinel, subjects.cost_event(tid))
    events.append(sentinel)
    report = await eventually(lambda: usage(client_broker, tid, month), lambda r: r.requests >= 61)
    in_month = [e for e in events if e.tenant_id == tid and e.occurred_at.month == first.month]
    assert report.requests == len(in_month)
    assert report.cost_nanousd == sum(e.cost_nanousd for e in in_month)
    assert sum(d.cost_nanousd for d in report.by_day) == report.cost_nanousd
    assert len({d.day for d in report.by_day}) > 1

    def totals(sql: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in ch.query(sql, parameters={"t": tid}).result_rows]

    raw = totals(
        "SELECT toDate(occurred_at, 'UTC') AS day, model, count(), sum(input_tokens), "
        "sum(output_tokens), sum(cost_nanousd) FROM tenantry.cost_events "
        "WHERE tenant_id = {t:String} GROUP BY day, model ORDER BY day, model"
    )
    rolled = totals(
        "SELECT day, model, sum(requests), sum(input_tokens), sum(output_tokens), "
        "sum(cost_nanousd) FROM tenantry.cost_daily "
        "WHERE tenant_id = {t:String} GROUP BY day, model ORDER BY day, model"
    )
    assert raw == rolled and len(raw) > 3
    ids = totals(
        "SELECT count(), uniqExact(event_id) FROM tenantry.cost_events WHERE tenant_id = {t:String}"
    )
    assert ids == [(len(events) - 1, len(events) - 1)]  # `other`'s event is not counted


async def test_one_requests_trail_is_found_by_its_request_id(
    audit: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("trail")
    steps = ["request.received", "retrieval.search", "llm.call", "completion.published"]
    for action in steps:
        await publish_event(
            client_broker,
            audit_event(tid, action, request_id="req-trail-1"),
            subjects.audit_event(tid),
        )
    await record(client_broker, tid, 2)  # other requests
    # record() waits for its own 2 rows only; the 4 above may land in a later batch.
    await eventually(lambda: query(client_broker, tid), lambda p: p.total >= len(steps) + 2)
    page = await query(client_broker, tid, of_request="req-trail-1")
    assert sorted(r.action for r in page.rows) == sorted(steps)
    assert {r.request_id for r in page.rows} == {"req-trail-1"}
