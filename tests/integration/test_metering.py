"""metering against a real nats-server, with TWO replicas sharing the KV bucket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import nats.errors
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.metering.app import bootstrap
from services.metering.pricing import DEFAULT_TABLE
from services.metering.settings import MeteringSettings
from services.metering.state import (
    MonthState,
    month_of_reservation,
    new_reservation_id,
    state_key,
)
from shared import subjects
from shared.bus import METERING_BUCKET, call
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.base import ErrorCode
from shared.messages.completions import Usage
from shared.messages.metering import (
    AuthorizeRequest,
    CostRecorded,
    RequestAuthorized,
    SettleUsage,
    UsageSettled,
)
from shared.messages.tenants import TenantLimits
from shared.service import Service

pytestmark = pytest.mark.integration

SONNET = DEFAULT_TABLE.price("claude-sonnet-4-5")
PROMPT, MAX_OUT = 2_000, 500
WORST_CASE = SONNET.worst_case(PROMPT, MAX_OUT)


@pytest_asyncio.fixture(scope="module")
async def replicas(nats_url: str) -> AsyncIterator[list[Service]]:
    services = [bootstrap(MeteringSettings(nats_url=nats_url)) for _ in range(2)]
    await asyncio.gather(*(s.start() for s in services))
    yield services
    await asyncio.gather(*(s.stop() for s in services))


def limits(budget: int = 10**12, rpm: int = 100_000) -> TenantLimits:
    return TenantLimits(
        requests_per_minute=rpm,
        tokens_per_minute=10**9,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=budget,
    )


async def authorize(broker: NatsBroker, tid: str, lim: TenantLimits) -> RequestAuthorized:
    msg = AuthorizeRequest(
        tenant_id=tid,
        model="claude-sonnet-4-5",
        estimated_input_tokens=PROMPT,
        max_tokens=MAX_OUT,
        limits=lim,
    )
    return await call(
        broker, subjects.service("metering", "authorize", tid), msg, RequestAuthorized, 10
    )


async def settle(broker: NatsBroker, msg: SettleUsage) -> UsageSettled:
    return await call(
        broker, subjects.service("metering", "settle", msg.tenant_id), msg, UsageSettled, 10
    )


async def events(broker: NatsBroker, subject: str) -> list[bytes]:
    """Every message stored on `subject` in the events stream."""
    js = broker.connection.jetstream()
    sub = await js.pull_subscribe(subject, stream=subjects.EVENTS_STREAM)
    found: list[bytes] = []
    try:
        while True:
            batch = await sub.fetch(100, timeout=0.3)
            found.extend(m.data for m in batch)
    except (TimeoutError, nats.errors.TimeoutError):
        pass
    finally:
        await sub.unsubscribe()
    return found


async def month_state(broker: NatsBroker, tid: str, reservation_id: str) -> MonthState:
    kv = await broker.connection.jetstream().key_value(METERING_BUCKET)
    entry = await kv.get(state_key(tid, month_of_reservation(reservation_id) or ""))
    assert entry.value is not None
    return MonthState.model_validate_json(entry.value)


async def test_budget_admits_exactly_what_fits_across_replicas(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("budget")
    lim = limits(budget=20 * WORST_CASE)
    replies = await asyncio.gather(*(authorize(client_broker, tid, lim) for _ in range(60)))
    admitted = [r for r in replies if r.ok]
    refused = [r for r in replies if not r.ok]
    assert len(admitted) == 20
    assert len({r.reservation_id for r in admitted}) == 20
    assert all(r.reserved_nanousd == WORST_CASE for r in admitted)
    assert {r.error.code for r in refused if r.error} == {ErrorCode.BUDGET_EXCEEDED}
    assert refused[0].error and "of $" in refused[0].error.message
    state = await month_state(client_broker, tid, admitted[0].reservation_id)
    assert state.reserved_nanousd == 20 * WORST_CASE

    audits = [
        AuditRecorded.model_validate_json(d)
        for d in await events(client_broker, subjects.audit_event(tid))
    ]
    denials = [a for a in audits if a.event_type is AuditEventType.API_CALL]
    assert len(denials) == 40
    assert all(a.status is AuditStatus.FAILURE and a.details["reason"] == "budget" for a in denials)


async def test_requests_per_minute_hold_across_replicas(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("rpm")
    replies = await asyncio.gather(
        *(authorize(client_broker, tid, limits(rpm=10)) for _ in range(30))
    )
    assert sum(r.ok for r in replies) == 10
    limited = [r.error for r in replies if r.error]
    assert all(e.code is ErrorCode.RATE_LIMITED and e.retryable for e in limited)
    assert "retry in" in limited[0].message


async def test_settle_records_cost_once(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("settle")
    hold = await authorize(client_broker, tid, limits(budget=WORST_CASE * 4))
    assert hold.ok
    usage = Usage(
        input_tokens=1_200,
        output_tokens=300,
        cache_read_input_tokens=500,
        cache_creation_input_tokens=100,
    )
    expected = 1_200 * 3_000 + 300 * 15_000 + 500 * 300 + 100 * 3_750
    msg = SettleUsage(
        tenant_id=tid, reservation_id=hold.reservation_id, model="claude-sonnet-4-5", usage=usage
    )
    first, second = await settle(client_broker, msg), await settle(client_broker, msg)
    assert first.ok and first.cost_nanousd == expected
    assert second.ok and second.cost_nanousd == expected  # same answer, charged once

    state = await month_state(client_broker, tid, hold.reservation_id)
    assert state.spent_nanousd == expected and state.reserved_nanousd == 0

    costs = [
        CostRecorded.model_validate_json(d)
        for d in await events(client_broker, subjects.cost_event(tid))
    ]
    assert len(costs) == 1
    assert costs[0].cost_nanousd == expected and costs[0].usage == usage
    assert costs[0].price_version == DEFAULT_TABLE.version
    assert costs[0].request_id == msg.request_id


async def test_failed_call_releases_without_cost_event(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("zero")
    hold = await authorize(client_broker, tid, limits())
    msg = SettleUsage(
        tenant_id=tid, reservation_id=hold.reservation_id, model="claude-sonnet-4-5", usage=Usage()
    )
    reply = await settle(client_broker, msg)
    assert reply.ok and reply.cost_nanousd == 0
    assert (await month_state(client_broker, tid, hold.reservation_id)).reserved_nanousd == 0
    assert await events(client_broker, subjects.cost_event(tid)) == []


async def test_unknown_model_and_bad_reservation_are_clear_errors(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("errs")
    msg = AuthorizeRequest(
        tenant_id=tid,
        model="gpt-imaginary",
        estimated_input_tokens=1,
        max_tokens=1,
        limits=limits(),
    )
    reply = await call(
        client_broker, subjects.service("metering", "authorize", tid), msg, RequestAuthorized, 10
    )
    assert reply.error and reply.error.code is ErrorCode.UNKNOWN_MODEL
    assert "gpt-imaginary" in reply.error.message
    bad = SettleUsage(tenant_id=tid, reservation_id="nope", model="m", usage=Usage())
    settled = await settle(client_broker, bad)
    assert settled.error and settled.error.code is ErrorCode.NOT_FOUND
    never_issued = SettleUsage(
        tenant_id=tid,
        reservation_id=new_reservation_id("2026-03"),
        model="claude-sonnet-4-5",
        usage=Usage(input_tokens=10),
    )
    settled = await settle(client_broker, never_issued)
    assert settled.error and settled.error.code is ErrorCode.NOT_FOUND
    assert "nothing was charged" in settled.error.message


async def test_budget_alerts_fire_once(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("alerts")
    lim = limits(budget=4 * WORST_CASE)
    for _ in range(4):
        hold = await authorize(client_broker, tid, lim)
        full = Usage(cache_creation_input_tokens=PROMPT, output_tokens=MAX_OUT)  # = worst case
        await settle(
            client_broker,
            SettleUsage(
                tenant_id=tid,
                reservation_id=hold.reservation_id,
                model="claude-sonnet-4-5",
                usage=full,
            ),
        )
    audits = [
        AuditRecorded.model_validate_json(d)
        for d in await events(client_broker, subjects.audit_event(tid))
    ]
    alerts = [
        a.details["threshold_pct"] for a in audits if a.event_type is AuditEventType.BUDGET_ALERT
    ]
    assert alerts == [50, 80, 100]
    refused = await authorize(client_broker, tid, lim)
    assert refused.error and refused.error.code is ErrorCode.BUDGET_EXCEEDED
