"""metering's messages: authorise before the call, settle after, cost events."""

from __future__ import annotations

from pydantic import Field

from shared.messages.base import Envelope, Reply
from shared.messages.completions import Usage
from shared.messages.tenants import TenantLimits


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
    usage: Usage = Field(description="Real usage; zero when the call failed before any token.")


class UsageSettled(Reply):
    cost_nanousd: int = Field(default=0, ge=0, description="Charged cost.")


class CostRecorded(Envelope):
    """One priced model call; audit stores it in ClickHouse cost_events."""

    model: str = Field(description="Model called.")
    usage: Usage = Field(description="Tokens billed.")
    cost_nanousd: int = Field(ge=0, description="Cost in nano-USD.")
    price_version: str = Field(description="Version of the price table used.")
