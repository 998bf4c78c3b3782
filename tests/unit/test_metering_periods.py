"""Budget periods: calendar months (UTC or a configured zone), the hard stop, counters."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.metering import ledger
from services.metering import state as keys
from services.metering.adapters import InMemoryMeteringStore
from services.metering.ledger import Admitted, Rejected, SettleKind
from services.metering.meter import Meter
from services.metering.pricing import DEFAULT_TABLE
from services.metering.settings import MeteringSettings
from services.metering.state import MonthState
from shared.messages.base import ErrorCode
from shared.messages.completions import Usage
from shared.messages.metering import AuthorizeRequest, CallOutcome, SettleUsage
from shared.messages.tenants import TenantLimits

pytestmark = pytest.mark.unit

PARIS = ZoneInfo("Europe/Paris")
SONNET = DEFAULT_TABLE.price("claude-sonnet-4-5")
NOW_MS = 1_800_000_000_000


def limits(budget: int = 10**12) -> TenantLimits:
    return TenantLimits(
        requests_per_minute=10_000,
        tokens_per_minute=10**9,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=budget,
    )


def test_month_arithmetic() -> None:
    assert keys.next_month("2026-12") == "2027-01"
    assert keys.next_month("2026-02") == "2026-03"
    assert keys.last_instant("2026-02") == datetime(2026, 2, 28, 23, 59, 59, 999_000, tzinfo=UTC)
    # 23:30 UTC on 31 January is already February in Paris (UTC+1).
    late = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert (keys.month_of(late), keys.month_of(late, PARIS)) == ("2026-01", "2026-02")
    assert keys.last_instant("2026-01", PARIS) == datetime(
        2026, 1, 31, 22, 59, 59, 999_000, tzinfo=UTC
    )


def test_budget_timezone_setting_fails_fast() -> None:
    assert MeteringSettings().zone() == ZoneInfo("UTC")
    assert MeteringSettings(budget_timezone="Europe/Paris").zone() == PARIS
    with pytest.raises(ValidationError, match="unknown time zone"):
        MeteringSettings(budget_timezone="Mars/Olympus")


async def test_periods_follow_the_configured_zone_and_costs_stay_in_their_period() -> None:
    now = [datetime(2026, 1, 31, 23, 30, tzinfo=UTC)]
    m = Meter(store=InMemoryMeteringStore(), prices=DEFAULT_TABLE, clock=lambda: now[0], tz=PARIS)
    ask = AuthorizeRequest(
        tenant_id="acme",
        model="claude-sonnet-4-5",
        estimated_input_tokens=10,
        max_tokens=10,
        limits=limits(),
    )
    hold = await m.authorize(ask)
    assert isinstance(hold, Admitted)
    assert keys.month_of_reservation(hold.reservation_id) == "2026-02"
    assert await m.store.get(keys.state_key("acme", "2026-02")) is not None
    # A cost is dated no later than the end of the period its hold was taken in.
    rid = keys.new_reservation_id("2025-12")
    assert m.booked_at(rid) == keys.last_instant("2025-12", PARIS)
    assert m.booked_at(hold.reservation_id) == now[0]


def test_hard_stop_at_100_percent_is_clear_and_final() -> None:
    state = MonthState(month="2026-12", budget_nanousd=100, spent_nanousd=100)
    _, decision = ledger.authorize(
        state,
        reservation_id=keys.new_reservation_id("2026-12"),
        model="claude-sonnet-4-5",
        amount_nanousd=1,
        tokens=2,
        limits=limits(budget=100),
        now_ms=NOW_MS,
        ttl_ms=600_000,
    )
    assert isinstance(decision, Rejected) and decision.reason == "budget"
    assert decision.error.code is ErrorCode.BUDGET_EXCEEDED and not decision.error.retryable
    assert "used up" in decision.error.message and "(2027-01)" in decision.error.message


def test_settles_are_counted_and_only_charged_ones_as_charged() -> None:
    state = MonthState(month="2026-03")
    rids = []
    for _ in range(3):
        rid = keys.new_reservation_id("2026-03")
        state, decision = ledger.authorize(
            state,
            reservation_id=rid,
            model="claude-sonnet-4-5",
            amount_nanousd=10**6,
            tokens=100,
            limits=limits(),
            now_ms=NOW_MS,
            ttl_ms=600_000,
        )
        assert isinstance(decision, Admitted)
        rids.append(rid)
    for rid, usage in zip(
        rids, (Usage(), Usage(input_tokens=5), Usage(output_tokens=1)), strict=True
    ):
        state, _ = ledger.settle(
            state, reservation_id=rid, price=SONNET, usage=usage, now_ms=NOW_MS
        )
    state, repeat = ledger.settle(  # a retried settle is not counted again
        state, reservation_id=rids[1], price=SONNET, usage=Usage(input_tokens=5), now_ms=NOW_MS
    )
    assert repeat.kind is SettleKind.REPEAT
    assert (state.settled_count, state.charged_count) == (3, 2)
    assert state.spent_nanousd == 5 * SONNET.input + SONNET.output


async def test_partial_usage_is_charged_in_full() -> None:
    m = Meter(store=InMemoryMeteringStore(), prices=DEFAULT_TABLE)
    hold = await m.authorize(
        AuthorizeRequest(
            tenant_id="acme",
            model="claude-sonnet-4-5",
            estimated_input_tokens=100,
            max_tokens=1_000,
            limits=limits(),
        )
    )
    assert isinstance(hold, Admitted)
    cut = Usage(input_tokens=100, output_tokens=3)
    outcome = await m.settle(
        SettleUsage(
            tenant_id="acme",
            reservation_id=hold.reservation_id,
            model="claude-sonnet-4-5",
            usage=cut,
            outcome=CallOutcome.PARTIAL,
        )
    )
    assert outcome.cost_nanousd == SONNET.cost(cut) > 0
