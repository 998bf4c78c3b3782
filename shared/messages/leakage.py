"""leakage's messages: scan a piece of traffic, get a verdict."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.base import Envelope, Reply
from shared.messages.retrieval import Chunk


class ScanLocation(StrEnum):
    PROMPT = "prompt"
    CONTEXT = "context"
    RESPONSE = "response"


class Verdict(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"


class Finding(BaseModel):
    """Where and what was found. Never the matched text itself."""

    model_config = ConfigDict(frozen=True)

    detector: str = Field(description="e.g. foreign_tenant, secret, pii.")
    kind: str = Field(description="e.g. tenant_name, anthropic_key, email.")
    location: ScanLocation = Field(description="Which part of the traffic.")
    start: int = Field(ge=0, description="Start offset in the scanned text.")
    end: int = Field(ge=0, description="End offset (exclusive).")
    action: Verdict = Field(description="What the policy did about it.")


class ScanText(Envelope):
    location: ScanLocation = Field(description="What is being scanned.")
    text: str = Field(max_length=2_000_000, description="The text to scan.")
    context: list[Chunk] = Field(
        default_factory=list, description="Retrieved chunks; each must belong to the tenant."
    )


class TextScanned(Reply):
    verdict: Verdict = Field(default=Verdict.ALLOW, description="Overall decision.")
    text: str = Field(default="", description="The text, with redactions applied.")
    findings: list[Finding] = Field(default_factory=list, description="What was found.")
