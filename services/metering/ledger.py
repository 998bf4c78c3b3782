"""A tenant's month of spend as pure state transitions: reserve, settle, expire, alert.

Everything `authorize` and `settle` must decide atomically (rate windows, spend,
outstanding reservations, alerts already sent) lives in ONE value per tenant per
calendar month (see `state`), so one compare-and-set on that KV entry makes
each decision atomic across every replica. Functions here take a state and return a new one;
`meter` does the read / compare-and-set / retry loop around them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from services.metering import ratelimit
from services.metering.pricing import ModelPrice
from services.metering.state import (
    MonthState,
    RateState,
    Reservation,
    Settlement,
    next_month,
)
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import Usage
from shared.messages.tenants import TenantLimits
from shared.money import format_usd

V = TypeVar("V")

ALERT_THRESHOLDS = (50, 80, 100)
# Settled ids are remembered so a repeated settle answers with what the first one
# charged (and re-publishes its cost event, healing a lost one). Never charging twice
# does not depend on it: a settled reservation has left `reservations`, and a settle of
# an id found nowhere charges nothing. Five minutes is inside the events stream's 600 s
# duplicate window, so a re-published cost event is de-duplicated by JetStream. The cap
# bounds the entry, which is written twice per request: at 256 a busy tenant's entry
# was 21.7 KB and cost ~0.6-0.9 ms of CPU per request across metering and nats-server
# (bench/pipeline.py at concurrency 1); at 32 it is ~2.8 KB, and a repeat that comes
# after 32 newer settles of the same tenant is answered "not found", charging nothing.
SETTLED_KEEP_MS = 5 * 60_000
SETTLED_MAX = 32
# Reservations that expired unsettled are kept a while so a late settle (a very slow
# call) is still charged; rare, so a small cap suffices.
EXPIRED_KEEP_MS = 60 * 60_000
EXPIRED_MAX = 256
# Holds in flight at once per tenant. Bounds the entry's size (a KV value is one NATS
# message); far above what the llm service runs concurrently for one tenant.
MAX_IN_FLIGHT = 1_000


@dataclass(frozen=True)
class Admitted:
    reservation_id: str
    amount_nanousd: int


@dataclass(frozen=True)
class Rejected:
    error: ErrorInfo
    reason: str  # short label for audit: model, rate, in_flight, budget, tokens_per_request
    retry_after_s: int | None = None


def release_expired(state: MonthState, now_ms: int) -> MonthState:
    """A copy with expired holds released and old bookkeeping pruned."""
    s = _copy(state)
    for rid, res in list(s.reservations.items()):
        if res.expires_at_ms <= now_ms:
            s.expired[rid] = s.reservations.pop(rid)
    s.expired = _newest(
        {k: v for k, v in s.expired.items() if v.expires_at_ms + EXPIRED_KEEP_MS > now_ms},
        EXPIRED_MAX,
        key=lambda r: r.expires_at_ms,
    )
    s.settled = _newest(
        {k: v for k, v in s.settled.items() if v.at_ms + SETTLED_KEEP_MS > now_ms},
        SETTLED_MAX,
        key=lambda r: r.at_ms,
    )
    return s


def _copy(state: MonthState) -> MonthState:
    # Containers are copied, their (frozen) entries shared: a deep copy of a busy
    # tenant's state cost more than the KV round trips.
    return state.model_copy(
        update={
            "reservations": dict(state.reservations),
            "expired": dict(state.expired),
            "settled": dict(state.settled),
            "alerts": list(state.alerts),
            "rate": state.rate.model_copy(),
        }
    )


def _newest(items: dict[str, V], cap: int, *, key: Callable[[V], int]) -> dict[str, V]:
    if len(items) <= cap:
        return items
    ranked = sorted(items.items(), key=lambda kv: key(kv[1]), reverse=True)
    return dict(ranked[:cap])


def authorize(
    state: MonthState,
    *,
    reservation_id: str,
    model: str,
    amount_nanousd: int,
    tokens: int,
    limits: TenantLimits,
    now_ms: int,
    ttl_ms: int,
) -> tuple[MonthState, Admitted | Rejected]:
    """Admit and hold, or refuse. The returned state is only worth writing if admitted."""
    s = release_expired(state, now_ms)
    s.budget_nanousd = limits.monthly_budget_nanousd
    tpm, rpm = limits.tokens_per_minute, limits.requests_per_minute
    if tokens > tpm:
        return s, Rejected(
            ErrorInfo(
                code=ErrorCode.TOKEN_LIMIT,
                message=f"this request may use {tokens} tokens, more than the tenant's "
                f"{tpm} tokens per minute; lower max_tokens or shorten the prompt",
            ),
            reason="tokens_per_request",
        )
    waits = []
    if not ratelimit.admits(s.rate.requests, now_ms, 1, rpm):
        waits.append((f"{rpm} requests per minute", s.rate.requests, 1, rpm))
    if not ratelimit.admits(s.rate.tokens, now_ms, tokens, tpm):
        waits.append((f"{tpm} tokens per minute", s.rate.tokens, tokens, tpm))
    if waits:
        wait_ms = max(ratelimit.retry_after_ms(w, now_ms, n, lim) or 0 for _, w, n, lim in waits)
        wait_s = max(math.ceil(wait_ms / 1000), 1)
        which = " and ".join(label for label, *_ in waits)
        return s, Rejected(
            ErrorInfo(
                code=ErrorCode.RATE_LIMITED,
                message=f"rate limit of {which} reached; retry in {wait_s} s",
                retryable=True,
                retry_after_s=wait_s,
            ),
            reason="rate",
            retry_after_s=wait_s,
        )
    if len(s.reservations) >= MAX_IN_FLIGHT:
        return s, Rejected(
            ErrorInfo(
                code=ErrorCode.RATE_LIMITED,
                message=f"{MAX_IN_FLIGHT} calls already in flight for this tenant; retry in 1 s",
                retryable=True,
                retry_after_s=1,
            ),
            reason="in_flight",
            retry_after_s=1,
        )
    budget, spent, held = s.budget_nanousd, s.spent_nanousd, s.reserved_nanousd
    if spent >= budget:
        # The hard stop: nothing more this period, whatever the request's size.
        return s, Rejected(
            ErrorInfo(
                code=ErrorCode.BUDGET_EXCEEDED,
                message=f"monthly budget used up: spent {format_usd(spent)} of "
                f"{format_usd(budget)} in {s.month}; requests are refused until the budget "
                f"is raised or the next period ({next_month(s.month)}) starts",
            ),
            reason="budget",
        )
    if spent + held + amount_nanousd > budget:
        return s, Rejected(
            ErrorInfo(
                code=ErrorCode.BUDGET_EXCEEDED,
                message=f"monthly budget exceeded: spent {format_usd(spent)} of "
                f"{format_usd(budget)} in {s.month}, {format_usd(held)} held by calls in "
                f"flight, and this request may cost up to {format_usd(amount_nanousd)}",
                # Only holds of calls in flight can free room before next month.
                retryable=held > 0 and spent + amount_nanousd <= budget,
            ),
            reason="budget",
        )
    s.reservations[reservation_id] = Reservation(
        amount_nanousd=amount_nanousd,
        tokens=tokens,
        minute=ratelimit.minute_of(now_ms),
        model=model,
        expires_at_ms=now_ms + ttl_ms,
    )
    s.rate = RateState(
        requests=ratelimit.add(s.rate.requests, now_ms, 1),
        tokens=ratelimit.add(s.rate.tokens, now_ms, tokens),
    )
    return s, Admitted(reservation_id, amount_nanousd)


class SettleKind(StrEnum):
    SETTLED = "settled"  # released its hold and charged
    LATE = "late"  # the hold had expired; charged anyway
    REPEAT = "repeat"  # settled before: nothing more charged
    UNKNOWN = "unknown"  # no trace (never issued, or settled long ago): nothing charged


@dataclass(frozen=True)
class Settled:
    kind: SettleKind
    cost_nanousd: int = 0
    priced: bool = True  # False: the model had no price, so the hold was charged
    crossed: tuple[int, ...] = field(default=())
    spent_nanousd: int = 0
    budget_nanousd: int = 0

    @property
    def changed(self) -> bool:
        return self.kind in (SettleKind.SETTLED, SettleKind.LATE)


def settle(
    state: MonthState,
    *,
    reservation_id: str,
    price: ModelPrice | None,
    usage: Usage,
    now_ms: int,
) -> tuple[MonthState, Settled]:
    """Charge real usage once per reservation id. `price` None: the model is unpriced."""
    s = release_expired(state, now_ms)
    if reservation_id in s.settled:
        return s, Settled(SettleKind.REPEAT, s.settled[reservation_id].cost_nanousd)
    if reservation_id in s.reservations:
        kind, res = SettleKind.SETTLED, s.reservations.pop(reservation_id)
    elif reservation_id in s.expired:
        kind, res = SettleKind.LATE, s.expired.pop(reservation_id)
    else:
        return s, Settled(SettleKind.UNKNOWN)
    # Whatever the call's outcome (finished, streamed and cut short, failed), the
    # usage reported is what the provider used so far, and all of it is charged.
    used = usage.total
    if used == 0:
        cost = 0
    elif price is not None:
        # Every price is at least 1 nano-USD per token (pricing refuses zero), so
        # tokens used can never come out at zero cost here.
        cost = price.cost(usage)
    else:
        # Tokens were used but the model has no price: charge the worst case the
        # tenant was authorised for rather than record the tokens as free.
        cost = res.amount_nanousd
    s.rate.tokens = ratelimit.refund(s.rate.tokens, res.minute, res.tokens - used)
    if used > res.tokens:
        s.rate.tokens = ratelimit.add(s.rate.tokens, now_ms, used - res.tokens)
    s.spent_nanousd += cost
    s.settled_count += 1
    s.charged_count += cost > 0
    s.settled[reservation_id] = Settlement(cost_nanousd=cost, at_ms=now_ms)
    s.settled = _newest(s.settled, SETTLED_MAX, key=lambda r: r.at_ms)
    crossed = tuple(
        t
        for t in ALERT_THRESHOLDS
        if s.budget_nanousd > 0
        and t not in s.alerts
        and s.spent_nanousd * 100 >= t * s.budget_nanousd
    )
    s.alerts.extend(crossed)
    return s, Settled(
        kind,
        cost,
        priced=price is not None or used == 0,
        crossed=crossed,
        spent_nanousd=s.spent_nanousd,
        budget_nanousd=s.budget_nanousd,
    )
