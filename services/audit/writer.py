"""The single writer: events in, rows out, each event stored exactly once.

Exactly-once, in three layers:
1. Publishers set Nats-Msg-Id = event_id, so JetStream drops re-publishes inside its
   duplicate window.
2. The batch is acked only after ClickHouse confirmed the insert (handlers.py), so a
   crash loses nothing: unacked messages are redelivered.
3. A redelivery of something already stored (crash or lost ack after the insert) is
   skipped here: before assigning chain positions the writer asks ClickHouse which of
   the batch's event ids it already holds (an indexed read on the batch's tenants and
   time range). Only events that could be stored are asked about: a stored copy has
   the same occurred_at, so an event newer than everything stored for its tenant (the
   tenant's watermark, loaded from ClickHouse on first use and raised after each
   insert) cannot be one. In a steady stream that is nearly every event, and the read
   (the largest cost per batch once batches grew: ~7 us per id) is skipped; after a
   restart redeliveries are older than the watermark and are asked about as before.
   Doing it here rather than with ReplacingMergeTree matters twice: a
   duplicate would otherwise get a second chain position (a fork in the chain), and
   cost_daily's materialized view would count it twice (a view sees every insert,
   whatever merges do later). Each insert also carries an insert_deduplication_token
   (verified honoured by chDB 4.4 on a non-replicated MergeTree with
   non_replicated_deduplication_window), so replaying the very same prepared batch is
   a no-op too.
A batch is one part (tables are partitioned by insert month), so an insert is
all-or-nothing and a crash cannot leave half a batch (a hole in a chain).

After the insert each tenant's new chain head is anchored in NATS KV (anchors.py), so
`verify` can also tell when the newest rows were deleted or a whole chain rewritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from services.audit.adapters import AuditStore
from services.audit.anchors import Anchor, HeadAnchors
from services.audit.chain import Head, link
from services.audit.retention import RetentionPolicy
from services.audit.rows import (
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    COST_TABLE,
    Row,
    as_utc,
    audit_row,
    cost_row,
    to_millis,
)
from shared.logging import get_logger
from shared.messages.audit import AuditRecorded
from shared.messages.base import Envelope
from shared.messages.metering import CostRecorded

log = get_logger("tenantry.audit.writer")

# Two literal texts rather than a table-name parameter: the table is never a value.
STORED_IDS_SQL = {
    AUDIT_TABLE: """
SELECT event_id FROM tenantry.audit_events
WHERE tenant_id IN {tenants:Array(String)}
  AND occurred_at >= {earliest:DateTime64(3, 'UTC')}
  AND occurred_at <= {latest:DateTime64(3, 'UTC')}
  AND event_id IN {ids:Array(String)}
""",
    COST_TABLE: """
SELECT event_id FROM tenantry.cost_events
WHERE tenant_id IN {tenants:Array(String)}
  AND occurred_at >= {earliest:DateTime64(3, 'UTC')}
  AND occurred_at <= {latest:DateTime64(3, 'UTC')}
  AND event_id IN {ids:Array(String)}
""",
}

HEADS_SQL = """
SELECT tenant_id, max(chain_seq), argMax(row_hash, chain_seq), max(occurred_at)
FROM tenantry.audit_events
WHERE tenant_id IN {tenants:Array(String)}
GROUP BY tenant_id
"""

COST_WATERMARKS_SQL = """
SELECT tenant_id, max(occurred_at)
FROM tenantry.cost_events
WHERE tenant_id IN {tenants:Array(String)}
GROUP BY tenant_id
"""

# The watermark of a tenant with no rows: older than any event.
NOTHING_STORED = datetime(1900, 1, 1, tzinfo=UTC)

E = TypeVar("E", bound=Envelope)


def batch_token(rows: Sequence[Row]) -> str:
    """Same prepared rows -> same token -> ClickHouse stores them once.

    Audit rows: chain_seq and row_hash (the last three columns are chain_seq, prev_hash,
    row_hash, then recorded_at) already commit to the whole content and position, so
    they stand for the row (a tenth of the cost of hashing every column). Cost rows:
    every column but recorded_at (the insert time), so a replay matches its original."""
    digest = hashlib.sha256()
    for row in rows:
        if len(row) == len(AUDIT_COLUMNS):
            digest.update(f"{row[-4]}:{row[-2]}\n".encode())
        else:
            digest.update(repr(row[:-1]).encode() + b"\n")
    return digest.hexdigest()


def maybe_stored(events: Sequence[E], watermarks: Mapping[str, datetime]) -> list[E]:
    """The events a stored copy could exist of: not newer than their tenant's newest row."""
    return [e for e in events if to_millis(e.occurred_at) <= watermarks[e.tenant_id]]


def raise_watermarks(watermarks: dict[str, datetime], events: Iterable[Envelope]) -> None:
    for e in events:
        at = to_millis(e.occurred_at)
        if at > watermarks[e.tenant_id]:
            watermarks[e.tenant_id] = at


