"""Budget periods: calendar months that reset on time, soft alerts, the hard stop.

Replicas read an injected clock, pinned in a far-off year so the real month never
interferes; the KV entries are the real ones on a real nats-server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from shared import subjects
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.base import ErrorCode
from shared.messages.metering import BudgetAlerted
from shared.service import Service
from tests.integration.test_metering import (
    FULL,
    WORST_CASE,
    Clock,
    authorize,
    cost_events,
    events,
    limits,
    running_replicas,
    settle,
    totals,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture(scope="module")
async def replicas(
    nats_url: str, client_broker: NatsBroker, clock: Clock
) -> AsyncIterator[list[Service]]:
    async with running_replicas(nats_url, client_broker, clock) as services:
        yield services


async def spend_full_holds(broker: NatsBroker, tid: str, budget: int, n: int) -> None:
    for _ in range(n):
        hold = await authorize(broker, tid, limits(budget=budget))
        assert hold.ok, hold.error
        assert (await settle(broker, hold, FULL)).cost_nanousd == WORST_CASE


async def budget_alerts(broker: NatsBroker, tid: str) -> list[BudgetAlerted]:
    raw = await events(broker, subjects.event(tid, "budget"))
    return [BudgetAlerted.model_validate_json(d) for d in raw]


async def audit_alerts(broker: NatsBroker, tid: str) -> list[AuditRecorded]:
    audits = [
        AuditRecorded.model_validate_json(d)
        for d in await events(broker, subjects.audit_event(tid))
    ]
    return [a for a in audits if a.event_type is AuditEventType.BUDGET_ALERT]


async def test_alerts_at_50_80_100_then_a_hard_stop_then_a_new_month(
    replicas: list[Service],
    client_broker: NatsBroker,
    clock: Clock,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("period")
    budget = 10 * WORST_CASE
    clock.pinned = datetime(2031, 1, 31, 23, 50, tzinfo=UTC)

    await spend_full_holds(client_broker, tid, budget, 4)  # 40 %
    assert await budget_alerts(client_broker, tid) == []
    await spend_full_holds(client_broker, tid, budget, 1)  # 50 %
    await spend_full_holds(client_broker, tid, budget, 3)  # 80 %
    await spend_full_holds(client_broker, tid, budget, 2)  # 100 %

    alerts = await budget_alerts(client_broker, tid)
    assert [(a.month, a.threshold_pct) for a in alerts] == [
        ("2031-01", 50),
        ("2031-01", 80),
        ("2031-01", 100),
    ]
    assert [a.spent_nanousd for a in alerts] == [5 * WORST_CASE, 8 * WORST_CASE, budget]
    assert all(a.budget_nanousd == budget for a in alerts)
    rows = await audit_alerts(client_broker, tid)
    assert [r.details["threshold_pct"] for r in rows] == [50, 80, 100]
    assert {r.resource_id for r in rows} == {"2031-01"}

    # The hard stop: a clear, non-retryable error that names the period and its end.
    stopped = await authorize(client_broker, tid, limits(budget=budget))
    assert stopped.error and stopped.error.code is ErrorCode.BUDGET_EXCEEDED
    assert not stopped.error.retryable
    assert "used up" in stopped.error.message and "2031-02" in stopped.error.message
    seen = await totals(client_broker, tid)
    assert (seen.month, seen.spent_nanousd, seen.alerts_pct) == ("2031-01", budget, [50, 80, 100])

    # Midnight UTC: a new period, with nothing spent and no alerts sent yet.
    clock.pinned = datetime(2031, 2, 1, 0, 0, 1, tzinfo=UTC)
    assert (await totals(client_broker, tid)).spent_nanousd == 0
    await spend_full_holds(client_broker, tid, budget, 5)
    seen = await totals(client_broker, tid)
    assert (seen.month, seen.spent_nanousd, seen.alerts_pct) == ("2031-02", budget // 2, [50])
    assert [a.month for a in await budget_alerts(client_broker, tid)][-1] == "2031-02"
    # January is still there, unchanged, for whoever asks for it by name.
    assert (await totals(client_broker, tid, month="2031-01")).spent_nanousd == budget


async def test_a_call_spanning_midnight_is_charged_to_the_month_it_was_admitted_in(
    replicas: list[Service],
    client_broker: NatsBroker,
    clock: Clock,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("span")
    clock.pinned = datetime(2031, 3, 31, 23, 59, 59, tzinfo=UTC)
    hold = await authorize(client_broker, tid, limits())
    clock.advance(timedelta(seconds=2))  # now 2031-04-01
    assert (await settle(client_broker, hold, FULL)).cost_nanousd == WORST_CASE
    assert (await totals(client_broker, tid, month="2031-03")).spent_nanousd == WORST_CASE
    assert (await totals(client_broker, tid)).spent_nanousd == 0
    # ...and its cost event is dated inside that month, so ClickHouse files it there too.
    (cost,) = await cost_events(client_broker, tid)
    assert cost.occurred_at.strftime("%Y-%m") == "2031-03"
