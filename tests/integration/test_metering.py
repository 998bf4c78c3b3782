"""metering against a real nats-server, with THREE replicas sharing the KV bucket.

The helpers here (clock, calls, event reads) are shared by the other
test_metering_* modules; each module starts its own replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import nats.errors
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.metering.app import make_service as bootstrap
from services.metering.pricing import DEFAULT_TABLE
from services.metering.settings import MeteringSettings
from services.metering.state import new_reservation_id
from shared import subjects
from shared.bus import call
from shared.messages.base import ErrorCode, utcnow
from shared.messages.completions import Usage
from shared.messages.metering import (
    AuthorizeRequest,
    CallOutcome,
    CostRecorded,
    MeteringTotals,
    QueryMeteringTotals,
    RequestAuthorized,
    SettleUsage,
    UsageSettled,
)
from shared.messages.tenants import TenantLimits
from shared.service import Service
from tests.support.bus import ready

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-5"
SONNET = DEFAULT_TABLE.price(MODEL)
PROMPT, MAX_OUT = 2_000, 500
WORST_CASE = SONNET.worst_case(PROMPT, MAX_OUT)
# Usage that costs exactly the hold: the prompt billed as a cache write, every output token.
FULL = Usage(cache_creation_input_tokens=PROMPT, output_tokens=MAX_OUT)
REPLICAS = 3


class Clock:
    """Real time unless pinned; every replica of a module reads the same one."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned or utcnow()

    def advance(self, delta: timedelta) -> None:
        assert self.pinned is not None
        self.pinned += delta


@asynccontextmanager
async def running_replicas(
    nats_url: str, client: NatsBroker, clock: Callable[[], datetime] = utcnow
) -> AsyncIterator[list[Service]]:
    services = [
        bootstrap(MeteringSettings(nats_url=nats_url), clock=clock) for _ in range(REPLICAS)
    ]
    await asyncio.gather(*(s.start() for s in services))
    await ready(client, "metering", "totals")
    try:
        yield services
    finally:
        await asyncio.gather(*(s.stop() for s in services))


def limits(budget: int = 10**12, rpm: int = 100_000, tpm: int = 10**9) -> TenantLimits:
    return TenantLimits(
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=budget,
    )


async def authorize(
    broker: NatsBroker, tid: str, lim: TenantLimits, model: str = MODEL
) -> RequestAuthorized:
    msg = AuthorizeRequest(
        tenant_id=tid, model=model, estimated_input_tokens=PROMPT, max_tokens=MAX_OUT, limits=lim
    )
    return await call(
        broker, subjects.service("metering", "authorize", tid), msg, RequestAuthorized, 10
    )


async def settle(
    broker: NatsBroker,
    hold: RequestAuthorized,
    usage: Usage,
    model: str = MODEL,
    outcome: CallOutcome = CallOutcome.COMPLETED,
) -> UsageSettled:
    msg = SettleUsage(
        tenant_id=hold.tenant_id,
        request_id=hold.request_id,
        reservation_id=hold.reservation_id,
        model=model,
        usage=usage,
        outcome=outcome,
    )
    return await call(
        broker, subjects.service("metering", "settle", msg.tenant_id), msg, UsageSettled, 10
    )


async def totals(broker: NatsBroker, tid: str, month: str | None = None) -> MeteringTotals:
    msg = QueryMeteringTotals(tenant_id=tid, month=month)
    reply = await call(broker, subjects.service("metering", "totals", tid), msg, MeteringTotals, 10)
    assert reply.ok, reply.error
    return reply


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


async def cost_events(broker: NatsBroker, tid: str) -> list[CostRecorded]:
    return [
        CostRecorded.model_validate_json(d) for d in await events(broker, subjects.cost_event(tid))
    ]


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def real_time_by_default(clock: Clock) -> None:
    clock.pinned = None


@pytest_asyncio.fixture(scope="module")
async def replicas(
    nats_url: str, client_broker: NatsBroker, clock: Clock
) -> AsyncIterator[list[Service]]:
    async with running_replicas(nats_url, client_broker, clock) as services:
        yield services


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
    first, second = (
        await settle(client_broker, hold, usage),
        await settle(client_broker, hold, usage),
    )
    assert first.ok and first.cost_nanousd == expected
    assert second.ok and second.cost_nanousd == expected  # same answer, charged once

    seen = await totals(client_broker, tid)
    assert (seen.spent_nanousd, seen.reserved_nanousd) == (expected, 0)
    assert (seen.requests_settled, seen.requests_charged, seen.in_flight) == (1, 1, 0)
    assert seen.budget_nanousd == WORST_CASE * 4

    costs = await cost_events(client_broker, tid)
    assert len(costs) == 1
    assert costs[0].cost_nanousd == expected and costs[0].usage == usage
    assert costs[0].price_version == DEFAULT_TABLE.version
    assert costs[0].request_id == hold.request_id


