"""The hash chain and its verifier, on plain tuples: each kind of tampering is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.audit.anchors import Anchor
from services.audit.chain import GENESIS, Head, canonical, link, row_hash
from services.audit.rows import Row, audit_row
from services.audit.verify import ChainWalk
from shared.messages.audit import AuditEventType, AuditRecorded, ChainIssueKind

pytestmark = pytest.mark.unit

T0 = datetime(2025, 5, 1, tzinfo=UTC)


def chain(n: int) -> list[Row]:
    content = [
        audit_row(
            AuditRecorded(
                tenant_id="acme",
                event_id=f"e{i:03d}",
                request_id=f"r{i:03d}",
                event_type=AuditEventType.API_CALL,
                service="gw",
                action=f"a.{i}",
                occurred_at=T0 + timedelta(seconds=i),
                details={"i": i, "note": 'a,"b"\nç'},
            ),
            365,
        )
        for i in range(1, n + 1)
    ]
    rows, head = link(content, Head())
    assert head.seq == n
    return rows


def walk(rows: list[Row], anchor: Anchor | None = None) -> ChainWalk:
    w = ChainWalk(anchor=anchor)
    for r in sorted(rows, key=lambda r: (r[-3], r[0])):  # chain_seq, event_id
        w.feed(r)
    w.finish()
    return w


def test_linking_is_deterministic_and_starts_at_genesis() -> None:
    rows = chain(3)
    assert rows == chain(3)
    assert rows[0][-3:-1] == (1, GENESIS)
    assert rows[1][-2] == rows[0][-1] and rows[2][-2] == rows[1][-1]
    assert canonical(rows[0][:-3]).decode().count("2025-05-01T00:00:01.000Z") == 1


def test_an_untouched_chain_is_intact() -> None:
    w = walk(chain(20))
    assert w.intact and (w.rows, w.first_seq, w.last_seq) == (20, 1, 20)


def test_an_edited_row_is_named() -> None:
    rows = chain(10)
    edited = list(rows[4])
    edited[6] = "something.else"  # action
    rows[4] = tuple(edited)
    (issue,) = walk(rows).issues
    assert issue.kind is ChainIssueKind.EDITED and issue.chain_seq == 5
    assert issue.event_id == "e005"


def test_an_edited_and_rehashed_row_breaks_the_next_link() -> None:
    rows = chain(10)
    edited = list(rows[4][:-3])
    edited[6] = "forged"
    prev = rows[4][-2]
    rows[4] = (*edited, 5, prev, row_hash(prev, edited))
    issues = walk(rows).issues
    assert issues and all(i.chain_seq in (5, 6) for i in issues)
    assert "row 6" in issues[0].message


def test_a_deleted_row_is_named() -> None:
    rows = chain(10)
    del rows[6]
    (issue,) = walk(rows).issues
    assert issue.kind is ChainIssueKind.DELETED and issue.chain_seq == 7
    assert "7" in issue.message and "e008" in issue.message


def test_reordered_rows_are_named() -> None:
    rows = chain(10)
    a, b = list(rows[3]), list(rows[4])
    a[-3], b[-3] = 5, 4  # swap positions 4 and 5
    rows[3], rows[4] = tuple(a), tuple(b)
    issues = walk(rows).issues
    assert issues and {i.kind for i in issues} == {ChainIssueKind.REORDERED}
    text = " ".join(i.message for i in issues)
    assert "e004" in text and "e005" in text
    assert all(i.chain_seq in (4, 5, 6) for i in issues)


def test_a_duplicated_row_is_named() -> None:
    rows = chain(5)
    rows.append(rows[2])
    kinds = [i.kind for i in walk(rows).issues]
    assert ChainIssueKind.DUPLICATED in kinds


def test_a_chain_cut_by_retention_is_not_tampering() -> None:
    rows = chain(10)[4:]
    w = walk(rows)
    assert w.intact and w.first_seq == 5 and w.last_seq == 10


def anchor_of(rows: list[Row], expires: datetime | None = None) -> Anchor:
    last = rows[-1]
    return Anchor(int(last[-3]), str(last[-1]), expires or datetime.now(UTC) + timedelta(days=1))


def test_the_anchor_catches_deleted_newest_rows() -> None:
    rows = chain(10)
    anchor = anchor_of(rows)
    assert walk(rows, anchor).intact
    (issue,) = walk(rows[:8], anchor).issues
    assert issue.kind is ChainIssueKind.DELETED and issue.chain_seq == 9
    assert "9-10" in issue.message


def test_newest_rows_gone_after_the_anchor_expired_are_retention() -> None:
    rows = chain(10)
    expired = anchor_of(rows, datetime.now(UTC) - timedelta(seconds=1))
    assert walk(rows[:8], expired).intact
    assert walk([], expired).intact


def test_the_anchor_catches_a_rewritten_chain() -> None:
    rows = chain(10)
    anchor = anchor_of(rows)
    # Rewrite row 3 and recompute every hash after it: the chain is self-consistent...
    content = [list(r[:-3]) for r in rows]
    content[2][6] = "forged"
    forged, _ = link([tuple(c) for c in content], Head())
    assert walk(forged).intact
    # ...but does not end where the writer said it did.
    (issue,) = walk(forged, anchor).issues
    assert issue.kind is ChainIssueKind.EDITED and issue.chain_seq == 10


def test_the_canonical_form_and_hash_are_pinned() -> None:
    """Stored chains (and exported files) are verified against this exact byte form:
    any change to canonical() would report every existing row as edited."""
    content = audit_row(
        AuditRecorded(
            tenant_id="acme",
            event_id="e001",
            request_id="r001",
            event_type=AuditEventType.API_CALL,
            service="gw",
            action="a.1",
            occurred_at=datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
            error='boom \u2028 "q"',
            details={"i": 1, "note": 'a,"b"\nç', "f": 1.5, "b": True, "n": None},
        ),
        365,
    )
    assert canonical(content).startswith(b'["e001","r001","acme","2025-05-01T12:00:00.123Z",')
    assert row_hash(GENESIS, content) == (
        "96da62e9df28c53e2c4312be58b3c5c497ea447d0d89c37a3669386396738741"
    )
