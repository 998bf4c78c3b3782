"""The compare-and-set loop over an in-memory store with the KV's semantics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from services.metering.adapters import Conflict, InMemoryMeteringStore
from services.metering.ledger import Admitted, Rejected, SettleKind
from services.metering.meter import Busy, Meter, UnknownReservation
from services.metering.pricing import DEFAULT_TABLE
from services.metering.state import MonthState, state_key
from shared.messages.base import ErrorCode
from shared.messages.completions import Usage
from shared.messages.metering import AuthorizeRequest, SettleUsage
from shared.messages.tenants import TenantLimits

pytestmark = pytest.mark.unit

MID_MARCH = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)
HAIKU_HOLD = 1_000 * 1_250 + 100 * 5_000  # 1,000 prompt tokens, 100 output, worst case


def limits(budget: int = 10**12, rpm: int = 10_000) -> TenantLimits:
    return TenantLimits(
        requests_per_minute=rpm,
        tokens_per_minute=10**9,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=budget,
    )


def ask(tid: str, lim: TenantLimits, model: str = "claude-haiku-4-5") -> AuthorizeRequest:
    return AuthorizeRequest(
        tenant_id=tid, model=model, estimated_input_tokens=1_000, max_tokens=100, limits=lim
    )


def meter(store: InMemoryMeteringStore, now: Callable[[], datetime] = lambda: MID_MARCH) -> Meter:
    return Meter(store=store, prices=DEFAULT_TABLE, clock=now, cas_attempts=500)


async def test_concurrent_authorizations_never_overspend() -> None:
    store = InMemoryMeteringStore()
    replicas = [meter(store), meter(store)]  # two Meters, one shared store: two replicas
    lim = limits(budget=20 * HAIKU_HOLD)
    decisions = await asyncio.gather(
        *(replicas[i % 2].authorize(ask("acme", lim)) for i in range(60))
    )
    admitted = [d for d in decisions if isinstance(d, Admitted)]
    assert len(admitted) == 20
    assert {d.amount_nanousd for d in admitted} == {HAIKU_HOLD}
    assert all(
        isinstance(d, Rejected) and d.error.code is ErrorCode.BUDGET_EXCEEDED
        for d in decisions
        if not isinstance(d, Admitted)
    )


async def test_unknown_model_is_refused_before_any_state() -> None:
    store = InMemoryMeteringStore()
    decision = await meter(store).authorize(ask("acme", limits(), model="gpt-imaginary"))
    assert isinstance(decision, Rejected) and decision.error.code is ErrorCode.UNKNOWN_MODEL
    assert await store.get(state_key("acme", "2026-03")) is None


async def test_settle_once_then_repeat() -> None:
    m = meter(InMemoryMeteringStore())
    hold = await m.authorize(ask("acme", limits()))
    assert isinstance(hold, Admitted)
    settle = SettleUsage(
        tenant_id="acme",
        reservation_id=hold.reservation_id,
        model="offline-extractive",  # the model that answered, not the one authorised
        usage=Usage(input_tokens=900, output_tokens=40),
    )
    first = await m.settle(settle)
    second = await m.settle(settle)
    assert first.kind is SettleKind.SETTLED and first.cost_nanousd == 940 * 100
    assert second.kind is SettleKind.REPEAT and second.cost_nanousd == first.cost_nanousd
    found = await m.store.get(state_key("acme", "2026-03"))
    assert found is not None
    state = MonthState.model_validate_json(found[0])
    assert state.spent_nanousd == 94_000 and state.reserved_nanousd == 0


async def test_settle_checks_the_reservation_id_shape() -> None:
    m = meter(InMemoryMeteringStore())
    bad = SettleUsage(tenant_id="acme", reservation_id="x", model="m", usage=Usage())
    with pytest.raises(UnknownReservation):
        await m.settle(bad)


async def test_a_new_month_keeps_the_rate_window() -> None:
    store = InMemoryMeteringStore()
    now = [datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)]
    m = meter(store, lambda: now[0])
    lim = limits(rpm=2)
    for _ in range(2):
        assert isinstance(await m.authorize(ask("acme", lim)), Admitted)
    now[0] = datetime(2026, 4, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    refused = await m.authorize(ask("acme", lim))
    assert isinstance(refused, Rejected) and refused.error.code is ErrorCode.RATE_LIMITED


async def test_gives_up_as_busy_after_the_configured_attempts() -> None:
    class AlwaysConflicting(InMemoryMeteringStore):
        async def put(self, key: str, value: bytes, expected_revision: int) -> int:
            raise Conflict(key)

    m = Meter(store=AlwaysConflicting(), prices=DEFAULT_TABLE, cas_attempts=3)
    with pytest.raises(Busy):
        await m.authorize(ask("acme", limits()))


async def test_in_memory_store_compare_and_set() -> None:
    store = InMemoryMeteringStore()
    rev = await store.put("k", b"1", 0)
    with pytest.raises(Conflict):
        await store.put("k", b"2", 0)
    await store.put("k", b"2", rev)
    with pytest.raises(Conflict):
        await store.put("k", b"3", rev)
    assert await store.get("k") == (b"2", rev + 1)


class CountingStore(InMemoryMeteringStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str) -> tuple[bytes, int] | None:
        self.reads += 1
        return await super().get(key)


async def test_a_replica_starts_from_its_own_last_write_without_reading() -> None:
    store = CountingStore()
    m = meter(store)
    lim = limits()
    assert isinstance(await m.authorize(ask("acme", lim)), Admitted)  # reads (and opens March)
    reads = store.reads
    for _ in range(5):
        assert isinstance(await m.authorize(ask("acme", lim)), Admitted)
    assert store.reads == reads  # every later call decided on the state it last wrote


async def test_another_replicas_write_makes_the_remembered_state_conflict() -> None:
    store = InMemoryMeteringStore()
    a, b = meter(store), meter(store)
    lim = limits(budget=2 * HAIKU_HOLD)
    assert isinstance(await a.authorize(ask("acme", lim)), Admitted)  # a remembers 1 hold
    assert isinstance(await b.authorize(ask("acme", lim)), Admitted)  # budget now fully held
    # a's memory says one hold is left; its write conflicts, it re-reads and refuses.
    refused = await a.authorize(ask("acme", lim))
    assert isinstance(refused, Rejected) and refused.error.code is ErrorCode.BUDGET_EXCEEDED


async def test_a_refusal_is_never_decided_on_remembered_state_alone() -> None:
    store = InMemoryMeteringStore()
    a, b = meter(store), meter(store)
    lim = limits(budget=HAIKU_HOLD)
    hold = await a.authorize(ask("acme", lim))
    assert isinstance(hold, Admitted)  # a remembers its write: the budget is fully held
    # b settles a's hold for nothing used: the whole budget is free again. a's memory
    # still says "full"; a refusal writes nothing, so it must re-read before refusing.
    settled = await b.settle(
        SettleUsage(tenant_id="acme", reservation_id=hold.reservation_id, model="m", usage=Usage())
    )
    assert settled.kind is SettleKind.SETTLED
    assert isinstance(await a.authorize(ask("acme", lim)), Admitted)


async def test_offboarding_forgets_the_remembered_entries() -> None:
    m = meter(InMemoryMeteringStore())
    assert isinstance(await m.authorize(ask("acme", limits())), Admitted)
    m.forget("acme")
    assert not m._cache  # memory hygiene only: a stale entry would just conflict
