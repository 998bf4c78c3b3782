"""Reservation bookkeeping as pure functions: holds, expiry, idempotent settle, alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.metering import ledger
from services.metering import state as keys
from services.metering.ledger import Admitted, Rejected, Settled, SettleKind
from services.metering.pricing import DEFAULT_TABLE
from services.metering.ratelimit import WINDOW_MS
from services.metering.state import MonthState
from shared.messages.base import ErrorCode
from shared.messages.completions import Usage
from shared.messages.tenants import TenantLimits
from shared.money import usd

pytestmark = pytest.mark.unit

SONNET = DEFAULT_TABLE.price("claude-sonnet-4-5")
T0 = 29_000_000 * WINDOW_MS + 10_000
TTL = 600_000


def limits(**overrides: int) -> TenantLimits:
    base = dict(
        requests_per_minute=100,
        tokens_per_minute=1_000_000,
        max_tokens_per_request=4_096,
        monthly_budget_nanousd=usd("1"),
    )
    base.update(overrides)
    return TenantLimits.model_validate(base)


def reserve(
    state: MonthState, amount: int = 1_000_000, now_ms: int = T0, **limit_overrides: int
) -> tuple[MonthState, Admitted | Rejected]:
    return ledger.authorize(
        state,
        reservation_id=keys.new_reservation_id(state.month),
        model="claude-sonnet-4-5",
        amount_nanousd=amount,
        tokens=1_000,
        limits=limits(**limit_overrides),
        now_ms=now_ms,
        ttl_ms=TTL,
    )


def admitted(state: MonthState, **kwargs: int) -> tuple[MonthState, Admitted]:
    new_state, decision = reserve(state, **kwargs)
    assert isinstance(decision, Admitted), decision
    return new_state, decision


def settle(
    state: MonthState, rid: str, usage: Usage, now_ms: int = T0 + 1_000
) -> tuple[MonthState, Settled]:
    return ledger.settle(state, reservation_id=rid, price=SONNET, usage=usage, now_ms=now_ms)


def test_months_and_ids() -> None:
    assert keys.month_of(datetime(2026, 1, 31, 23, 59, tzinfo=UTC)) == "2026-01"
    assert keys.previous_month("2026-01") == "2025-12"
    assert keys.previous_month("2026-10") == "2026-09"
    rid = keys.new_reservation_id("2026-03")
    assert keys.month_of_reservation(rid) == "2026-03"
    assert keys.month_of_reservation("not-ours") is None


def test_budget_holds_worst_case_and_refuses_clearly() -> None:
    state = MonthState(month="2026-03")
    for _ in range(4):
        state, _ = admitted(state, amount=usd("0.25"))
    assert state.reserved_nanousd == usd("1")
    _, decision = reserve(state, amount=1)
    assert isinstance(decision, Rejected)
    assert decision.error.code is ErrorCode.BUDGET_EXCEEDED
    assert "spent $0.000000 of $1.000000" in decision.error.message
    assert "$1.000000 held by calls in flight" in decision.error.message
    assert decision.error.retryable  # holds in flight may free room


def test_budget_exceeded_by_spend_is_not_retryable() -> None:
    state, hold = admitted(MonthState(month="2026-03"), amount=usd("1"))
    state, _ = settle(state, hold.reservation_id, Usage(output_tokens=66_667))
    _, decision = reserve(state, amount=usd("0.1"))
    assert isinstance(decision, Rejected)
    assert decision.error.code is ErrorCode.BUDGET_EXCEEDED
    assert "spent $1.000005 of $1.000000" in decision.error.message
    assert not decision.error.retryable


def test_requests_per_minute_refusal_says_when_to_retry() -> None:
    state = MonthState(month="2026-03")
    for _ in range(3):
        state, _ = admitted(state, amount=1, requests_per_minute=3)
    _, decision = reserve(state, amount=1, requests_per_minute=3)
    assert isinstance(decision, Rejected)
    assert decision.error.code is ErrorCode.RATE_LIMITED and decision.error.retryable
    assert decision.retry_after_s is not None and decision.retry_after_s > 0
    assert f"retry in {decision.retry_after_s} s" in decision.error.message


def test_request_larger_than_tokens_per_minute_is_not_retryable() -> None:
    _, decision = reserve(MonthState(month="2026-03"), tokens_per_minute=999)
    assert isinstance(decision, Rejected)
    assert decision.error.code is ErrorCode.TOKEN_LIMIT and not decision.error.retryable


def test_settle_charges_real_cost_and_releases_the_hold() -> None:
    state, hold = admitted(MonthState(month="2026-03"), amount=usd("0.5"))
    usage = Usage(input_tokens=100, output_tokens=10, cache_read_input_tokens=1_000)
    state, outcome = settle(state, hold.reservation_id, usage)
    assert outcome.kind is SettleKind.SETTLED
    assert outcome.cost_nanousd == 100 * 3_000 + 10 * 15_000 + 1_000 * 300
    assert state.spent_nanousd == outcome.cost_nanousd
    assert state.reserved_nanousd == 0
    # 1,000 tokens were counted at authorize, 1,110 used: the window holds the truth.
    assert state.rate.tokens.current == 1_110


def test_settle_is_idempotent() -> None:
    state, hold = admitted(MonthState(month="2026-03"))
    state, first = settle(state, hold.reservation_id, Usage(input_tokens=10, output_tokens=5))
    again, second = settle(state, hold.reservation_id, Usage(input_tokens=10, output_tokens=5))
    assert first.changed and not second.changed
    assert second.kind is SettleKind.REPEAT
    assert second.cost_nanousd == first.cost_nanousd  # same answer, no new charge
    assert again.spent_nanousd == state.spent_nanousd == first.cost_nanousd


def test_zero_usage_releases_without_cost() -> None:
    state, hold = admitted(MonthState(month="2026-03"))
    state, outcome = settle(state, hold.reservation_id, Usage())
    assert outcome.kind is SettleKind.SETTLED and outcome.cost_nanousd == 0
    assert state.reserved_nanousd == 0 and state.spent_nanousd == 0
    assert state.rate.tokens.current == 0  # unused tokens go back to the window


def test_expired_hold_is_released_on_next_write_and_late_settle_still_charges() -> None:
    state, hold = admitted(MonthState(month="2026-03"), amount=usd("1"))
    _, refused = reserve(state, amount=1, now_ms=T0 + TTL - 1)
    assert isinstance(refused, Rejected)
    state, _ = admitted(state, amount=1, now_ms=T0 + TTL)
    assert hold.reservation_id not in state.reservations
    assert hold.reservation_id in state.expired
    assert state.reserved_nanousd == 1
    state, late = settle(state, hold.reservation_id, Usage(output_tokens=10), now_ms=T0 + TTL + 5)
    assert late.kind is SettleKind.LATE and late.cost_nanousd == 150_000
    assert state.spent_nanousd == 150_000
    _, repeat = settle(state, hold.reservation_id, Usage(output_tokens=10), now_ms=T0 + TTL + 9)
    assert repeat.kind is SettleKind.REPEAT


def test_unknown_reservation_charges_nothing() -> None:
    state = MonthState(month="2026-03")
    new_state, outcome = settle(state, keys.new_reservation_id("2026-03"), Usage(input_tokens=1))
    assert outcome.kind is SettleKind.UNKNOWN and not outcome.changed
    assert new_state.spent_nanousd == 0


def test_unpriced_model_charges_the_hold_not_zero() -> None:
    state, hold = admitted(MonthState(month="2026-03"), amount=777)
    state, outcome = ledger.settle(
        state,
        reservation_id=hold.reservation_id,
        price=None,
        usage=Usage(input_tokens=3),
        now_ms=T0 + 1,
    )
    assert outcome.cost_nanousd == 777 and not outcome.priced


def test_budget_alerts_fire_once_per_threshold() -> None:
    state = MonthState(month="2026-03")
    crossed: list[int] = []
    # Each settle spends $0.15 of the $1 budget (10,000 output tokens of Sonnet), more
    # than its tiny hold: real cost is charged even when the estimate was low.
    for _ in range(7):
        state, hold = admitted(state, amount=1)
        state, outcome = settle(state, hold.reservation_id, Usage(output_tokens=10_000))
        crossed.extend(outcome.crossed)
    assert state.spent_nanousd == usd("1.05")
    assert crossed == [50, 80, 100]
    assert state.alerts == [50, 80, 100]


def test_bookkeeping_stays_bounded() -> None:
    state = MonthState(month="2026-03")
    for i in range(ledger.SETTLED_MAX + 20):
        now = T0 + i
        state, hold = admitted(state, amount=1, now_ms=now, requests_per_minute=1_000)
        state, _ = settle(state, hold.reservation_id, Usage(), now_ms=now)
    assert len(state.settled) == ledger.SETTLED_MAX
    state = ledger.release_expired(state, T0 + ledger.SETTLED_KEEP_MS + 10_000)
    assert state.settled == {}


def test_calls_in_flight_are_capped() -> None:
    state = MonthState(month="2026-03")
    wide = {"requests_per_minute": 10_000, "tokens_per_minute": 10**9}
    for _ in range(ledger.MAX_IN_FLIGHT):
        state, _ = admitted(state, amount=1, **wide)
    _, decision = reserve(state, amount=1, **wide)
    assert isinstance(decision, Rejected) and decision.reason == "in_flight"
    assert decision.error.code is ErrorCode.RATE_LIMITED and decision.error.retryable
