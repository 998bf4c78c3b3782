"""The shape of a tenant's month in the KV bucket, and how its key and ids are named.

One entry per tenant per calendar month (the budget period), key
`<tenant_id>.<YYYY-MM>`, holding everything authorize and settle must decide
together: spend, holds in flight, recent settlements, alerts already sent and the
per-minute windows. The month is a calendar month in the configured budget
timezone (UTC by default); a new month is a new key, so a period resets on time
without any job having to run at midnight.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from pydantic import BaseModel, ConfigDict, Field, computed_field

from services.metering import ratelimit
from shared.messages.base import new_id

_RESERVATION_ID = re.compile(r"^(\d{4})(\d{2})-[0-9a-f]{32}$")


def month_of(now: datetime, tz: tzinfo = UTC) -> str:
    return now.astimezone(tz).strftime("%Y-%m")


def month_start(month: str, tz: tzinfo = UTC) -> datetime:
    year, mon = (int(part) for part in month.split("-"))
    return datetime(year, mon, 1, tzinfo=tz)


def next_month(month: str) -> str:
    year, mon = (int(part) for part in month.split("-"))
    return f"{year + 1}-01" if mon == 12 else f"{year}-{mon + 1:02d}"


def last_instant(month: str, tz: tzinfo = UTC) -> datetime:
    """The last millisecond of `month`, in UTC."""
    return (month_start(next_month(month), tz) - timedelta(milliseconds=1)).astimezone(UTC)


def previous_month(month: str) -> str:
    year, mon = (int(part) for part in month.split("-"))
    return f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"


def state_key(tenant_id: str, month: str) -> str:
    return f"{tenant_id}.{month}"


def new_reservation_id(month: str) -> str:
    """The month is part of the id, so settle finds the entry the hold lives in."""
    return f"{month.replace('-', '')}-{new_id()}"


def month_of_reservation(reservation_id: str) -> str | None:
    match = _RESERVATION_ID.fullmatch(reservation_id)
    return f"{match.group(1)}-{match.group(2)}" if match else None


class Reservation(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_nanousd: int = Field(ge=0, description="Worst-case cost held.")
    tokens: int = Field(ge=0, description="Tokens counted in the per-minute window.")
    minute: int = Field(description="Window minute the tokens were counted in.")
    model: str = Field(description="Model authorised.")
    expires_at_ms: int = Field(description="Released unsettled after this (epoch ms).")


class Settlement(BaseModel):
    model_config = ConfigDict(frozen=True)

    cost_nanousd: int = Field(ge=0, description="What the settle charged.")
    at_ms: int = Field(description="When (epoch ms).")


class RateState(BaseModel):
    requests: ratelimit.Window = Field(default_factory=ratelimit.Window)
    tokens: ratelimit.Window = Field(default_factory=ratelimit.Window)


class MonthState(BaseModel):
    month: str = Field(description="YYYY-MM in the budget timezone.")
    budget_nanousd: int = Field(default=0, ge=0, description="Budget at the last authorize.")
    spent_nanousd: int = Field(default=0, ge=0, description="Settled cost this month.")
    reservations: dict[str, Reservation] = Field(default_factory=dict)
    expired: dict[str, Reservation] = Field(default_factory=dict)
    settled: dict[str, Settlement] = Field(default_factory=dict)
    alerts: list[int] = Field(default_factory=list, description="Budget % thresholds crossed.")
    settled_count: int = Field(default=0, ge=0, description="Reservations settled this month.")
    charged_count: int = Field(
        default=0, ge=0, description="Settles that charged a cost (each one cost event)."
    )
    rate: RateState = Field(default_factory=RateState)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reserved_nanousd(self) -> int:
        """Derived, never stored apart from the reservations, so the two cannot disagree."""
        return sum(r.amount_nanousd for r in self.reservations.values())
