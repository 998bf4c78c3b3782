"""Batch ingest with fakes: good events are written, bad ones are dead-lettered, and a
failed insert nacks the batch (with a delay) before anything is dead-lettered or acked."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import pytest
from faststream.exceptions import NackMessage
from nats.aio.msg import Msg

from services.audit import deadletter
from services.audit.handlers import Deps, retry_delay, store_batch
from services.audit.ingest import parse_batch
from services.audit.settings import AuditSettings
from shared import subjects
from shared.messages.audit import AuditEventType, AuditRecorded
from tests.support.fakebus import FakeBroker

pytestmark = pytest.mark.unit


def event(tid: str = "acme", **fields: Any) -> AuditRecorded:
    return AuditRecorded.model_validate(
        {"tenant_id": tid, "event_type": AuditEventType.API_CALL, "service": "s", "action": "a"}
        | fields
    )


def msg(data: bytes, subject: str | None = None, seq: int = 1, delivered: int = 1) -> Msg:
    reply = f"$JS.ACK.TENANTRY_EVENTS.audit-audit-events.{delivered}.{seq}.{seq}.1700000000.0"
    return Msg(
        _client=cast(Any, None),
        subject=subject or subjects.audit_event("acme"),
        reply=reply,
        data=data,
        headers={"content-type": "application/json"},
    )


def good(seq: int, tid: str = "acme", delivered: int = 1) -> Msg:
    data = event(tid).model_dump_json().encode()
    return msg(data, subjects.audit_event(tid), seq, delivered)


def test_parse_batch_splits_good_from_bad() -> None:
    batch = [
        good(1),
        msg(b"{not json", seq=2),
        msg(json.dumps({"tenant_id": "acme"}).encode(), seq=3),
        good(4, tid="other"),
        msg(event("other").model_dump_json().encode(), subjects.audit_event("acme"), 5),
    ]
    parsed = parse_batch(batch, AuditRecorded)
    assert [e.tenant_id for e in parsed.events] == ["acme", "other"]
    assert [r.message.metadata.sequence.stream for r in parsed.rejected] == [2, 3, 5]
    reasons = [r.reason for r in parsed.rejected]
    assert reasons[0].startswith("malformed AuditRecorded: body: Invalid JSON")
    assert "service: Field required" in reasons[1]
    assert reasons[2] == "tenant_id does not match the subject"


def test_parse_batch_reasons_never_echo_the_input() -> None:
    # (A bad tenant id is shown as a short escaped preview, by shared.tenancy's design.)
    secret = "sk-ant-SECRET-do-not-log"
    body = event().model_dump(mode="json") | {"status": secret, "details": secret, "x": secret}
    parsed = parse_batch([msg(json.dumps(body).encode())], AuditRecorded)
    (rejected,) = parsed.rejected
    assert "status" in rejected.reason and "x: Extra inputs" in rejected.reason
    assert secret not in rejected.reason


def test_parse_batch_drops_repeats_inside_one_batch() -> None:
    one = event()
    data = one.model_dump_json().encode()
    parsed = parse_batch([msg(data, seq=1), msg(data, seq=2)], AuditRecorded)
    assert len(parsed.events) == 1 and parsed.duplicates == 1


def test_retry_delay_grows_with_deliveries() -> None:
    assert retry_delay([msg(b"", delivered=1)]) == 2.0
    assert retry_delay([msg(b"", delivered=1), msg(b"", delivered=4)]) == 16.0
    assert retry_delay([msg(b"", delivered=50)]) == 30.0


class FakeWriter:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.inserted: list[AuditRecorded] = []

    async def write_audit(self, events: Sequence[AuditRecorded]) -> int:
        if self.fail:
            raise ConnectionError("clickhouse is down")
        self.inserted.extend(events)
        return len(events)


def deps(broker: FakeBroker, store: FakeWriter) -> Deps:
    return Deps(
        store=cast(Any, None),
        writer=cast(Any, store),
        lease=None,
        anchors=None,
        trail=cast(Any, None),
        broker=cast(Any, broker),
        settings=AuditSettings(),
    )


async def test_store_batch_inserts_then_dead_letters_the_bad_ones() -> None:
    broker, store = FakeBroker(), FakeWriter()
    batch = [good(1), msg(b"{not json", seq=2), good(3)]
    await store_batch(deps(broker, store), batch, AuditRecorded, store.write_audit)
    assert len(store.inserted) == 2
    (copy, record) = broker.published
    body, subject, kwargs = copy
    assert body == b"{not json"
    assert subject == subjects.deadletter(subjects.EVENTS_STREAM, "audit-audit-events")
    assert kwargs["stream"] == subjects.DEADLETTER_STREAM
    headers = kwargs["headers"]
    assert headers[deadletter.H_SEQUENCE] == "2"
    assert headers[deadletter.H_SUBJECT] == subjects.audit_event("acme")
    assert headers["Nats-Msg-Id"] == deadletter.dead_letter_id(
        subjects.EVENTS_STREAM, "audit-audit-events", 2
    )
    audit, audit_subject, _ = record
    assert isinstance(audit, AuditRecorded) and audit_subject == subjects.audit_event("acme")
    assert audit.action == deadletter.ACTION and audit.tenant_id == "acme"


async def test_a_failed_insert_nacks_with_delay_and_dead_letters_nothing() -> None:
    broker, store = FakeBroker(), FakeWriter(fail=True)
    batch = [good(1, delivered=2), msg(b"{not json", seq=2)]
    with pytest.raises(NackMessage) as raised:
        await store_batch(deps(broker, store), batch, AuditRecorded, store.write_audit)
    assert raised.value.extra_options == {"delay": 4.0}  # second delivery
    # Dead-lettering waits for a successful insert: the redelivered batch will do it.
    assert broker.published == []
