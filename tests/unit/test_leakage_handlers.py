"""leakage's scan handler with a real scanner and a recording trail: no broker."""

from __future__ import annotations

from typing import Any

from services.leakage.app import default_detectors
from services.leakage.directory import TenantDirectory, TenantIdentity
from services.leakage.handlers import HANDLERS, MAX_ITEMISED, Deps, scan
from services.leakage.scanner import Scanner
from shared import subjects
from shared.messages.audit import AuditEventType
from shared.messages.base import ErrorCode
from shared.messages.leakage import ScanLocation, ScanText, TextScanned, Verdict
from tests.support.handlers import InMemoryBus, recording_trail

ACME = TenantIdentity("acme-7f3a", "Acme Corp", ("Acme",), ("acme.com",))
AWS = "AKIAIOSFODNN7EXAMPLE"


def make() -> tuple[Deps, list[Any]]:
    trail, events = recording_trail("leakage")
    scanner = Scanner(default_detectors(TenantDirectory([ACME])))
    return Deps(scanner=scanner, trail=trail), events


def ask(text: str) -> ScanText:
    return ScanText(tenant_id=ACME.tenant_id, location=ScanLocation.PROMPT, text=text)


async def test_clean_text_is_allowed_and_not_audited() -> None:
    deps, events = make()
    reply = await scan(ask("Quarterly revenue grew 12%."), deps)
    assert reply.verdict is Verdict.ALLOW and reply.findings == [] and events == []


async def test_a_finding_is_redacted_and_audited_as_totals_plus_one_event_each() -> None:
    deps, events = make()
    msg = ask(f"Use key {AWS} for the upload")
    reply = await scan(msg, deps)
    assert reply.verdict is Verdict.REDACT and AWS not in reply.text
    assert (reply.tenant_id, reply.request_id) == (msg.tenant_id, msg.request_id)
    actions = sorted(e.action for e in events)
    assert actions == ["leakage.finding", "leakage.scan"]
    assert all(e.request_id == msg.request_id for e in events)
    assert all(e.event_type is AuditEventType.LEAKAGE_DETECTED for e in events)


async def test_itemised_events_stop_at_the_cap_and_the_totals_count_the_rest() -> None:
    deps, events = make()
    many = " ".join(f"user{i}@example.org" for i in range(MAX_ITEMISED + 7))
    await scan(ask(many), deps)
    findings = [e for e in events if e.action == "leakage.finding"]
    (totals,) = [e for e in events if e.action == "leakage.scan"]
    assert len(findings) == MAX_ITEMISED
    assert totals.details["not_itemised"] == 7


async def test_a_scan_for_another_tenant_is_refused_at_intake_and_audited() -> None:
    deps, events = make()
    bus = InMemoryBus(HANDLERS, deps)
    pattern = subjects.service_all("leakage", "scan")
    body = ask("hello").model_dump_json().encode()
    await bus.deliver(pattern, subjects.service("leakage", "scan", "globex"), body, "_INBOX.x.1")
    ((inbox, data),) = bus.client.sent
    reply = TextScanned.model_validate_json(data)
    assert inbox == "_INBOX.x.1"
    assert reply.error is not None and reply.error.code is ErrorCode.INVALID_TENANT
    assert [e.event_type for e in events] == [AuditEventType.ACCESS_DENIED]