class AuditWriter:
    def __init__(
        self, store: AuditStore, retention: RetentionPolicy, anchors: HeadAnchors | None = None
    ) -> None:
        self._store = store
        self._retention = retention
        self._anchors = anchors
        # Chain heads of tenants seen since start; loaded from ClickHouse on first use.
        self._heads: dict[str, Head] = {}
        # Per table, each known tenant's newest stored occurred_at (see the module doc).
        # Only ever an over-estimate is safe (TTL deletions may lower the truth): it is
        # loaded from ClickHouse, raised after a confirmed insert, dropped on a failure.
        self._audit_marks: dict[str, datetime] = {}
        self._cost_marks: dict[str, datetime] = {}

    async def _stored_ids(self, table: str, events: Sequence[Envelope]) -> set[str]:
        marks = self._audit_marks if table == AUDIT_TABLE else self._cost_marks
        events = maybe_stored(events, marks)
        if not events:
            return set()
        times = [to_millis(e.occurred_at) for e in events]
        rows = await self._store.select(
            STORED_IDS_SQL[table],
            {
                "tenants": sorted({e.tenant_id for e in events}),
                "earliest": min(times),
                "latest": max(times),
                "ids": [e.event_id for e in events],
            },
        )
        return {str(r[0]) for r in rows}

    async def _load_heads(self, tenants: set[str]) -> None:
        """Chain heads and audit watermarks, together: both come from one read."""
        unknown = sorted(t for t in tenants if t not in self._heads)
        if not unknown:
            return
        rows = await self._store.select(HEADS_SQL, {"tenants": unknown})
        for t in unknown:
            self._heads[t] = Head()
            self._audit_marks[t] = NOTHING_STORED
        for tid, seq, digest, latest in rows:
            self._heads[str(tid)] = Head(int(seq), str(digest))
            self._audit_marks[str(tid)] = as_utc(latest)

    async def _load_cost_marks(self, tenants: set[str]) -> None:
        unknown = sorted(t for t in tenants if t not in self._cost_marks)
        if not unknown:
            return
        rows = await self._store.select(COST_WATERMARKS_SQL, {"tenants": unknown})
        for t in unknown:
            self._cost_marks[t] = NOTHING_STORED
        for tid, latest in rows:
            self._cost_marks[str(tid)] = as_utc(latest)

    def _forget(self, tenants: Iterable[str]) -> None:
        """After an insert that may or may not have landed: reload from ClickHouse."""
        for tid in tenants:
            self._heads.pop(tid, None)
            self._audit_marks.pop(tid, None)

    async def write_audit(self, events: Sequence[AuditRecorded]) -> int:
        """Store the events not stored yet, chained per tenant. Returns rows inserted."""
        await self._load_heads({e.tenant_id for e in events})
        stored = await self._stored_ids(AUDIT_TABLE, events)
        fresh = [e for e in events if e.event_id not in stored]
        if not fresh:
            return 0
        tenants = {e.tenant_id for e in fresh}
        days = await self._retention.days_for(tenants)
        now = datetime.now(UTC)
        # An event already past its retention would be dropped by the TTL at insert,
        # leaving a hole in the chain: it is not chained at all (and logged).
        kept = [e for e in fresh if as_utc(e.occurred_at) + timedelta(days=days[e.tenant_id]) > now]
        if len(kept) < len(fresh):
            log.warning("audit.expired_on_arrival", events=len(fresh) - len(kept))
        if not kept:
            return 0
        fresh, tenants = kept, {e.tenant_id for e in kept}
        recorded_at = to_millis(now)
        rows: list[Row] = []
        heads: dict[str, Head] = {}
        anchors: dict[str, Anchor] = {}
        for tid in sorted(tenants):
            content = [audit_row(e, days[tid]) for e in fresh if e.tenant_id == tid]
            linked, head = link(content, self._heads[tid])
            rows.extend((*r, recorded_at) for r in linked)
            heads[tid] = head
            expires = as_utc(content[-1][3]) + timedelta(days=days[tid])
            anchors[tid] = Anchor(head.seq, head.hash, expires)
        try:
            await self._store.insert_audit(rows, batch_token(rows))
        except BaseException:
            # The insert may or may not have landed: reload these heads from ClickHouse
            # next time rather than trust memory.
            self._forget(tenants)
            raise
        self._heads.update(heads)
        raise_watermarks(self._audit_marks, fresh)
        if self._anchors is not None:
            try:
                await self._anchors.save(anchors)
            except Exception:
                # The rows are stored: failing the batch now would only redeliver it to
                # be skipped. A lagging anchor is tolerated by verify (anchors.py).
                log.warning("anchor.save_failed", tenants=len(heads), exc_info=True)
        return len(rows)

    async def write_cost(self, events: Sequence[CostRecorded]) -> int:
        await self._load_cost_marks({e.tenant_id for e in events})
        stored = await self._stored_ids(COST_TABLE, events)
        recorded_at = to_millis(datetime.now(UTC))
        fresh = [e for e in events if e.event_id not in stored]
        rows = [cost_row(e, recorded_at) for e in fresh]
        if rows:
            try:
                await self._store.insert_cost(rows, batch_token(rows))
            except BaseException:
                for e in fresh:
                    self._cost_marks.pop(e.tenant_id, None)
                raise
            raise_watermarks(self._cost_marks, fresh)
        return len(rows)
