"""NATS users and permissions, rendered as a nats-server `authorization` block.

Chosen mechanism: nats-server users with per-user publish/subscribe permissions, in an
included file that the access service rewrites and hot-reloads (SIGHUP) when tenants
come and go. A reload applies at once: connections of a removed user are closed. Only
bcrypt hashes are written; a password exists in clear only in the reply that issues it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from shared import grants, subjects

BCRYPT_ROUNDS = 10  # nats-server checks the hash at every connect: ~60 ms at 10 rounds


@dataclass(frozen=True)
class NatsUser:
    user: str
    password_hash: str
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "user": self.user,
            "password": self.password_hash,
            "permissions": {
                "publish": {"allow": self.publish},
                "subscribe": {"allow": self.subscribe},
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> NatsUser:
        perms = data["permissions"]
        assert isinstance(perms, dict)
        return cls(
            user=str(data["user"]),
            password_hash=str(data["password"]),
            publish=list(perms["publish"]["allow"]),
            subscribe=list(perms["subscribe"]["allow"]),
        )


def new_password() -> str:
    return secrets.token_urlsafe(32)


def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def tenant_user_name(tenant_id: str) -> str:
    return f"tenant-{tenant_id}"


def tenant_user(tenant_id: str, password_hash: str) -> NatsUser:
    """A tenant's client: its own request and ingest subjects, its completions, its inboxes."""
    return NatsUser(
        user=tenant_user_name(tenant_id),
        password_hash=password_hash,
        publish=[
            subjects.request(tenant_id),
            subjects.request_sync(tenant_id),
            subjects.request_stream(tenant_id),
            subjects.request_cancel(tenant_id),
            subjects.ingest(tenant_id),
        ],
        subscribe=[subjects.completions(tenant_id), subjects.tenant_inbox_prefix(tenant_id) + ".>"],
    )


def service_user(name: str, password_hash: str) -> NatsUser:
    """Least privilege: what shared.grants lists for this service, nothing more."""
    return NatsUser(
        f"svc-{name}",
        password_hash,
        publish=grants.publish_permissions(name),
        subscribe=grants.subscribe_permissions(name),
    )


def ops_user(password_hash: str) -> NatsUser:
    """Ops: the service APIs (tenants, usage, audit) and acting as any tenant's client."""
    return NatsUser(
        "ops",
        password_hash,
        publish=[
            "svc.>",
            subjects.ALL_REQUESTS,
            subjects.ALL_SYNC_REQUESTS,
            subjects.ALL_STREAM_REQUESTS,
            subjects.ALL_CANCELS,
            subjects.ALL_INGESTS,
        ],
        subscribe=["_INBOX.>", "_TINBOX.>", subjects.ALL_COMPLETIONS],
    )


def render(users: list[NatsUser]) -> str:
    """The authorization block; values are JSON strings, which nats-server's format accepts."""
    lines = ["# Written by Tenantry; do not edit by hand.", "authorization {", "  users = ["]
    lines += [f"    {json.dumps(u.to_dict())}" for u in sorted(users, key=lambda u: u.user)]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def write_private(path: Path, text: str) -> None:
    """Atomic write, readable by the owner only (it holds password hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
