"""The client's NATS plumbing: a quiet connection that fails fast, and requests that turn
every transport failure into a typed error.

Only nats-py, pydantic and the standard library: the client installs without the
platform's packages (FastStream, Qdrant, chDB, numpy, anthropic).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient

from shared.client_credentials import Credentials, redact_url, server_list
from shared.client_errors import (
    AuthenticationFailed,
    ConnectionFailed,
    Forbidden,
    RequestTimeout,
    TenantryError,
    Unavailable,
)
from shared.messages.base import Reply

R = TypeVar("R", bound=Reply)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
log = logging.getLogger("tenantry.client")

_DENIED = re.compile(r"permissions violation for (publish|subscription) to \"?([^\"' ]+)", re.I)


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


def js_publish_error(exc: Exception, what: str) -> TenantryError:
    """A failed JetStream publish as a typed error."""
    if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
        return Unavailable(
            f"nothing accepted the request on {what} (no gateway or stream answered): "
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
