"""access's messages: a tenant's NATS credentials, issued once and revocable."""

from __future__ import annotations

from pydantic import Field

from shared.messages.base import Envelope, Reply


class IssueCredentials(Envelope):
    rotate: bool = Field(default=False, description="Replace existing credentials.")
    actor: str = Field(default="ops", max_length=120, description="Who asked for them.")


class CredentialsIssued(Reply):
    """`password` is set only when new credentials were made: it is shown once, never stored."""

    user: str = Field(default="", description="NATS user name.")
    password: str = Field(default="", repr=False, description="Only on creation; never logged.")
    inbox_prefix: str = Field(default="", description="Inbox prefix the client must use.")
    created: bool = Field(default=False, description="False when they already existed.")


class RevokeCredentials(Envelope):
    actor: str = Field(default="ops", max_length=120, description="Who revoked them.")


class CredentialsRevoked(Reply):
    existed: bool = Field(default=False, description="Whether there was anything to revoke.")
    api_keys: int = Field(default=0, ge=0, description="HTTP API keys revoked with them.")
