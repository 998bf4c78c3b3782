"""Per-minute limits as a two-bucket sliding window, in integer arithmetic.

The seed reset a counter 60 s after its first hit, which admits up to twice the
limit across a reset. Here each window keeps the count of the current calendar
minute and of the one before; the load over the last 60 s is estimated as

    previous * (time left in the current minute) / 60 s + current

which only ever under-weights the previous minute linearly, so bursts straddling
a minute boundary cannot double the rate. The state is two integers and a minute
number, small enough to live in the tenant's KV entry and be compare-and-set
together with the budget.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

WINDOW_MS = 60_000


class Window(BaseModel):
    model_config = ConfigDict(frozen=True)

    minute: int = Field(default=0, description="Epoch minute of the current bucket.")
    current: int = Field(default=0, ge=0, description="Amount counted in that minute.")
    previous: int = Field(default=0, ge=0, description="Amount counted in the minute before.")


def minute_of(now_ms: int) -> int:
    return now_ms // WINDOW_MS


def rotate(window: Window, now_ms: int) -> Window:
    """The same counts seen from `now_ms`: older buckets slide out."""
    minute = minute_of(now_ms)
    if minute == window.minute:
        return window
    if minute == window.minute + 1:
        return Window(minute=minute, current=0, previous=window.current)
    if minute < window.minute:
        # A replica whose clock lags another's: count into the newest bucket rather
        # than rewind and forget what the faster clock already admitted.
        return window
    return Window(minute=minute)


def _weighted_previous(window: Window, now_ms: int) -> int:
    """previous * (ms left in the current minute): the estimate, scaled by WINDOW_MS."""
    elapsed = min(max(now_ms - window.minute * WINDOW_MS, 0), WINDOW_MS)
    return window.previous * (WINDOW_MS - elapsed)


def admits(window: Window, now_ms: int, amount: int, limit: int) -> bool:
    w = rotate(window, now_ms)
    return _weighted_previous(w, now_ms) + (w.current + amount) * WINDOW_MS <= limit * WINDOW_MS


def add(window: Window, now_ms: int, amount: int) -> Window:
    w = rotate(window, now_ms)
    return w.model_copy(update={"current": w.current + amount})


def refund(window: Window, minute: int, amount: int) -> Window:
    """Give back `amount` counted in `minute` (e.g. tokens reserved but not used)."""
    if amount <= 0:
        return window
    if minute == window.minute:
        return window.model_copy(update={"current": max(window.current - amount, 0)})
    if minute == window.minute - 1:
        return window.model_copy(update={"previous": max(window.previous - amount, 0)})
    return window  # already slid out of the window


def retry_after_ms(window: Window, now_ms: int, amount: int, limit: int) -> int | None:
    """How long until `amount` would be admitted if nothing else arrives; None if never."""
    if amount > limit:
        return None
    w = rotate(window, now_ms)
    if admits(w, now_ms, amount, limit):
        return 0
    elapsed = min(max(now_ms - w.minute * WINDOW_MS, 0), WINDOW_MS)
    if w.current + amount <= limit:
        # Fits in this minute once enough of the previous one has slid out
        # (w.previous > 0 here, or the request would have been admitted).
        allowed = (limit - w.current - amount) * WINDOW_MS // w.previous
        return max(WINDOW_MS - allowed - elapsed, 1)
    # Wait for the next minute, where today's current becomes the weighted previous.
    allowed = (limit - amount) * WINDOW_MS // w.current
    return (WINDOW_MS - elapsed) + (WINDOW_MS - allowed)
