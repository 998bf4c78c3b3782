"""audit's handlers with a fake store, no broker: what the ops verbs read and answer,
what an export audits, how a batch is timed for /metrics, and what drain/close stop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faststream.exceptions import NackMessage
from nats.aio.msg import Msg

from services.audit.handlers import HANDLERS, Deps, export_page, store_audit, usage
from services.audit.ingest import parse_batch
from services.audit.settings import AuditSettings
from shared import subjects
from shared.messages.audit import (
    AuditEventType,
    AuditPage,
    AuditRecorded,
    ExportAudit,
    QueryAudit,
    QueryUsage,
)
from shared.messages.base import ErrorCode
from shared.metrics import ServiceMetrics
from tests.support.handlers import InMemoryBus, recording_trail

pytestmark = pytest.mark.unit

INBOX = "_INBOX.test.1"


class FakeStore:
    """Answers every SELECT with `rows`, and keeps the parameters it was asked with."""

    def __init__(self, rows: list[tuple[Any, ...]] | None = None) -> None:
        self.rows = rows or []
        self.selected: list[dict[str, Any]] = []
        self.closed = False

    async def select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.selected.append(parameters)
        return self.rows

    async def close(self) -> None:
        self.closed = True


class FakeWriter:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def write_audit(self, events: Sequence[AuditRecorded]) -> int:
        if self.fail:
            raise ConnectionError("clickhouse is down")
        return len(events)


def make(
    store: FakeStore | None = None, **fields: Any
) -> tuple[Deps, FakeStore, list[AuditRecorded]]:
    store = store or FakeStore()
    trail, events = recording_trail("audit")
    broker = SimpleNamespace(connection=SimpleNamespace(max_payload=1_048_576))
    deps = Deps(
        store=cast(Any, store),
        writer=cast(Any, fields.pop("writer", FakeWriter())),
        trail=trail,
        broker=cast(Any, broker),
        settings=AuditSettings(),
        **fields,
    )
    return deps, store, events


async def test_a_query_for_another_tenant_is_refused_before_any_sql() -> None:
    deps, store, events = make()
    bus = InMemoryBus(HANDLERS, deps)
    body = QueryAudit(tenant_id="other").model_dump_json().encode()
    await bus.deliver(subjects.service_all("audit", "query"), "svc.audit.query.acme", body, INBOX)
    (sent,) = bus.client.sent
    reply = AuditPage.model_validate_json(sent[1])
    assert reply.error is not None and reply.error.code is ErrorCode.INVALID_TENANT
    assert store.selected == []
    (denied,) = events
    assert (denied.tenant_id, denied.event_type) == ("acme", AuditEventType.ACCESS_DENIED)


async def test_a_query_reads_only_the_subjects_tenant() -> None:
    deps, store, _ = make()
    bus = InMemoryBus(HANDLERS, deps)
    body = QueryAudit(tenant_id="acme").model_dump_json().encode()
    await bus.deliver(subjects.service_all("audit", "query"), "svc.audit.query.acme", body, INBOX)
    reply = AuditPage.model_validate_json(bus.client.sent[0][1])
    assert reply.ok and reply.tenant_id == "acme"
    assert store.selected and all(p["tenant_id"] == "acme" for p in store.selected)


async def test_usage_of_an_impossible_month_is_malformed_and_runs_no_sql() -> None:
    deps, store, _ = make()
    request = QueryUsage(tenant_id="acme", month="2026-13")
    reply = await usage(request, deps)
    assert reply.error is not None and reply.error.code is ErrorCode.MALFORMED_REQUEST
    assert (reply.tenant_id, reply.request_id) == ("acme", request.request_id)
    assert store.selected == []


async def test_an_export_is_audited_once_on_its_first_page_only() -> None:
    deps, _, events = make()
    first = ExportAudit(tenant_id="acme", page_size=10)
    reply = await export_page(first, deps)
    assert reply.ok and reply.done
    (event,) = events
    assert (event.tenant_id, event.request_id) == ("acme", first.request_id)
    assert (event.event_type, event.action) == (AuditEventType.DATA_ACCESS, "audit.export")
    later = ExportAudit(tenant_id="acme", after_occurred_at=datetime.now(UTC), page_size=10)
    await export_page(later, deps)
    assert len(events) == 1


def batch(*tenants: str) -> list[Msg]:
    out = []
    for seq, tid in enumerate(tenants, 1):
        event = AuditRecorded(
            tenant_id=tid, event_type=AuditEventType.API_CALL, service="s", action="a"
        )
        out.append(
            Msg(
                _client=cast(Any, None),
                subject=subjects.audit_event(tid),
                reply=f"$JS.ACK.TENANTRY_EVENTS.audit-audit-events.1.{seq}.{seq}.1700000000.0",
                data=event.model_dump_json().encode(),
            )
        )
    return out


def exposition(metrics: ServiceMetrics) -> str:
    return metrics.exposition()[0].decode()


async def test_a_batch_is_timed_as_one_handling_without_tenant_series() -> None:
    metrics = ServiceMetrics("audit")
    deps, _, _ = make(metrics=metrics)
    messages = batch("acme", "globex", "acme")
    await store_audit(messages, parse_batch(messages, AuditRecorded), deps)
    body = exposition(metrics)
    assert (
        'tenantry_handler_seconds_count{handler="evt.*.audit",outcome="ok",service="audit"} 1.0'
        in body
    )
    assert "tenantry_tenant_messages_total{" not in body


async def test_a_failed_batch_is_timed_as_an_error_and_still_nacked() -> None:
    metrics = ServiceMetrics("audit")
    deps, _, _ = make(metrics=metrics, writer=FakeWriter(fail=True))
    messages = batch("acme")
    with pytest.raises(NackMessage):
        await store_audit(messages, parse_batch(messages, AuditRecorded), deps)
    assert 'handler="evt.*.audit",outcome="error"' in exposition(metrics)


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def release(self) -> None:
        self.log.append(f"release {self.name}")


async def test_drain_stops_the_consumers_before_releasing_the_lease() -> None:
    log: list[str] = []
    consumers = (Recorder("audit", log), Recorder("cost", log))
    deps, store, _ = make(consumers=consumers, lease=Recorder("lease", log))
    await deps.drain()
    assert log == ["stop audit", "stop cost", "release lease"]
    assert not store.closed


async def test_close_closes_only_a_store_bootstrap_opened() -> None:
    given, given_store, _ = make()
    await given.close()
    assert not given_store.closed
    opened, opened_store, _ = make(owns_store=True)
    await opened.close()
    assert opened_store.closed
