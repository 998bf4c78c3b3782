"""API keys for the HTTP door: issued, listed, rotated and revoked by ops through access.

A key belongs to exactly one tenant; only its SHA-256 is stored (a key is 256 random
bits, so a slow hash adds nothing), and the key itself is shown once, when issued.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.messages.base import Envelope, Reply

KEY_ID_PATTERN = r"^[0-9a-f]{12}$"


class IssueApiKey(Envelope):
    name: str = Field(default="", max_length=80, description="A label, e.g. where it is used.")
    actor: str = Field(default="ops", max_length=120, description="Who asked for it.")


class ApiKeyIssued(Reply):
    """`key` is the only copy: it is never stored or logged."""

    key_id: str = Field(default="", description="Names the key in lists and revocations.")
    key: str = Field(default="", repr=False, description="The secret key; shown once.")
    name: str = Field(default="", description="Its label.")


class ListApiKeys(Envelope):
    """The tenant's keys (never the secrets)."""


class ApiKeyInfo(BaseModel):
    key_id: str = Field(description="Names the key.")
    name: str = Field(description="Its label.")
    created_at: datetime = Field(description="When it was issued.")
    created_by: str = Field(description="Who issued it.")
    hint: str = Field(description="Its last four characters, to tell keys apart.")


class ApiKeysListed(Reply):
    keys: list[ApiKeyInfo] = Field(default_factory=list, description="Oldest first.")


class RevokeApiKey(Envelope):
    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The key to revoke.")
    actor: str = Field(default="ops", max_length=120, description="Who revoked it.")


class ApiKeyRevoked(Reply):
    existed: bool = Field(default=False, description="Whether the key existed.")


class RotateApiKey(Envelope):
    """Issue a replacement with the same label and revoke the old key at once."""

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The key to replace.")
    actor: str = Field(default="ops", max_length=120, description="Who rotated it.")
