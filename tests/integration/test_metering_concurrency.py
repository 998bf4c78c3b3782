"""Budgets and rate limits hold for a tenant as a whole across THREE replicas.

Two hundred requests at once, each authorised by whichever replica the queue group
hands it to. What makes this hold is the compare-and-set on the tenant-month KV
entry (see services.metering.meter); these tests are its proof on a real server.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from shared.messages.base import ErrorCode
from shared.messages.completions import Usage
from shared.messages.metering import RequestAuthorized
from shared.service import Service
from tests.integration.test_metering import (
    FULL,
    MAX_OUT,
    PROMPT,
    SONNET,
    WORST_CASE,
    Clock,
    authorize,
    cost_events,
    limits,
    running_replicas,
    settle,
    totals,
)

pytestmark = pytest.mark.integration

CONCURRENT = 200
FITS = 50


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


def real_usage(rng: random.Random) -> Usage:
    """Something a model could really have billed within the hold."""
    return Usage(
        input_tokens=rng.randint(0, PROMPT),
        output_tokens=rng.randint(0, MAX_OUT),
        cache_read_input_tokens=rng.randint(0, 50),
    )


async def test_two_hundred_requests_admit_exactly_the_fifty_that_fit(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    """Each request authorises then settles using all it was allowed: no room ever
    comes back, so exactly 50 may run and spend lands exactly on the budget."""
    tid = new_tenant_id("fifty")
    lim = limits(budget=FITS * WORST_CASE)

    async def one_request() -> RequestAuthorized:
        hold = await authorize(client_broker, tid, lim)
        if hold.ok:
            assert (await settle(client_broker, hold, FULL)).cost_nanousd == WORST_CASE
        return hold

    replies = await asyncio.gather(*(one_request() for _ in range(CONCURRENT)))
    admitted = [r for r in replies if r.ok]
    assert len(admitted) == FITS
    assert len({r.reservation_id for r in admitted}) == FITS
    assert {r.error.code for r in replies if r.error} == {ErrorCode.BUDGET_EXCEEDED}
    seen = await totals(client_broker, tid)
    assert seen.spent_nanousd == FITS * WORST_CASE == seen.budget_nanousd
    assert (seen.reserved_nanousd, seen.requests_charged) == (0, FITS)
    costs = await cost_events(client_broker, tid)
    assert sum(c.cost_nanousd for c in costs) == seen.spent_nanousd and len(costs) == FITS


async def test_concurrent_holds_then_real_usage_never_overspend(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    """All 200 ask before any settles: 50 holds fit, then each settles its real usage."""
    tid = new_tenant_id("holds")
    lim = limits(budget=FITS * WORST_CASE)
    replies = await asyncio.gather(*(authorize(client_broker, tid, lim) for _ in range(CONCURRENT)))
    admitted = [r for r in replies if r.ok]
    assert len(admitted) == FITS
    assert (await totals(client_broker, tid)).reserved_nanousd == FITS * WORST_CASE

    rng = random.Random(4)
    usages = [real_usage(rng) for _ in admitted]
    settled = await asyncio.gather(
        *(settle(client_broker, hold, usage) for hold, usage in zip(admitted, usages, strict=True))
    )
    expected = [SONNET.cost(u) for u in usages]
    assert [s.cost_nanousd for s in settled] == expected
    seen = await totals(client_broker, tid)
    assert seen.spent_nanousd == sum(expected) <= FITS * WORST_CASE
    assert (seen.reserved_nanousd, seen.in_flight, seen.requests_settled) == (0, 0, FITS)


async def test_room_freed_by_settles_is_reused_but_never_overspent(
    replicas: list[Service], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    """Authorise then settle real (smaller) usage at once: settled room is admitted again,
    and spend plus holds never pass the budget at any write, so spend never does."""
    tid = new_tenant_id("reuse")
    lim = limits(budget=FITS * WORST_CASE)
    rng = random.Random(7)
    usages = [real_usage(rng) for _ in range(CONCURRENT)]

    async def one_request(usage: Usage) -> int | None:
        hold = await authorize(client_broker, tid, lim)
        if not hold.ok:
            assert hold.error and hold.error.code is ErrorCode.BUDGET_EXCEEDED
            return None
        return (await settle(client_broker, hold, usage)).cost_nanousd

    charged = [c for c in await asyncio.gather(*(one_request(u) for u in usages)) if c is not None]
    assert len(charged) >= FITS
    seen = await totals(client_broker, tid)
    assert seen.spent_nanousd == sum(charged) <= FITS * WORST_CASE
    assert (seen.reserved_nanousd, seen.requests_settled) == (0, len(charged))


async def test_requests_per_minute_hold_for_the_tenant_not_per_replica(
    replicas: list[Service],
    client_broker: NatsBroker,
    clock: Clock,
    new_tenant_id: Callable[[str], str],
) -> None:
    # Pinned inside one minute, so the window is deterministic whatever the wall clock.
    clock.pinned = datetime(2031, 6, 1, 9, 30, 15, tzinfo=UTC)
    tid = new_tenant_id("rpm")
    replies = await asyncio.gather(
        *(authorize(client_broker, tid, limits(rpm=30)) for _ in range(CONCURRENT))
    )
    assert sum(r.ok for r in replies) == 30  # not 3 x 30
    limited = [r.error for r in replies if r.error]
    assert all(e.code is ErrorCode.RATE_LIMITED and e.retryable for e in limited)
    assert "30 requests per minute" in limited[0].message and "retry in" in limited[0].message


async def test_tokens_per_minute_hold_for_the_tenant_not_per_replica(
    replicas: list[Service],
    client_broker: NatsBroker,
    clock: Clock,
    new_tenant_id: Callable[[str], str],
) -> None:
    clock.pinned = datetime(2031, 6, 1, 10, 30, 15, tzinfo=UTC)
    tid = new_tenant_id("tpm")
    per_request = PROMPT + MAX_OUT
    lim = limits(tpm=10 * per_request)
    replies = await asyncio.gather(*(authorize(client_broker, tid, lim) for _ in range(CONCURRENT)))
    admitted = [r for r in replies if r.ok]
    assert len(admitted) == 10
    assert all(r.error.code is ErrorCode.RATE_LIMITED for r in replies if r.error)

    # Tokens held but not used go back to the window: settling two holds with nothing
    # used frees room for exactly two more requests in the same minute.
    await asyncio.gather(*(settle(client_broker, h, Usage()) for h in admitted[:2]))
    again = await asyncio.gather(*(authorize(client_broker, tid, lim) for _ in range(20)))
    assert sum(r.ok for r in again) == 2
