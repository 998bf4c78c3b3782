"""The two-bucket sliding window: exact limits, no doubling at a boundary, retry hints."""

from __future__ import annotations

import pytest

from services.metering import ratelimit
from services.metering.ratelimit import WINDOW_MS, Window

pytestmark = pytest.mark.unit

T0 = 29_000_000 * WINDOW_MS  # the start of some minute


def fill(window: Window, now_ms: int, limit: int, amount: int = 1) -> tuple[Window, int]:
    admitted = 0
    while ratelimit.admits(window, now_ms, amount, limit):
        window = ratelimit.add(window, now_ms, amount)
        admitted += 1
    return window, admitted


def test_admits_exactly_the_limit_in_a_fresh_minute() -> None:
    _, admitted = fill(Window(), T0 + 5_000, 10)
    assert admitted == 10


def test_a_reset_boundary_does_not_double_the_rate() -> None:
    # The seed's fixed window admits 10 at 0:59 and 10 more at 1:00. The sliding
    # estimate still counts nearly all of the previous minute's 10 at 1:00.
    window, first = fill(Window(), T0 + 59_000, 10)
    _, second = fill(window, T0 + WINDOW_MS + 1_000, 10)
    assert first == 10
    assert second == 0
    # Half-way through the next minute half of the previous minute still counts.
    _, half = fill(window, T0 + WINDOW_MS + 30_000, 10)
    assert half == 5


def test_window_forgets_after_two_minutes() -> None:
    window, _ = fill(Window(), T0, 10)
    _, admitted = fill(window, T0 + 2 * WINDOW_MS, 10)
    assert admitted == 10


def test_rotation() -> None:
    w = Window(minute=T0 // WINDOW_MS, current=7, previous=3)
    assert ratelimit.rotate(w, T0 + 10) == w
    assert ratelimit.rotate(w, T0 + WINDOW_MS) == Window(minute=w.minute + 1, previous=7)
    assert ratelimit.rotate(w, T0 + 3 * WINDOW_MS) == Window(minute=w.minute + 3)
    # A replica with a lagging clock counts into the newest bucket instead of rewinding.
    assert ratelimit.rotate(w, T0 - 1) == w


def test_tokens_count_by_amount() -> None:
    w = ratelimit.add(Window(), T0, 9_000)
    assert ratelimit.admits(w, T0, 1_000, 10_000)
    assert not ratelimit.admits(w, T0, 1_001, 10_000)


def test_refund_returns_to_the_bucket_it_came_from() -> None:
    minute = T0 // WINDOW_MS
    w = ratelimit.add(Window(), T0, 500)
    assert ratelimit.refund(w, minute, 200).current == 300
    later = ratelimit.rotate(w, T0 + WINDOW_MS)
    assert ratelimit.refund(later, minute, 200).previous == 300
    assert ratelimit.refund(later, minute - 5, 200) == later
    assert ratelimit.refund(w, minute, 10_000).current == 0


def test_retry_after_when_the_current_minute_is_full() -> None:
    window, _ = fill(Window(), T0 + 20_000, 10)
    wait = ratelimit.retry_after_ms(window, T0 + 20_000, 1, 10)
    assert wait is not None
    # The 10 slide out linearly through the next minute: one slot frees at 1:06.
    assert wait == (WINDOW_MS - 20_000) + 6_000
    assert not ratelimit.admits(window, T0 + 20_000 + wait - 1, 1, 10)
    assert ratelimit.admits(window, T0 + 20_000 + wait, 1, 10)


def test_retry_after_when_the_previous_minute_weighs() -> None:
    window, _ = fill(Window(), T0 + 59_000, 10)
    now = T0 + WINDOW_MS + 1_000
    wait = ratelimit.retry_after_ms(window, now, 1, 10)
    assert wait is not None and 0 < wait < WINDOW_MS
    assert not ratelimit.admits(window, now + wait - 1, 1, 10)
    assert ratelimit.admits(window, now + wait, 1, 10)


def test_retry_after_is_none_when_the_amount_can_never_fit() -> None:
    assert ratelimit.retry_after_ms(Window(), T0, 11, 10) is None
    assert ratelimit.retry_after_ms(Window(), T0, 1, 10) == 0
