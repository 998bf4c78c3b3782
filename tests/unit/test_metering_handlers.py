"""metering's handlers over the in-memory store and a recording broker: no nats-server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from faststream.nats import NatsBroker

from services.metering.adapters import InMemoryMeteringStore
from services.metering.handlers import Deps, authorize, deprovision, provision, settle, totals
from services.metering.meter import Meter
from services.metering.pricing import DEFAULT_TABLE
from shared import subjects
from shared.audit import AuditTrail
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.base import ErrorCode
from shared.messages.completions import Usage
from shared.messages.lifecycle import DeprovisionTenant, ProvisionTenant
from shared.messages.metering import (
    AuthorizeRequest,
    CostRecorded,
    QueryMeteringTotals,
    SettleUsage,
)
from shared.messages.tenants import TenantLimits
from tests.support.fakebus import FakeBroker

MID_MARCH = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)


def make() -> tuple[Deps, FakeBroker]:
    """One fake broker carries both the audit events and the cost/budget events."""
    broker = FakeBroker()
    meter = Meter(store=InMemoryMeteringStore(), prices=DEFAULT_TABLE, clock=lambda: MID_MARCH)
    nats = cast(NatsBroker, broker)
    return Deps(meter=meter, trail=AuditTrail(nats, "metering"), broker=nats), broker


def audits(broker: FakeBroker) -> list[AuditRecorded]:
    return [body for body, _, _ in broker.published if isinstance(body, AuditRecorded)]


def ask(budget: int = 10**12) -> AuthorizeRequest:
    lim = TenantLimits(
        requests_per_minute=100,
        tokens_per_minute=10**9,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=budget,
    )
    return AuthorizeRequest(
        tenant_id="acme",
        model="claude-haiku-4-5",
        estimated_input_tokens=1_000,
        max_tokens=100,
        limits=lim,
    )


async def test_authorize_then_settle_publishes_one_cost_event_and_totals_add_up() -> None:
    deps, broker = make()
    await provision(ProvisionTenant(tenant_id="acme", limits=ask().limits), deps)
    held = await authorize(ask(), deps)
    assert held.ok and held.reservation_id and held.reserved_nanousd > 0
    done = await settle(
        SettleUsage(
            tenant_id="acme",
            reservation_id=held.reservation_id,
            model="claude-haiku-4-5",
            usage=Usage(input_tokens=900, output_tokens=40),
        ),
        deps,
    )
    assert done.ok and 0 < done.cost_nanousd <= held.reserved_nanousd
    ((cost, subject, kwargs),) = [p for p in broker.published if isinstance(p[0], bytes)]
    event = CostRecorded.model_validate_json(cast(Any, cost))
    assert subject == subjects.cost_event("acme")
    assert kwargs["headers"] == {"Nats-Msg-Id": f"cost-{held.reservation_id}"}
    assert event.cost_nanousd == done.cost_nanousd
    month = await totals(QueryMeteringTotals(tenant_id="acme"), deps)
    assert (month.spent_nanousd, month.requests_charged) == (done.cost_nanousd, 1)


async def test_a_request_over_budget_is_refused_and_audited() -> None:
    deps, broker = make()
    refused = await authorize(ask(budget=1), deps)
    assert refused.error is not None and refused.error.code is ErrorCode.BUDGET_EXCEEDED
    (event,) = audits(broker)
    assert (event.action, event.status) == ("metering.authorize", AuditStatus.FAILURE)
    assert event.request_id == refused.request_id


async def test_settling_an_unknown_reservation_charges_nothing_and_is_audited() -> None:
    deps, broker = make()
    msg = SettleUsage(tenant_id="acme", reservation_id="nope", model="m", usage=Usage())
    reply = await settle(msg, deps)
    assert reply.error is not None and reply.error.code is ErrorCode.NOT_FOUND
    assert [e.event_type for e in audits(broker)] == [AuditEventType.ERROR]
    assert not [p for p in broker.published if isinstance(p[0], bytes)]


async def test_deprovision_removes_the_state_and_is_audited() -> None:
    deps, broker = make()
    await provision(ProvisionTenant(tenant_id="acme"), deps)
    gone = await deprovision(DeprovisionTenant(tenant_id="acme"), deps)
    assert gone.removed >= 1
    assert audits(broker)[-1].action == "metering.deprovision"