async def test_failed_call_releases_its_hold_without_cost(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("zero")
    lim = limits(budget=WORST_CASE)  # room for exactly one hold
    hold = await authorize(client_broker, tid, lim)
    blocked = await authorize(client_broker, tid, lim)
    assert blocked.error and blocked.error.code is ErrorCode.BUDGET_EXCEEDED
    assert blocked.error.retryable  # a hold in flight may free room
    reply = await settle(client_broker, hold, Usage(), outcome=CallOutcome.FAILED)
    assert reply.ok and reply.cost_nanousd == 0
    seen = await totals(client_broker, tid)
    assert (seen.reserved_nanousd, seen.requests_settled, seen.requests_charged) == (0, 1, 0)
    assert await cost_events(client_broker, tid) == []
    assert (await authorize(client_broker, tid, lim)).ok  # the room is back


async def test_cut_short_and_failed_calls_pay_for_the_tokens_they_used(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("partial")
    lim = limits()
    streamed = await authorize(client_broker, tid, lim)
    cut = Usage(input_tokens=PROMPT, output_tokens=37)  # stream cut after 37 tokens
    partial = await settle(client_broker, streamed, cut, outcome=CallOutcome.PARTIAL)
    assert partial.ok and partial.cost_nanousd == PROMPT * SONNET.input + 37 * SONNET.output

    # A call that failed after the provider had billed the prompt is charged the prompt.
    broken = await authorize(client_broker, tid, lim)
    billed = Usage(input_tokens=PROMPT)
    failed = await settle(client_broker, broken, billed, outcome=CallOutcome.FAILED)
    assert failed.ok and failed.cost_nanousd == PROMPT * SONNET.input

    # The offline model's tokens (even cache ones) are never free either.
    offline = await authorize(client_broker, tid, lim, model="offline-extractive")
    odd = Usage(cache_read_input_tokens=10)
    charged = await settle(client_broker, offline, odd, model="offline-extractive")
    assert charged.ok and charged.cost_nanousd > 0

    costs = {c.request_id: c for c in await cost_events(client_broker, tid)}
    assert costs[streamed.request_id].outcome is CallOutcome.PARTIAL
    assert costs[streamed.request_id].usage == cut
    assert costs[broken.request_id].outcome is CallOutcome.FAILED
    assert all(c.cost_nanousd > 0 for c in costs.values()) and len(costs) == 3
    seen = await totals(client_broker, tid)
    assert seen.spent_nanousd == sum(c.cost_nanousd for c in costs.values())


async def test_unsettled_hold_expires_after_its_ttl(
    replicas: list[Service],
    client_broker: NatsBroker,
    clock: Clock,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("expiry")
    clock.pinned = datetime(2031, 5, 10, 12, 0, 0, tzinfo=UTC)
    lim = limits(budget=WORST_CASE)
    lost = await authorize(client_broker, tid, lim)  # its caller dies and never settles
    assert lost.ok
    clock.advance(timedelta(seconds=599))
    assert not (await authorize(client_broker, tid, lim)).ok  # still held
    assert (await totals(client_broker, tid)).in_flight == 1

    clock.advance(timedelta(seconds=2))  # past the 600 s default TTL
    seen = await totals(client_broker, tid)
    assert (seen.in_flight, seen.reserved_nanousd) == (0, 0)
    fresh = await authorize(client_broker, tid, lim)
    assert fresh.ok

    # A very late settle of the expired hold still pays for its tokens (and only once).
    late = await settle(client_broker, lost, Usage(input_tokens=10))
    assert late.ok and late.cost_nanousd == 10 * SONNET.input
    assert (
        await settle(client_broker, lost, Usage(input_tokens=10))
    ).cost_nanousd == late.cost_nanousd
    seen = await totals(client_broker, tid)
    assert (seen.spent_nanousd, seen.in_flight, seen.requests_charged) == (late.cost_nanousd, 1, 1)


async def test_unknown_model_and_bad_reservation_are_clear_errors(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("errs")
    reply = await authorize(client_broker, tid, limits(), model="gpt-imaginary")
    assert reply.error and reply.error.code is ErrorCode.UNKNOWN_MODEL
    assert "gpt-imaginary" in reply.error.message
    bad = RequestAuthorized(tenant_id=tid, reservation_id="nope")
    settled = await settle(client_broker, bad, Usage())
    assert settled.error and settled.error.code is ErrorCode.NOT_FOUND
    never_issued = RequestAuthorized(tenant_id=tid, reservation_id=new_reservation_id("2026-03"))
    settled = await settle(client_broker, never_issued, Usage(input_tokens=10))
    assert settled.error and settled.error.code is ErrorCode.NOT_FOUND
    assert "nothing was charged" in settled.error.message


async def test_totals_of_an_unknown_tenant_are_empty(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    seen = await totals(client_broker, new_tenant_id("nobody"), month="2030-01")
    assert seen.month == "2030-01" and seen.budget_nanousd is None
    assert (seen.spent_nanousd, seen.reserved_nanousd, seen.requests_settled) == (0, 0, 0)
