"""Which incoming events could already be stored, without asking ClickHouse.

A stored copy of an event has the same occurred_at (to the millisecond, what
DateTime64(3) keeps). So per tenant the writer keeps its watermark, the newest stored
occurred_at: an event newer than it cannot be stored. At 20k events/s many events
share a millisecond with the watermark, so the writer also keeps the ids stored at
exactly that millisecond (the edge), when it knows all of them: an event at the
watermark whose id is not in a complete edge cannot be stored either. Everything else
is looked up (writer.py).

Only an over-estimate is safe, and the writer keeps to that: a watermark is loaded from
ClickHouse (its edge then unknown), raised only after a confirmed insert, and dropped
after a failed one (reloaded next time). TTL deletions only lower the truth. The
single-writer lease (lease.py) guarantees nobody else inserts meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from services.audit.rows import Row, to_millis
from shared.messages.base import Envelope

E = TypeVar("E", bound=Envelope)

# The watermark of a tenant with no rows: older than any event.
NOTHING_STORED = datetime(1900, 1, 1, tzinfo=UTC)


class Watermarks:
    def __init__(self) -> None:
        self._marks: dict[str, datetime] = {}
        # Tenant -> every id stored at exactly its watermark; absent when not known.
        self._edges: dict[str, set[str]] = {}

    def unknown(self, tenants: Iterable[str]) -> list[str]:
        return sorted(t for t in set(tenants) if t not in self._marks)

    def load(self, tenant_id: str, latest: datetime | None) -> None:
        """From ClickHouse: the newest stored occurred_at (None: no rows, edge empty)."""
        self._marks[tenant_id] = to_millis(latest) if latest else NOTHING_STORED
        if latest is None:
            self._edges[tenant_id] = set()
        else:
            self._edges.pop(tenant_id, None)

    def forget(self, tenants: Iterable[str]) -> None:
        for t in tenants:
            self._marks.pop(t, None)
            self._edges.pop(t, None)

    def maybe_stored(self, events: Sequence[E]) -> list[E]:
        """The events a stored copy could exist of (every tenant must be loaded)."""
        found: list[E] = []
        for e in events:
            at, mark = to_millis(e.occurred_at), self._marks[e.tenant_id]
            if at < mark:
                found.append(e)
            elif at == mark:
                edge = self._edges.get(e.tenant_id)
                if edge is None or e.event_id in edge:
                    found.append(e)
        return found

    def stored(self, rows: Iterable[Row]) -> None:
        """After a confirmed insert of `rows`: audit or cost rows, which both start with
        event_id, request_id, tenant_id, occurred_at (as stored)."""
        for row in rows:
            event_id, tid, at = row[0], row[2], row[3]
            mark = self._marks[tid]
            if at > mark:
                # Nothing was stored at `at` before (all stored rows are <= mark): the
                # new edge is complete.
                self._marks[tid] = at
                self._edges[tid] = {event_id}
            elif at == mark and (edge := self._edges.get(tid)) is not None:
                edge.add(event_id)
