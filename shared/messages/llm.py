"""llm's messages: one model call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.audit import AuditRecorded
from shared.messages.base import Envelope, Reply
from shared.messages.completions import Usage
from shared.messages.retrieval import Chunk


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"] = Field(description="Speaker.")
    content: str = Field(description="Plain text content.")


class InvokeModel(Envelope):
    model: str = Field(description="Model to call; must be on the tenant's allow-list.")
    allowed_models: list[str] = Field(description="The tenant's allow-list, from its config.")
    system: str = Field(description="Rendered system prompt.")
    messages: list[ChatMessage] = Field(min_length=1, description="Conversation, last is user.")
    max_tokens: int = Field(ge=1, description="Output token cap (already within tenant limits).")
    context: list[Chunk] = Field(
        default_factory=list, description="Retrieved passages (used by the offline provider)."
    )
    audit_by_caller: bool = Field(
        default=False,
        description="The caller records this call's audit row inside its own audit event (a "
        "request's trail): the row comes back in the reply instead of being published.",
    )


class ModelInvoked(Reply):
    model: str = Field(default="", description="Model that answered, as the provider names it.")
    provider: str = Field(default="", description="anthropic or offline.")
    text: str = Field(default="", description="Answer text.")
    usage: Usage = Field(default_factory=Usage, description="Real usage reported or measured.")
    stop_reason: str | None = Field(default=None, description="Why generation stopped.")
    audit: AuditRecorded | None = Field(
        default=None, description="The call's audit row, when the caller records it."
    )


class ModelStreamed(Reply):
    """llm -> gateway, many per streamed call on the caller's inbox: text deltas in order
    (`seq` from 0), then one final event with `done` set, the model, the usage and the
    stop reason (or an error). A call cut short still ends with a final event carrying
    the usage spent so far and stop_reason "cancelled"."""

    seq: int = Field(default=0, ge=0, description="Order of this event within the call.")
    text: str = Field(default="", description="New text since the previous event.")
    done: bool = Field(default=False, description="The last event of the call.")
    model: str = Field(default="", description="Model that answered (final event).")
    provider: str = Field(default="", description="anthropic or offline (final event).")
    usage: Usage = Field(default_factory=Usage, description="Usage of the call (final event).")
    stop_reason: str | None = Field(default=None, description="Why generation stopped.")


class CancelModelCall(Envelope):
    """gateway -> every llm replica: stop the streamed call of this request now."""
