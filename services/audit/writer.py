"""The single writer: events in, rows out, each event stored exactly once.

Exactly-once, in three layers:
1. Publishers set Nats-Msg-Id = event_id, so JetStream drops re-publishes inside its
   duplicate window.
2. The batch is acked only after ClickHouse confirmed the insert (handlers.py), so a
   crash loses nothing: unacked messages are redelivered.
3. A redelivery of something already stored (crash or lost ack after the insert) is
   skipped here: before assigning chain positions the writer asks ClickHouse which of
   the batch's event ids it already holds (an indexed read on the batch's tenants and
   time range). Only events that could be stored are asked about (watermarks.py: an
   event newer than everything stored for its tenant cannot be). In a steady stream
   that is every event, and the read (~7 us per id, and ~6 ms however few) is skipped;
   after a restart redeliveries are not newer, and are asked about as before.
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
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from services.audit.adapters import AuditStore
from services.audit.anchors import Anchor, HeadAnchors
from services.audit.chain import GENESIS, Head, link
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
from services.audit.watermarks import Watermarks
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


class AuditWriter:
    def __init__(
        self, store: AuditStore, retention: RetentionPolicy, anchors: HeadAnchors | None = None
    ) -> None:
        self._store = store
        self._retention = retention
        self._anchors = anchors
        # Chain heads of tenants seen since start; loaded from ClickHouse on first use.
        self._heads: dict[str, Head] = {}
        # Per table, what could be stored already (watermarks.py).
        self._audit_marks = Watermarks()
        self._cost_marks = Watermarks()

    async def _stored_ids(self, table: str, events: Sequence[Envelope]) -> set[str]:
        marks = self._audit_marks if table == AUDIT_TABLE else self._cost_marks
        events = marks.maybe_stored(events)
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
        found = {str(r[0]): r for r in rows}
        for t in unknown:
            _, seq, digest, latest = found.get(t, (t, 0, GENESIS, None))
            self._heads[t] = Head(int(seq), str(digest))
            self._audit_marks.load(t, latest)

    async def _load_cost_marks(self, tenants: set[str]) -> None:
        unknown = self._cost_marks.unknown(tenants)
        if not unknown:
            return
        found = dict(await self._store.select(COST_WATERMARKS_SQL, {"tenants": unknown}))
        for t in unknown:
            self._cost_marks.load(t, found.get(t))

    def _forget(self, tenants: Iterable[str]) -> None:
        """After an insert that may or may not have landed: reload from ClickHouse."""
        tenants = list(tenants)
        for tid in tenants:
            self._heads.pop(tid, None)
        self._audit_marks.forget(tenants)

    async def write_audit(self, events: Sequence[AuditRecorded]) -> int:
        """Store the events not stored yet, chained per tenant. Returns rows inserted."""
        await self._load_heads({e.tenant_id for e in events})
        stored = await self._stored_ids(AUDIT_TABLE, events)
        fresh = [e for e in events if e.event_id not in stored]
        if not fresh:
            return 0
        by_tenant: dict[str, list[AuditRecorded]] = {}
        for e in fresh:
            by_tenant.setdefault(e.tenant_id, []).append(e)
        days = await self._retention.days_for(set(by_tenant))
        now = datetime.now(UTC)
        recorded_at = to_millis(now)
        rows: list[Row] = []
        heads: dict[str, Head] = {}
        anchors: dict[str, Anchor] = {}
        for tid in sorted(by_tenant):
            # An event already past its retention would be dropped by the TTL at insert,
            # leaving a hole in the chain: it is not chained at all (and logged).
            # (Column 3 is occurred_at as stored, which the TTL reads.)
            keep_after = now - timedelta(days=days[tid])
            built = [audit_row(e, days[tid]) for e in by_tenant[tid]]
            content = [r for r in built if r[3] > keep_after]
            if len(content) < len(built):
                log.warning("audit.expired_on_arrival", events=len(built) - len(content))
            if not content:
                continue
            linked, head = link(content, self._heads[tid])
            rows.extend((*r, recorded_at) for r in linked)
            heads[tid] = head
            expires = as_utc(content[-1][3]) + timedelta(days=days[tid])
            anchors[tid] = Anchor(head.seq, head.hash, expires)
        if not rows:
            return 0
        tenants = set(heads)
        try:
            await self._store.insert_audit(rows, batch_token(rows))
        except BaseException:
            # The insert may or may not have landed: reload these heads from ClickHouse
            # next time rather than trust memory.
            self._forget(tenants)
            raise
        self._heads.update(heads)
        self._audit_marks.stored(rows)
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
                self._cost_marks.forget({e.tenant_id for e in fresh})
                raise
            self._cost_marks.stored(rows)
        return len(rows)
