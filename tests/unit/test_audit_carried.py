"""A request's trail in one event: the rows a caller carries are stored as rows of their
own, and a carried row cannot speak for another tenant or hide rows of its own."""

from __future__ import annotations

from typing import Any

import pytest

from services.audit.ingest import parse_batch
from shared import subjects
from shared.messages.audit import AuditEventType, AuditRecorded
from tests.unit.test_audit_ingest import msg

pytestmark = pytest.mark.unit


def row(tid: str = "acme", service: str = "gateway", **fields: Any) -> AuditRecorded:
    return AuditRecorded.model_validate(
        {"tenant_id": tid, "event_type": AuditEventType.API_CALL, "service": service}
        | {"action": "a"}
        | fields
    )


def carrier(*carried: AuditRecorded, tid: str = "acme") -> bytes:
    return row(tid, carried=list(carried)).model_dump_json().encode()


def test_carried_rows_are_stored_as_rows_of_their_own() -> None:
    search = row(service="retrieval", event_type=AuditEventType.DATA_ACCESS)
    invoke = row(service="llm")
    parsed = parse_batch([msg(carrier(search, invoke))], AuditRecorded)
    assert [e.service for e in parsed.events] == ["gateway", "retrieval", "llm"]
    assert {e.event_id for e in parsed.events[1:]} == {search.event_id, invoke.event_id}
    assert parsed.rejected == []


def test_a_carried_row_of_another_tenant_refuses_the_whole_message() -> None:
    parsed = parse_batch([msg(carrier(row("globex", service="llm")))], AuditRecorded)
    assert parsed.events == []
    assert [r.reason for r in parsed.rejected] == ["a carried row names another tenant"]


def test_a_carried_row_cannot_carry_rows_itself() -> None:
    nested = row(service="llm", carried=[row(service="retrieval")])
    parsed = parse_batch([msg(carrier(nested))], AuditRecorded)
    assert parsed.events == [] and "carries rows of its own" in parsed.rejected[0].reason


def test_a_carried_row_seen_twice_in_a_batch_is_stored_once() -> None:
    search = row(service="retrieval")
    first, again = msg(carrier(search), seq=1), msg(carrier(search), seq=2)
    parsed = parse_batch([first, again], AuditRecorded)
    assert [e.service for e in parsed.events].count("retrieval") == 1
    assert parsed.duplicates == 1


def test_the_carrier_subject_still_decides_the_tenant() -> None:
    body = carrier(row(service="llm"))
    parsed = parse_batch([msg(body, subjects.audit_event("globex"))], AuditRecorded)
    assert parsed.events == [] and parsed.rejected
