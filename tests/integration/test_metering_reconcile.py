"""ClickHouse totals (audit's `usage`) reconcile exactly with metering's live totals.

Metering's KV entry is the live truth; audit writes every CostRecorded to ClickHouse.
The two must agree to the nano-USD and the request once audit has caught up.

chDB hosts one engine per process, at one path: this module opens ONE audit service
(and with it the engine) and closes it at module end, as test_audit does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.audit.app import make_service as audit_service
from services.audit.settings import AuditSettings
from shared.messages.audit import UsageReport
from shared.messages.completions import Usage
from shared.messages.metering import CallOutcome, MeteringTotals
from shared.ops import OpsClient
from shared.service import Service
from tests.integration.test_metering import (
    FULL,
    MAX_OUT,
    PROMPT,
    Clock,
    authorize,
    limits,
    running_replicas,
    settle,
    totals,
)
from tests.support.bus import ready

pytestmark = pytest.mark.integration

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "offline-extractive")


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture(scope="module")
async def platform(
    nats_url: str,
    client_broker: NatsBroker,
    clock: Clock,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[list[Service]]:
    audit_dir: Path = tmp_path_factory.mktemp("reconcile-audit")
    audit = audit_service(AuditSettings(nats_url=nats_url, data_dir=audit_dir, batch_timeout_s=0.2))
    await audit.start()
    try:
        await ready(client_broker, "audit", "usage")
        async with running_replicas(nats_url, client_broker, clock) as metering:
            yield [audit, *metering]
    finally:
        await audit.stop()


async def reconciled(nats_url: str, seen: MeteringTotals, timeout_s: float = 20) -> UsageReport:
    """Poll audit's usage until it matches metering's totals (or the time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with OpsClient(nats_url) as ops:
        while True:
            report = await ops.usage(seen.tenant_id, seen.month)
            assert report.ok, report.error
            matched = (report.cost_nanousd, report.requests) == (
                seen.spent_nanousd,
                seen.requests_charged,
            )
            if matched or loop.time() > deadline:
                return report
            await asyncio.sleep(0.1)


async def test_clickhouse_totals_equal_metering_totals(
    platform: list[Service],
    nats_url: str,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("recon")
    lim = limits()
    rng = random.Random(11)

    async def one_request(i: int) -> None:
        model = MODELS[i % len(MODELS)]
        hold = await authorize(client_broker, tid, lim, model=model)
        assert hold.ok, hold.error
        if i % 7 == 0:  # failed before any token: released, no cost event
            usage, outcome = Usage(), CallOutcome.FAILED
        elif i % 5 == 0:  # streamed, cut short
            usage = Usage(input_tokens=PROMPT, output_tokens=rng.randint(1, MAX_OUT // 4))
            outcome = CallOutcome.PARTIAL
        else:
            usage = Usage(
                input_tokens=rng.randint(1, PROMPT),
                output_tokens=rng.randint(0, MAX_OUT),
                cache_read_input_tokens=rng.randint(0, 300),
                cache_creation_input_tokens=rng.randint(0, 100),
            )
            outcome = CallOutcome.COMPLETED
        first = await settle(client_broker, hold, usage, model=model, outcome=outcome)
        assert first.ok, first.error
        if i % 4 == 0:  # a retried settle: charged once, its cost event de-duplicated
            again = await settle(client_broker, hold, usage, model=model, outcome=outcome)
            assert again.cost_nanousd == first.cost_nanousd

    # In waves of 16: a repeat is answered (and its cost event re-published) only while
    # fewer than SETTLED_MAX (32) newer settles of the tenant came after its first, by
    # design (ledger.py); 40 at once let one repeat land past that and fail in CI.
    for wave in range(0, 40, 16):
        await asyncio.gather(*(one_request(i) for i in range(wave, min(wave + 16, 40))))
    seen = await totals(client_broker, tid)
    assert seen.requests_settled == 40 and seen.requests_charged == 40 - len(range(0, 40, 7))
    assert seen.reserved_nanousd == 0

    report = await reconciled(nats_url, seen)
    assert report.month == seen.month
    assert report.cost_nanousd == seen.spent_nanousd
    assert report.requests == seen.requests_charged
    assert sum(m.requests for m in report.by_model) == seen.requests_charged


async def test_a_call_across_midnight_lands_in_the_same_month_on_both_sides(
    platform: list[Service],
    nats_url: str,
    client_broker: NatsBroker,
    clock: Clock,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("recon-span")
    clock.pinned = datetime(2031, 7, 31, 23, 59, 58, tzinfo=UTC)
    try:
        holds = [await authorize(client_broker, tid, limits()) for _ in range(3)]
        clock.advance(timedelta(seconds=5))  # settled in August, admitted in July
        for hold in holds:
            assert (await settle(client_broker, hold, FULL)).ok
        july = await totals(client_broker, tid, month="2031-07")
        august = await totals(client_broker, tid, month="2031-08")
    finally:
        clock.pinned = None
    assert (july.requests_charged, august.requests_charged) == (3, 0)
    report = await reconciled(nats_url, july)
    assert (report.cost_nanousd, report.requests) == (july.spent_nanousd, 3)
    async with OpsClient(nats_url) as ops:
        assert (await ops.usage(tid, "2031-08")).requests == 0
