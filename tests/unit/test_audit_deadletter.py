"""Dead-letter helpers: attribution, idempotent ids, header copying, loop breaking."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from nats.js.api import RawStreamMsg

from services.audit import deadletter
from shared import subjects
from shared.messages.audit import AuditRecorded
from shared.tenancy import UNATTRIBUTED
from tests.support.fakebus import FakeBroker

pytestmark = pytest.mark.unit


def test_tenant_comes_from_a_valid_subject_token_only() -> None:
    assert deadletter.tenant_of("evt.acme.audit") == "acme"
    assert deadletter.tenant_of("tenant.acme.request") == "acme"
    assert deadletter.tenant_of("evt.BAD_ID.audit") == UNATTRIBUTED
    assert deadletter.tenant_of("") == UNATTRIBUTED
    assert deadletter.tenant_of("$KV.tenantry-tenants.acme") == UNATTRIBUTED


def test_dead_letter_ids_are_stable_and_valid_event_ids() -> None:
    one = deadletter.dead_letter_id("TENANTRY_EVENTS", "c", 7)
    assert one == deadletter.dead_letter_id("TENANTRY_EVENTS", "c", 7)
    assert one != deadletter.dead_letter_id("TENANTRY_EVENTS", "c", 8)
    assert one != deadletter.dead_letter_id("TENANTRY_EVENTS", "d", 7)
    event = deadletter.dead_letter_event(
        subject="evt.acme.audit", data=b"", stream="S", consumer="c", sequence=7, reason="r"
    )
    assert event.event_id == deadletter.dead_letter_id("S", "c", 7)


def test_copy_headers_keeps_the_original_but_not_its_msg_id() -> None:
    headers = deadletter.copy_headers(
        {
            "Nats-Msg-Id": "orig",
            "content-type": "application/json",
            "Nats-Expected-Stream": "S",
            "Nats-Rollup": "sub",
        },
        subject="evt.acme.audit",
        stream="TENANTRY_EVENTS",
        consumer="c",
        sequence=3,
        reason="bad\r\nInjected: yes " + "x" * 2_000,
    )
    assert headers["Nats-Msg-Id"] == deadletter.dead_letter_id("TENANTRY_EVENTS", "c", 3)
    assert "Nats-Expected-Stream" not in headers and "Nats-Rollup" not in headers
    assert headers["content-type"] == "application/json"
    assert headers[deadletter.H_SUBJECT] == "evt.acme.audit"
    assert len(headers[deadletter.H_REASON]) == 500
    assert all("\n" not in v and "\r" not in v for v in headers.values())


def test_dead_letter_event_for_an_invalid_subject_is_unattributed_and_escaped() -> None:
    event = deadletter.dead_letter_event(
        subject="evt.Evil\n*.audit",
        data=b"\xff",
        stream="TENANTRY_EVENTS",
        consumer="c",
        sequence=1,
        reason="bad",
    )
    assert event.tenant_id == UNATTRIBUTED
    assert "\n" not in str(event.details["subject"])
    assert event.error == "bad" and event.resource_id == "TENANTRY_EVENTS/1"


def test_request_id_is_carried_over_when_usable() -> None:
    assert deadletter.request_id_of(json.dumps({"request_id": "abc-1"}).encode()) == "abc-1"
    assert deadletter.request_id_of(json.dumps({"request_id": "a.b"}).encode()) != "a.b"
    assert deadletter.request_id_of(b"[1]") and deadletter.request_id_of(b"\xff")


def test_deadletter_subject_survives_odd_server_names() -> None:
    assert deadletter.deadletter_subject("S", "a$b") == "deadletter.S.a_b"


def test_a_dead_lettered_dead_letter_record_is_recognised() -> None:
    record = deadletter.dead_letter_event(
        subject="evt.acme.audit", data=b"", stream="S", consumer="c", sequence=1, reason="r"
    )
    data = record.model_dump_json().encode()
    assert deadletter.is_dead_letter_record("evt.acme.audit", data)
    assert not deadletter.is_dead_letter_record("evt.acme.cost", data)
    assert not deadletter.is_dead_letter_record("evt.acme.audit", b"{}")


ADVISORY = deadletter.MaxDeliveriesAdvisory.model_validate(
    {
        "type": "io.nats.jetstream.advisory.v1.max_deliver",
        "id": "x",
        "timestamp": "2025-01-01T00:00:00Z",
        "stream": "TENANTRY_REQUESTS",
        "consumer": "gateway-requests",
        "stream_seq": 42,
        "deliveries": 5,
    }
)


async def test_advisory_copies_the_message_and_records_it() -> None:
    original = RawStreamMsg(subject="tenant.acme.request", seq=42, data=b'{"q":1}', headers=None)
    broker = FakeBroker(original)
    await deadletter.on_advisory(cast(Any, broker), ADVISORY)
    (copy, record) = broker.published
    assert copy[0] == b'{"q":1}'
    assert copy[1] == subjects.deadletter("TENANTRY_REQUESTS", "gateway-requests")
    assert isinstance(record[0], AuditRecorded) and record[0].tenant_id == "acme"
    assert record[0].error == "max deliveries reached (5)"


async def test_advisory_for_a_vanished_message_still_records_it() -> None:
    broker = FakeBroker(None)
    await deadletter.on_advisory(cast(Any, broker), ADVISORY)
    ((record, subject, _),) = broker.published
    assert subject == subjects.audit_event(UNATTRIBUTED)
    assert "no longer in the stream" in record.error
