"""metering's messages: authorise before the call, settle after, cost and budget events."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from shared.messages.base import Envelope, Reply
from shared.messages.completions import Usage
from shared.messages.tenants import TenantLimits

_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


class CallOutcome(StrEnum):
    """How the model call ended. Whatever the outcome, every token used is charged."""

    COMPLETED = "completed"  # the model finished its answer
    PARTIAL = "partial"  # streamed and cut short (client gone, timeout, cap): usage so far
    FAILED = "failed"  # the call failed; usage is whatever the provider billed (often 0)


class AuthorizeRequest(Envelope):
    model: str = Field(description="Model the request will call.")
    estimated_input_tokens: int = Field(ge=0, description="Upper estimate of prompt tokens.")
    max_tokens: int = Field(ge=1, description="Output token cap of the call.")
    limits: TenantLimits = Field(description="The tenant's limits from its current config.")


class RequestAuthorized(Reply):
    reservation_id: str = Field(default="", description="Settle against this id.")
    reserved_nanousd: int = Field(default=0, ge=0, description="Worst-case cost held.")


class SettleUsage(Envelope):
    reservation_id: str = Field(description="From RequestAuthorized.")
    model: str = Field(description="Model that was called.")
    usage: Usage = Field(
        description="Real usage, up to the moment the call ended; zero when it failed "
        "before any token. A stream cut short settles with the tokens it had used."
    )
    outcome: CallOutcome = Field(
        default=CallOutcome.COMPLETED,
        description="How the call ended; recorded with the cost, never a reason to charge less.",
    )


class UsageSettled(Reply):
    cost_nanousd: int = Field(default=0, ge=0, description="Charged cost.")


class CostRecorded(Envelope):
    """One priced model call; audit stores it in ClickHouse cost_events."""

    model: str = Field(description="Model called.")
    usage: Usage = Field(description="Tokens billed.")
    cost_nanousd: int = Field(ge=0, description="Cost in nano-USD.")
    price_version: str = Field(description="Version of the price table used.")
    outcome: CallOutcome = Field(
        default=CallOutcome.COMPLETED, description="How the call ended (partial: cut short)."
    )


class BudgetAlerted(Envelope):
    """A tenant's spend crossed a soft threshold (50, 80, 100 %) of its monthly budget.

    Sent once per threshold per budget period, on evt.<tid>.budget."""

    month: str = Field(pattern=_MONTH, description="Budget period, YYYY-MM.")
    threshold_pct: int = Field(ge=1, le=100, description="Threshold crossed, in percent.")
    spent_nanousd: int = Field(ge=0, description="Spend in the period after the charge.")
    budget_nanousd: int = Field(ge=0, description="Budget of the period.")


class QueryMeteringTotals(Envelope):
    month: str | None = Field(
        default=None, pattern=_MONTH, description="YYYY-MM; the current period if unset."
    )


class MeteringTotals(Reply):
    """metering's live view of one tenant's budget period (read from its KV entry)."""

    month: str = Field(default="", description="YYYY-MM reported.")
    spent_nanousd: int = Field(default=0, ge=0, description="Settled cost in the period.")
    reserved_nanousd: int = Field(
        default=0, ge=0, description="Worst case held by calls in flight."
    )
    budget_nanousd: int | None = Field(
        default=None, ge=0, description="Budget seen at the last authorize; None if none yet."
    )
    requests_settled: int = Field(default=0, ge=0, description="Reservations settled.")
    requests_charged: int = Field(
        default=0, ge=0, description="Settles that recorded a cost (one cost event each)."
    )
    in_flight: int = Field(default=0, ge=0, description="Reservations not yet settled.")
    alerts_pct: list[int] = Field(default_factory=list, description="Thresholds crossed.")
