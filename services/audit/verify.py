"""Walking a tenant's hash chain, in constant memory, and naming every break.

Rows are read in chain_seq order, a page at a time. For each row:
- its row_hash must equal sha256(prev_hash, its content): if not, the row was EDITED;
- its chain_seq must follow the previous one: a jump means rows were DELETED, a
  repeat means a row was DUPLICATED (inserted twice, or forged);
- its prev_hash must be the previous row's row_hash. If not, and the hash it points to
  belongs to a row seen elsewhere in the walk (before or after), rows were REORDERED;
  if it points to no row at all, the row before it was DELETED (and the gap renumbered).
Only a bounded window of recent hashes is kept, so memory stays constant; a row moved
further than the window is reported as a deletion plus a stray row instead.

Retention (TTL) removes a tenant's oldest rows, so a chain may legitimately start
after seq 1; that is reported in first_seq, not as an issue.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.audit.anchors import Anchor, HeadAnchors
from services.audit.chain import GENESIS, row_hash
from services.audit.queries import Reader
from services.audit.rows import AUDIT_CONTENT_COLUMNS
from shared.messages.audit import ChainIssue, ChainIssueKind

WINDOW = 10_000
MAX_ISSUES = 100

# Content columns, then the chain columns, in chain order. Pages are windows of chain
# positions (after, upto]: with the minmax index on chain_seq each page reads only its
# own granules, where `> after ... LIMIT n` would re-read everything after `after`.
VERIFY_SQL = (
    "SELECT "
    + ", ".join(AUDIT_CONTENT_COLUMNS)
    + """, chain_seq, prev_hash, row_hash
FROM tenantry.audit_events
WHERE tenant_id = {tenant_id:String}
  AND chain_seq > {after:UInt64} AND chain_seq <= {upto:UInt64}
ORDER BY chain_seq, event_id
"""
)
LAST_SEQ_SQL = """
SELECT max(chain_seq) FROM tenantry.audit_events WHERE tenant_id = {tenant_id:String}
"""
N_CONTENT = len(AUDIT_CONTENT_COLUMNS)


@dataclass
class ChainWalk:
    rows: int = 0
    first_seq: int = 0
    last_seq: int = 0
    issues: list[ChainIssue] = field(default_factory=list)
    truncated: bool = False
    anchor: Anchor | None = None  # the writer's last recorded head (anchors.py)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    _anchor_seen: bool = False
    _prev_hash: str = GENESIS
    _seen: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict)
    # prev_hash values that pointed at no row seen yet -> (seq, event_id) of the pointer.
    _dangling: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict)

    def _issue(self, kind: ChainIssueKind, seq: int, event_id: str, message: str) -> None:
        if len(self.issues) >= MAX_ISSUES:
            self.truncated = True
            return
        self.issues.append(ChainIssue(kind=kind, chain_seq=seq, event_id=event_id, message=message))

    def feed(self, values: Sequence[Any]) -> None:
        content = values[:N_CONTENT]
        event_id = str(content[0])
        seq, prev, digest = int(values[N_CONTENT]), str(values[N_CONTENT + 1]), str(values[-1])
        self.rows += 1
        if self.rows == 1:
            self.first_seq = seq
            # A chain cut at its start by retention: take the first row's link as given.
            self._prev_hash = prev if seq > 1 else GENESIS
            self.last_seq = seq - 1
        if row_hash(prev, content) != digest:
            self._issue(
                ChainIssueKind.EDITED,
                seq,
                event_id,
                f"row {seq} (event {event_id}) does not match its hash: it was edited",
            )
        if seq == self.last_seq and self.rows > 1:
            self._issue(
                ChainIssueKind.DUPLICATED,
                seq,
                event_id,
                f"position {seq} holds more than one row (event {event_id} is extra)",
            )
        elif seq > self.last_seq + 1:
            missing = f"{self.last_seq + 1}" + (
                f"-{seq - 1}" if seq - 1 > self.last_seq + 1 else ""
            )
            self._issue(
                ChainIssueKind.DELETED,
                self.last_seq + 1,
                "",
                f"row(s) {missing} are missing: deleted before event {event_id} (row {seq})",
            )
        elif prev != self._prev_hash:
            self._broken_link(seq, event_id, prev)
        if digest in self._dangling:
            later_seq, later_id = self._dangling.pop(digest)
            self._issue(
                ChainIssueKind.REORDERED,
                seq,
                event_id,
                f"row {seq} (event {event_id}) belongs before row {later_seq} "
                f"(event {later_id}): rows were reordered",
            )
        if self.anchor is not None and seq == self.anchor.seq:
            self._anchor_seen = True
            if digest != self.anchor.hash:
                self._issue(
                    ChainIssueKind.EDITED,
                    seq,
                    event_id,
                    f"row {seq} (event {event_id}) is not the row the writer anchored at "
                    "this position: the chain up to here was rewritten",
                )
        self._remember(digest, seq, event_id)
        self._prev_hash = digest
        self.last_seq = max(self.last_seq, seq)

    def _broken_link(self, seq: int, event_id: str, prev: str) -> None:
        earlier = self._seen.get(prev)
        if earlier is not None:
            self._issue(
                ChainIssueKind.REORDERED,
                seq,
                event_id,
                f"row {seq} (event {event_id}) should follow row {earlier[0]} "
                f"(event {earlier[1]}): rows were reordered",
            )
        else:
            self._dangling[prev] = (seq, event_id)
            if len(self._dangling) > WINDOW:
                self._dangling.popitem(last=False)

    def _remember(self, digest: str, seq: int, event_id: str) -> None:
        self._seen[digest] = (seq, event_id)
        if len(self._seen) > WINDOW:
            self._seen.popitem(last=False)

    def finish(self) -> None:
        # Links that never found their row: the row they point to is gone.
        for seq, event_id in self._dangling.values():
            self._issue(
                ChainIssueKind.DELETED,
                seq,
                event_id,
                f"the row before row {seq} (event {event_id}) is missing: it was deleted "
                "and the rows after it renumbered",
            )
        self._dangling.clear()
        anchor = self.anchor
        if (
            anchor is not None
            and not self._anchor_seen
            and anchor.seq > self.last_seq
            and anchor.expires_at > self.now  # else the TTL removed it: retention
        ):
            first = self.last_seq + 1
            self._issue(
                ChainIssueKind.DELETED,
                first,
                "",
                f"row(s) {first}-{anchor.seq}, the newest the writer stored, are missing: deleted",
            )

    @property
    def intact(self) -> bool:
        return not self.issues


async def walk_chain(
    store: Reader, tenant_id: str, anchors: HeadAnchors | None = None, window: int = 20_000
) -> ChainWalk:
    """Verify a tenant's whole chain, one window of chain positions at a time."""
    walk = ChainWalk(anchor=await anchors.load(tenant_id) if anchors else None)
    last = await store.select(LAST_SEQ_SQL, {"tenant_id": tenant_id})
    last_seq = int(last[0][0]) if last and last[0][0] is not None else 0
    for after in range(0, last_seq, window):
        page = await store.select(
            VERIFY_SQL, {"tenant_id": tenant_id, "after": after, "upto": after + window}
        )
        for values in page:
            walk.feed(values)
    walk.finish()
    return walk
