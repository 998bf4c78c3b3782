"""The client-facing request and its completion (gateway's messages)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.base import Envelope, Reply
from shared.tenancy import AttributedTenantId


class ClientInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str | None = Field(default=None, max_length=200, description="End user, if known.")
    ip: str | None = Field(default=None, max_length=64, description="End user's IP, if known.")
    user_agent: str | None = Field(default=None, max_length=400, description="User agent.")


class CreateCompletion(Envelope):
    """A tenant's question; the answer arrives as CompletionPublished."""

    question: str = Field(min_length=1, max_length=32_000, description="The user's message.")
    model: str | None = Field(default=None, max_length=100, description="Model; default if unset.")
    max_tokens: int | None = Field(default=None, ge=1, le=200_000, description="Output token cap.")
    top_k: int = Field(default=4, ge=0, le=20, description="Passages to retrieve; 0 disables RAG.")
    client: ClientInfo = Field(default_factory=ClientInfo, description="Who is asking.")


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0, description="Prompt tokens billed.")
    output_tokens: int = Field(default=0, ge=0, description="Completion tokens billed.")
    cache_read_input_tokens: int = Field(default=0, ge=0, description="Prompt-cache reads.")
    cache_creation_input_tokens: int = Field(default=0, ge=0, description="Prompt-cache writes.")

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
        )


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_id: str = Field(description="The tenant's document the passage came from.")
    chunk_id: str = Field(description="The passage's id.")
    score: float = Field(description="Similarity score of the passage.")


class CompletionPublished(Reply):
    """The answer (or the error) for one CreateCompletion, on the tenant's completion subject."""

    tenant_id: AttributedTenantId = Field(description="The requesting tenant.")
    text: str = Field(default="", description="The answer text (after leakage redaction).")
    model: str = Field(default="", description="The model that produced the text.")
    usage: Usage = Field(default_factory=Usage, description="Real token usage.")
    cost_nanousd: int = Field(default=0, ge=0, description="What the request cost (1e-9 USD).")
    citations: list[Citation] = Field(default_factory=list, description="Passages used.")
    redactions: int = Field(default=0, ge=0, description="Spans redacted by leakage scanning.")


class CompletionDelta(BaseModel):
    """gateway -> client, on a streamed request's reply inbox: answer text that has
    passed the leakage scan, in order. The stream ends with the CompletionPublished
    (usage, cost; or the error that ended it)."""

    type: Literal["delta"] = Field(default="delta", description="Tells deltas from the end.")
    request_id: str = Field(description="The request this text answers.")
    seq: int = Field(ge=0, description="Order within the stream, from 0.")
    text: str = Field(description="Scanned answer text, continuing the previous delta.")


class CancelCompletion(Envelope):
    """client -> gateway (tenant.<tid>.request.cancel): stop this streamed request. The
    model call stops and the tokens it had used are charged (outcome partial)."""
