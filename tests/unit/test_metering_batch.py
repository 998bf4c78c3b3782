"""Group commit: one read and one compare-and-set per burst, decisions still exact."""

from __future__ import annotations

import asyncio

import pytest

from services.metering.adapters import Conflict, InMemoryMeteringStore
from services.metering.ledger import Admitted, Rejected
from services.metering.meter import Meter
from services.metering.pricing import DEFAULT_TABLE
from services.metering.state import MonthState, month_of
from shared.messages.base import ErrorCode, utcnow
from shared.messages.metering import AuthorizeRequest
from shared.messages.tenants import TenantLimits

pytestmark = pytest.mark.unit

HOLD = 1_000 * 1_250 + 100 * 5_000  # haiku, 1,000 prompt tokens, 100 output


def ask(budget: int) -> AuthorizeRequest:
    return AuthorizeRequest(
        tenant_id="acme",
        model="claude-haiku-4-5",
        estimated_input_tokens=1_000,
        max_tokens=100,
        limits=TenantLimits(
            requests_per_minute=10_000,
            tokens_per_minute=10**9,
            max_tokens_per_request=4_096,
            monthly_budget_nanousd=budget,
        ),
    )


class CountingStore(InMemoryMeteringStore):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    async def put(self, key: str, value: bytes, expected_revision: int) -> int:
        self.puts += 1
        return await super().put(key, value, expected_revision)


async def test_a_burst_shares_writes_and_admits_exactly_what_fits() -> None:
    store = CountingStore()
    m = Meter(store=store, prices=DEFAULT_TABLE)
    decisions = await asyncio.gather(*(m.authorize(ask(30 * HOLD)) for _ in range(100)))
    assert sum(isinstance(d, Admitted) for d in decisions) == 30
    assert store.puts < 10  # not one per call
    found = await store.get(f"acme.{month_of(utcnow())}")
    assert found is not None
    assert MonthState.model_validate_json(found[0]).reserved_nanousd == 30 * HOLD


async def test_a_conflict_makes_the_whole_batch_decide_again_on_the_new_state() -> None:
    class RivalSpendsFirst(InMemoryMeteringStore):
        """Another replica spends the whole budget between our read and our write."""

        rival_done = False

        async def put(self, key: str, value: bytes, expected_revision: int) -> int:
            if not self.rival_done and expected_revision == 0:
                self.rival_done = True
                rival = MonthState(month=key.split(".")[1], budget_nanousd=HOLD, spent_nanousd=HOLD)
                await super().put(key, rival.model_dump_json().encode(), 0)
                raise Conflict(key)
            return await super().put(key, value, expected_revision)

    m = Meter(store=RivalSpendsFirst(), prices=DEFAULT_TABLE)
    decisions = await asyncio.gather(*(m.authorize(ask(HOLD)) for _ in range(5)))
    assert all(
        isinstance(d, Rejected) and d.error.code is ErrorCode.BUDGET_EXCEEDED for d in decisions
    )


async def test_a_store_failure_fails_every_call_of_the_batch_instead_of_hanging() -> None:
    class Broken(InMemoryMeteringStore):
        async def get(self, key: str) -> tuple[bytes, int] | None:
            await asyncio.sleep(0)
            raise RuntimeError("kv unavailable")

    m = Meter(store=Broken(), prices=DEFAULT_TABLE)
    results = await asyncio.wait_for(
        asyncio.gather(*(m.authorize(ask(HOLD)) for _ in range(5)), return_exceptions=True), 5
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert not m._queues and not len(m.locks)
