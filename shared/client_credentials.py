"""Who the client is: NATS credentials from arguments, the environment or a file, and
URLs made safe to show (never a password in an error or a log line)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.client_errors import AuthenticationFailed


def redact_url(url: str) -> str:
    """The URL without any password in it (user names stay: they help diagnose)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url.strip()
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def server_list(nats_url: str) -> list[str]:
    return [u.strip() for u in nats_url.split(",") if u.strip()]


@dataclass(frozen=True)
class Credentials:
    """How to log in to NATS. `creds_file` is a NATS JWT .creds file (needs `nkeys`)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    creds_file: Path | None = None
    # From a Tenantry credentials file: the tenant and URL it was issued for.
    tenant_id: str | None = None
    nats_url: str | None = None


def load_credentials_file(path: Path) -> Credentials:
    """A Tenantry credentials file (JSON written by `tenantry tenants create --creds-out`:
    user, password, optionally tenant_id and nats_url) or a NATS JWT .creds file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthenticationFailed(f"cannot read credentials file {path}: {exc.strerror}") from None
    if "BEGIN NATS USER JWT" in text:
        return Credentials(creds_file=path)
    try:
        data = json.loads(text)
        user, password = data["user"], data["password"]
    except (ValueError, KeyError, TypeError):
        # Never echo the content: it may hold a password.
        raise AuthenticationFailed(
            f"{path} is neither a Tenantry credentials file (JSON with user and password) "
            "nor a NATS .creds file"
        ) from None
    return Credentials(
        user=str(user),
        password=str(password),
        tenant_id=data.get("tenant_id"),
        nats_url=data.get("nats_url"),
    )


def resolve_credentials(
    user: str | None = None,
    password: str | None = None,
    creds: str | Path | None = None,
    environ: dict[str, str] | None = None,
) -> Credentials:
    """Explicit arguments first, then TENANTRY_NATS_USER/_PASSWORD, then TENANTRY_NATS_CREDS."""
    env = os.environ if environ is None else environ
    if creds:
        return load_credentials_file(Path(creds))
    if user:
        return Credentials(user=user, password=password)
    if env.get("TENANTRY_NATS_USER"):
        return Credentials(
            user=env["TENANTRY_NATS_USER"], password=env.get("TENANTRY_NATS_PASSWORD")
        )
    if env.get("TENANTRY_NATS_CREDS"):
        return load_credentials_file(Path(env["TENANTRY_NATS_CREDS"]))
    return Credentials()
