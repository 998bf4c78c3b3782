"""The export writer of `tenantry audit export`: CSV that round-trips, JSONL, streaming."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from shared.cli.audit import CSV_COLUMNS, ExportFormat, spreadsheet_safe, write_export
from shared.messages.audit import AuditRow

pytestmark = pytest.mark.unit

NASTY = ["a,b", 'say "hi"', "two\nlines", "crlf\r\nend", "ünï ✓ 日本", "", " lead", "=1+1"]


def row(i: int, text: str) -> AuditRow:
    return AuditRow(
        event_id=f"e{i}",
        request_id="r",
        occurred_at=datetime(2025, 1, 1, 0, 0, i, tzinfo=UTC),
        event_type="api_call",
        service="gw",
        action=text,
        resource_type="doc",
        resource_id=text,
        status="success",
        error=text,
        actor=text,
        details=json.dumps({"t": text}, ensure_ascii=False),
        tenant_id="acme",
        user_agent=text,
        chain_seq=i,
    )


async def rows() -> AsyncIterator[AuditRow]:
    for i, text in enumerate(NASTY):
        yield row(i, text)


async def test_csv_round_trips_every_awkward_value() -> None:
    out = io.StringIO(newline="")
    assert await write_export(rows(), ExportFormat.CSV, out) == len(NASTY)
    back = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert len(back) == len(NASTY)
    for parsed, text in zip(back, NASTY, strict=True):
        assert list(parsed) == CSV_COLUMNS
        # Formula-looking cells come back with the apostrophe that disarms them.
        expected = "'" + text if text.startswith("=") else text
        assert parsed["action"] == parsed["error"] == parsed["actor"] == expected
        assert json.loads(parsed["details"]) == {"t": text}


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x")', "+1", "-1+1", "@SUM(A1)", "\tx"])
def test_csv_cells_that_a_spreadsheet_would_run_are_disarmed(cell: str) -> None:
    assert spreadsheet_safe(cell) == "'" + cell
    assert spreadsheet_safe("plain " + cell) == "plain " + cell


async def test_jsonl_is_one_row_per_line() -> None:
    out = io.StringIO()
    await write_export(rows(), ExportFormat.JSONL, out)
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == len(NASTY) + 1
    assert [AuditRow.model_validate_json(line).actor for line in lines[:-1]] == NASTY
