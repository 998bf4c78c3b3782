"""leakage's messages: scan a piece of traffic, get a verdict; learn other tenants' content."""

from __future__ import annotations

import base64
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.messages.base import Envelope, Reply
from shared.messages.retrieval import Chunk

# 40,000 hashes per event: 427 KB of base64, well inside NATS's default 1 MB payload.
FINGERPRINTS_PER_EVENT = 40_000
MAX_FINGERPRINT_BYTES = FINGERPRINTS_PER_EVENT * 8


class ScanLocation(StrEnum):
    PROMPT = "prompt"
    CONTEXT = "context"
    RESPONSE = "response"


class Verdict(StrEnum):
    """Per finding, what the policy did; overall, the strongest of those."""

    ALLOW = "allow"
    FLAG = "flag"  # let through unchanged, but reported and audited
    REDACT = "redact"
    BLOCK = "block"


class FingerprintScope(StrEnum):
    DOCUMENT = "document"
    COLLECTION = "collection"


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


class FingerprintsChanged(Envelope):
    """retrieval -> leakage (evt.<tid>.fingerprints, durable): a document's content
    fingerprints after an ingest, or their withdrawal when a document or the whole
    collection is deleted. Hashes only, never text.

    A big document's fingerprints come in several events, in order: the first replaces
    whatever the document had (`append=False`), the rest add to it (`append=True`).
    """

    scope: FingerprintScope = Field(description="One document, or the whole collection.")
    document_id: str = Field(
        default="", max_length=200, description="The document (empty for the collection)."
    )
    fingerprints: str = Field(
        default="",
        max_length=MAX_FINGERPRINT_BYTES * 4 // 3 + 4,
        pattern=r"^[A-Za-z0-9+/]*={0,2}$",
        description="Winnowed 64-bit shingle hashes (shared.fingerprint) as "
        "little-endian uint64s, base64-encoded; empty withdraws the document's set.",
    )
    append: bool = Field(default=False, description="Add to the set instead of replacing it.")

    @model_validator(mode="after")
    def _consistent(self) -> FingerprintsChanged:
        if self.scope is FingerprintScope.DOCUMENT and not self.document_id:
            raise ValueError("a document-scoped change needs a document_id")
        if self.scope is FingerprintScope.COLLECTION and (self.document_id or self.fingerprints):
            raise ValueError("a collection-scoped change only withdraws fingerprints")
        if len(self.raw_fingerprints()) % 8:
            raise ValueError("fingerprints must be whole 8-byte hashes")
        return self

    def raw_fingerprints(self) -> bytes:
        return base64.b64decode(self.fingerprints, validate=True)
