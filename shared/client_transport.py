"""The client's NATS plumbing: credentials, a quiet connection that fails fast, requests
that turn every transport failure into a typed error, and bounded retries.

Only nats-py, pydantic and the standard library: the client installs without the
platform's packages (FastStream, Qdrant, chDB, numpy, anthropic).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient

from shared.client_errors import (
    AuthenticationFailed,
    ConnectionFailed,
    Forbidden,
    RateLimited,
    RequestTimeout,
    TenantryError,
    Unavailable,
    error_from_info,
)
from shared.messages.base import Reply

R = TypeVar("R", bound=Reply)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
log = logging.getLogger("tenantry.client")

_DENIED = re.compile(r"permissions violation for (publish|subscription) to \"?([^\"' ]+)", re.I)


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


class Connection:
    """One NATS connection that reports failures as TenantryError, never as log storms.

    nats-py's default error callback logs every failed (re)connect with a traceback;
    here each is one debug line on the `tenantry.client` logger. A permissions
    violation (a subject the credentials do not allow) fails the request that caused it
    at once, instead of letting it wait for its timeout.
    """

    def __init__(self, nc: NatsClient, url: str) -> None:
        self.nc = nc
        self.url = url
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}

    @classmethod
    async def open(
        cls,
        nats_url: str,
        credentials: Credentials,
        *,
        name: str,
        inbox_prefix: str | None = None,
        connect_timeout_s: float = 2.0,
        keep_reconnecting: bool = True,
    ) -> Connection:
        """Connect within `connect_timeout_s` in all (each server is tried twice at most:
        a refused connection fails at once, a server that does not answer takes the whole
        budget). After that, `keep_reconnecting` decides whether a lost connection is
        re-established (long-lived clients) or fails (one-shot commands)."""
        servers = server_list(nats_url)
        shown = ", ".join(redact_url(s) for s in servers) or "(no URL)"
        holder: list[Connection] = []
        # The last few errors of the connect attempts, to say why it failed.
        last: deque[BaseException] = deque(maxlen=8)

        async def on_error(exc: Exception) -> None:
            if holder:
                holder[0]._on_error(exc)
            else:
                last.append(exc)
            log.debug("nats: %s", _describe(exc))

        attempts = 2 * max(1, len(servers))
        kwargs: dict[str, Any] = {
            "name": name,
            "error_cb": on_error,
            "disconnected_cb": _quiet,
            "closed_cb": _quiet,
            "reconnected_cb": _quiet,
            "connect_timeout": max(0.2, connect_timeout_s / attempts),
            "allow_reconnect": True,
            # nats-py drops a server after more than this many failed attempts; 0 means
            # never, so 1 = two attempts per server, then NoServersError.
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.05,
        }
        if inbox_prefix:
            kwargs["inbox_prefix"] = inbox_prefix
        if credentials.creds_file is not None:
            try:
                import nkeys  # noqa: F401  (nats-py needs it for .creds files)
            except ImportError:
                raise AuthenticationFailed(
                    "a NATS .creds file needs the nkeys package: pip install 'nats-py[nkeys]'"
                ) from None
            kwargs["user_credentials"] = str(credentials.creds_file)
        elif credentials.user:
            kwargs["user"] = credentials.user
            kwargs["password"] = credentials.password or ""
        if not servers:
            raise ConnectionFailed("no NATS URL given")
        nc = NatsClient()
        try:
            async with asyncio.timeout(connect_timeout_s + 0.5):
                await nc.connect(servers, **kwargs)
        except Exception as exc:
            await _discard(nc)
            if isinstance(exc, TimeoutError) and not last:
                last.append(exc)
            raise _connect_error(exc, list(last), servers, credentials) from None
        # Options are read live by nats-py's reconnect logic: widen them now that the
        # first connect has succeeded (or keep a one-shot command from reconnecting).
        nc.options["allow_reconnect"] = keep_reconnecting
        nc.options["max_reconnect_attempts"] = -1 if keep_reconnecting else 0
        nc.options["reconnect_time_wait"] = 2
        conn = cls(nc, shown)
        holder.append(conn)
        return conn

    def _on_error(self, exc: Exception) -> None:
        found = _DENIED.search(str(exc))
        if not found:
            return
        kind, subject = found.group(1).lower(), found.group(2)
        # A refused subscription is our reply inbox: every waiting request is affected.
        keys = list(self._waiters) if kind == "subscription" else [subject]
        for key in keys:
            for fut in self._waiters.pop(key, []):
                if not fut.done():
                    fut.set_result(f"{kind} to {subject}")

    async def request(self, subject: str, payload: bytes, timeout: float, what: str) -> bytes:
        """Request/reply; `what` names the responder in errors ("the gateway")."""
        denied: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(subject, []).append(denied)
        task = asyncio.ensure_future(self.nc.request(subject, payload, timeout=timeout))
        pending: set[asyncio.Future[Any]] = {task, denied}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                raise Forbidden(
                    f"the credentials in use may not {denied.result()} (NATS permissions violation)"
                )
            return bytes(task.result().data)
        except nats.errors.NoRespondersError:
            raise Unavailable(f"{what} is not running (no responders)", retryable=True) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise RequestTimeout(
                f"{what} did not answer within {timeout:g}s", retryable=True
            ) from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise ConnectionFailed(f"lost the connection to NATS at {self.url}") from None
        finally:
            waiting = self._waiters.get(subject, [])
            if denied in waiting:
                waiting.remove(denied)
            if not waiting:
                self._waiters.pop(subject, None)

    async def close(self) -> None:
        if self.nc.is_closed:
            return
        try:
            await self.nc.drain()
        except (nats.errors.Error, TimeoutError, OSError):
            await self.nc.close()


async def _discard(nc: NatsClient) -> None:
    """Close a client whose connect failed or was cut short (its socket may be open)."""
    try:
        await nc.close()
    except Exception:  # noqa: S110  (nothing to report: the connect error is what matters)
        pass


async def _quiet() -> None:
    """Connection-state callbacks: nothing to do (nats-py would otherwise not care either)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("nats: ", "")


