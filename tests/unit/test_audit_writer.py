"""The writer against a fake store: which events it asks ClickHouse about (only those a
stored copy could exist of), and that a stored one is never written or chained twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.audit.retention import RetentionPolicy
from services.audit.rows import AUDIT_COLUMNS, Row
from services.audit.writer import HEADS_SQL, STORED_IDS_SQL, AuditWriter, batch_token
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.metering import CostRecorded

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)


class FakeStore:
    """Keeps inserted rows; answers the writer's reads from them."""

    def __init__(self) -> None:
        self.audit: list[Row] = []
        self.cost: list[Row] = []
        self.asked: list[list[str]] = []  # the ids of each stored-ids read
        self.lose_next_answer = False

    async def insert_audit(self, rows: Sequence[Row], token: str = "") -> None:
        self.audit.extend(rows)
        if self.lose_next_answer:  # stored, but the writer is told it failed
            self.lose_next_answer = False
            raise RuntimeError("connection reset")

    async def insert_cost(self, rows: Sequence[Row], token: str = "") -> None:
        self.cost.extend(rows)

    async def command(self, sql: str) -> None:
        pass

    async def select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        tenants = set(parameters["tenants"])
        if sql == HEADS_SQL:
            heads: dict[str, tuple[Any, ...]] = {}
            for r in self.audit:
                if r[2] in tenants and (r[2] not in heads or r[-4] > heads[r[2]][1]):
                    latest = max(x[3] for x in self.audit if x[2] == r[2])
                    heads[r[2]] = (r[2], r[-4], r[-2], latest)
            return list(heads.values())
        if sql in STORED_IDS_SQL.values():
            self.asked.append(list(parameters["ids"]))
            rows = self.audit if "audit_events" in sql else self.cost
            return [(r[0],) for r in rows if r[0] in set(parameters["ids"])]
        return []  # cost watermarks: tests below start with an empty cost table

    async def close(self) -> None:
        pass


def audit(i: int, at: datetime, tid: str = "acme") -> AuditRecorded:
    return AuditRecorded(
        tenant_id=tid,
        event_id=f"e{i:04d}",
        event_type=AuditEventType.API_CALL,
        service="gw",
        action="a",
        occurred_at=at,
    )


def writer(store: FakeStore) -> AuditWriter:
    return AuditWriter(store, RetentionPolicy(365, {}))


async def test_events_newer_than_everything_stored_are_not_looked_up() -> None:
    store = FakeStore()
    w = writer(store)
    first = [audit(i, NOW + timedelta(milliseconds=i)) for i in range(5)]
    assert await w.write_audit(first) == 5
    later = [audit(i, NOW + timedelta(seconds=1, milliseconds=i)) for i in range(5, 10)]
    assert await w.write_audit(later) == 5
    assert store.asked == []  # an empty table, then strictly newer events
    assert [r[-4] for r in store.audit] == list(range(1, 11))


async def test_events_in_the_newest_rows_millisecond_are_looked_up_only_if_they_could_be() -> None:
    store = FakeStore()
    w = writer(store)
    await w.write_audit([audit(0, NOW), audit(1, NOW)])
    # The writer stored every row of that millisecond itself: a new id there is new.
    assert await w.write_audit([audit(2, NOW)]) == 1
    assert store.asked == []
    # A restarted writer cannot know which ids share the newest millisecond: it asks.
    restarted = writer(store)
    assert await restarted.write_audit([audit(1, NOW), audit(3, NOW)]) == 1
    assert store.asked == [["e0001", "e0003"]]
    assert sorted(r[0] for r in store.audit) == ["e0000", "e0001", "e0002", "e0003"]


async def test_a_redelivered_event_is_looked_up_and_skipped() -> None:
    store = FakeStore()
    w = writer(store)
    events = [audit(i, NOW + timedelta(milliseconds=i)) for i in range(5)]
    await w.write_audit(events)
    late = audit(9, NOW + timedelta(milliseconds=2))  # older than the newest stored row
    new = audit(10, NOW + timedelta(seconds=1))
    assert await w.write_audit([events[4], late, new]) == 2
    assert store.asked == [[events[4].event_id, late.event_id]]  # not `new`
    assert sorted(r[0] for r in store.audit) == sorted(
        [e.event_id for e in events] + [late.event_id, new.event_id]
    )


async def test_a_restarted_writer_loads_the_watermark_and_skips_the_replay() -> None:
    store = FakeStore()
    events = [audit(i, NOW + timedelta(milliseconds=i)) for i in range(5)]
    await writer(store).write_audit(events)
    restarted = writer(store)
    assert await restarted.write_audit(events) == 0
    assert len(store.asked) == 1 and len(store.audit) == 5


async def test_a_failed_insert_forgets_the_watermark() -> None:
    store = FakeStore()
    w = writer(store)
    await w.write_audit([audit(0, NOW)])
    events = [audit(i, NOW + timedelta(seconds=1, milliseconds=i)) for i in range(1, 4)]
    store.lose_next_answer = True
    with pytest.raises(RuntimeError):
        await w.write_audit(events)
    # The rows landed: the redelivery must be looked up (watermark and head reloaded).
    assert await w.write_audit(events) == 0
    assert [r[-4] for r in store.audit] == [1, 2, 3, 4]


async def test_cost_events_are_looked_up_only_when_they_could_be_stored() -> None:
    store = FakeStore()
    w = writer(store)

    def cost(i: int, at: datetime) -> CostRecorded:
        return CostRecorded.model_validate(
            {
                "tenant_id": "acme",
                "event_id": f"c{i}",
                "occurred_at": at,
                "model": "m",
                "usage": {"input_tokens": 1, "output_tokens": 1},
                "cost_nanousd": 5,
                "price_version": "v1",
            }
        )

    first = [cost(i, NOW + timedelta(milliseconds=i)) for i in range(3)]
    assert await w.write_cost(first) == 3
    assert store.asked == []
    assert await w.write_cost([first[1], cost(7, NOW + timedelta(seconds=1))]) == 1
    assert store.asked == [["c1"]]


def test_the_batch_token_depends_on_the_rows_not_on_the_insert_time() -> None:
    row = ("e1", *[""] * (len(AUDIT_COLUMNS) - 5), 1, "p", "h1")
    a, b = (*row, NOW), (*row, NOW + timedelta(seconds=5))
    assert batch_token([a]) == batch_token([b])
    assert batch_token([a]) != batch_token([(*row[:-1], "h2", NOW)])