def _connect_error(
    exc: Exception, seen: list[BaseException], servers: list[str], credentials: Credentials
) -> TenantryError:
    shown = ", ".join(redact_url(s) for s in servers)
    causes = [*reversed(seen), exc]
    if any("authorization violation" in str(c).lower() for c in causes) or any(
        isinstance(c, nats.errors.AuthorizationError) for c in causes
    ):
        in_url = next((u.username for u in map(_split, servers) if u and u.username), None)
        who = "anonymous login"
        if credentials.creds_file:
            who = f"credentials file {credentials.creds_file}"
        elif credentials.user:
            who = f"user {credentials.user!r}"
        elif in_url:
            who = f"user {in_url!r} from the URL"
        return AuthenticationFailed(f"NATS at {shown} refused the credentials ({who})")
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return ConnectionFailed(f"cannot reach NATS at {shown}: connection refused")
        if isinstance(cause, TimeoutError | asyncio.TimeoutError):
            return ConnectionFailed(f"cannot reach NATS at {shown}: timed out")
        if isinstance(cause, OSError) and cause.strerror:
            return ConnectionFailed(f"cannot reach NATS at {shown}: {cause.strerror}")
    detail = next(
        (_describe(c) for c in causes if not isinstance(c, nats.errors.NoServersError)), ""
    )
    return ConnectionFailed(f"cannot reach NATS at {shown}" + (f": {detail}" if detail else ""))


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter. A rate-limit refusal
    waits its `retry_after` instead, unless that is longer than `max_wait_s`."""

    max_retries: int = 2
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    max_wait_s: float = 10.0

    def delay(self, attempt: int, error: TenantryError) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based); None: give up."""
        if attempt >= self.max_retries or not error.retryable:
            return None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_wait_s else None
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter, not a secret


NO_RETRIES = RetryPolicy(max_retries=0)


async def with_retries(
    attempt: Callable[[], Awaitable[R]], policy: RetryPolicy, *, idempotent: bool
) -> R:
    """Run `attempt` until it gives a reply that is not a retryable refusal, or the
    policy gives up: then the last reply is returned (or the last transport error
    raised). A timeout is retried only when the call is idempotent: the first attempt
    may still be running and would be done twice."""
    tries = 0
    while True:
        try:
            reply = await attempt()
        except TenantryError as exc:
            wait = None
            if idempotent or not isinstance(exc, RequestTimeout):
                wait = policy.delay(tries, exc)
            if wait is None:
                raise
            reason = f"{exc.code}: {exc.message}"
        else:
            if reply.error is None or not reply.error.retryable:
                return reply
            wait = policy.delay(tries, error_from_info(reply.error))
            if wait is None:
                return reply
            reason = f"{reply.error.code}: {reply.error.message}"
        log.debug("retrying in %.2fs after %s", wait, reason)
        tries += 1
        await asyncio.sleep(wait)


def js_publish_error(exc: Exception, what: str) -> TenantryError:
    """A failed JetStream publish as a typed error."""
    if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
        return Unavailable(
            f"{what} is not set up on this NATS server (no stream answered): "
            "is the platform running?",
            retryable=True,
        )
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        return RequestTimeout(f"{what}: JetStream did not acknowledge in time", retryable=True)
    if isinstance(exc, nats.js.errors.APIError):
        # The gateway's intake answers in JetStream's error shape (503: not stored).
        text = exc.description or f"JetStream error {exc.code}"
        if exc.code == 503:
            return Unavailable(f"{what}: {text}", retryable=True)
        return TenantryError(f"{what}: {text}")
    return ConnectionFailed(f"{what}: {_describe(exc)}")
