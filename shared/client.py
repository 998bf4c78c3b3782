"""The Python client for a tenant's own services: ask questions, ingest documents.

    from shared.client import Tenantry          # or AsyncTenantry for asyncio code

    with Tenantry() as client:                  # TENANTRY_NATS_URL, TENANTRY_TENANT_ID,
        done = client.ask("What is our refund window?")   # TENANTRY_NATS_USER/_PASSWORD
        answer = done.text                                 # or TENANTRY_NATS_CREDS

Refusals raise typed exceptions (shared.client_errors: RateLimited, BudgetExceeded,
Forbidden, NotFound, Unavailable, ...) that keep the platform's error code; retryable
ones are retried with backoff first (`max_retries`). It speaks only the tenant's
client-facing subjects, so it works with a tenant's own credentials; any NATS client
can do the same with the same JSON messages.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NatsClient

from shared import subjects
from shared.client_credentials import Credentials, resolve_credentials
from shared.client_errors import (
    AuthenticationFailed,
    BudgetExceeded,
    Cancelled,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InternalError,
    InvalidRequest,
    LeakageBlocked,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    TenantryError,
    Unavailable,
    UpstreamError,
    error_from_info,
)
from shared.client_retry import RetryPolicy, with_retries
from shared.client_sync import Tenantry
from shared.client_transport import DEFAULT_NATS_URL, Connection, js_publish_error
from shared.messages.base import Reply
from shared.messages.completions import ClientInfo, CompletionPublished, CreateCompletion
from shared.messages.retrieval import Document, DocumentsIngested, IngestDocuments
from shared.tenancy import InvalidTenantId, validate_tenant_id

__all__ = [
    "AsyncTenantry",
    "AuthenticationFailed",
    "BudgetExceeded",
    "Cancelled",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "LeakageBlocked",
    "NotFound",
    "QuotaExceeded",
    "RateLimited",
    "RequestTimeout",
    "RetryPolicy",
    "TenantClient",
    "Tenantry",
    "TenantryError",
    "Unavailable",
    "UpstreamError",
]

R = TypeVar("R", bound=Reply)
T = TypeVar("T")


class AsyncTenantry:
    """asyncio client. Connects on first use (or `async with` / `connect()`).

    Every argument left unset comes from the environment: TENANTRY_NATS_URL,
    TENANTRY_TENANT_ID, TENANTRY_NATS_USER and TENANTRY_NATS_PASSWORD, or
    TENANTRY_NATS_CREDS (a credentials file; its tenant and URL are used if present).
    """

    # TenantClient keeps the old contract: refusals come back as replies with `.error`.
    raise_on_error = True

    def __init__(
        self,
        tenant_id: str | None = None,
        nats_url: str | None = None,
        *,
        user: str | None = None,
        password: str | None = None,
        creds: str | Path | None = None,
        credentials: Credentials | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 2.0,
        max_retries: int = 2,
        keep_reconnecting: bool = True,
    ) -> None:
        self._credentials = credentials or resolve_credentials(user, password, creds)
        tid = tenant_id or os.environ.get("TENANTRY_TENANT_ID") or self._credentials.tenant_id
        if not tid:
            raise InvalidRequest(
                "no tenant id: pass tenant_id or set TENANTRY_TENANT_ID",
                code="invalid_tenant",
            )
        try:
            self.tenant_id = validate_tenant_id(tid)
        except InvalidTenantId as exc:
            raise InvalidRequest(str(exc), code="invalid_tenant") from None
        self.nats_url = (
            nats_url
            or os.environ.get("TENANTRY_NATS_URL")
            or self._credentials.nats_url
            or DEFAULT_NATS_URL
        )
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry = RetryPolicy(max_retries=max_retries)
        self._keep_reconnecting = keep_reconnecting
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> AsyncTenantry:
        async with self._lock:
            if self._conn is None:
                self._conn = await Connection.open(
                    self.nats_url,
                    self._credentials,
                    name=f"tenantry-client-{self.tenant_id}",
                    # A tenant's credentials may only subscribe to inboxes under this prefix.
                    inbox_prefix=subjects.tenant_inbox_prefix(self.tenant_id),
                    connect_timeout_s=self.connect_timeout_s,
                    keep_reconnecting=self._keep_reconnecting,
                )
        return self

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> AsyncTenantry:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def nc(self) -> NatsClient:
        """The underlying nats-py connection (for what the client does not wrap)."""
        if self._conn is None:
            raise RuntimeError("the client is not connected; use `async with` or connect()")
        return self._conn.nc

    async def _connection(self) -> Connection:
        if self._conn is None:
            await self.connect()
        assert self._conn is not None
        return self._conn

    def request(self, question: str, **fields: Any) -> CreateCompletion:
        return CreateCompletion(tenant_id=self.tenant_id, question=question, **fields)

    def _checked(self, reply: R) -> R:
        if reply.error is not None and self.raise_on_error:
            raise error_from_info(reply.error)
        return reply

    async def ask(
        self,
        question: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        top_k: int = 4,
        client: ClientInfo | None = None,
    ) -> CompletionPublished:
        """Submit through the durable request stream and wait for the completion.

        A retryable refusal is retried as a new request (the refused one cost nothing);
        a completion that does not arrive in `timeout_s` raises RequestTimeout."""

        async def attempt() -> CompletionPublished:
            req = CreateCompletion(
                tenant_id=self.tenant_id,
                question=question,
                model=model,
                max_tokens=max_tokens,
                top_k=top_k,
                client=client or ClientInfo(),
            )
            return await self._submit(req)

        return self._checked(await with_retries(attempt, self.retry, idempotent=False))

    async def submit(self, req: CreateCompletion) -> CompletionPublished:
        """Submit a prepared request once (no retries)."""
        return self._checked(await self._submit(req))

    async def _submit(self, req: CreateCompletion) -> CompletionPublished:
        conn = await self._connection()
        # Subscribe before publishing so the completion cannot slip past us.
        sub = await conn.nc.subscribe(
            subjects.completion(self.tenant_id, req.request_id), max_msgs=1
        )
        try:
            try:
                await conn.nc.jetstream().publish(
                    subjects.request(self.tenant_id),
                    req.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": req.event_id},
                )
            except (nats.errors.Error, TimeoutError) as exc:
                raise js_publish_error(exc, "the request stream") from None
            try:
                msg = await sub.next_msg(timeout=self.timeout_s)
            except (nats.errors.TimeoutError, TimeoutError):
                raise RequestTimeout(
                    f"no completion within {self.timeout_s:g}s (request {req.request_id}); "
                    "is the gateway running?",
                    retryable=True,
                ) from None
        finally:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass  # already gone (max_msgs reached or connection closed)
        return CompletionPublished.model_validate_json(msg.data)

    async def ask_sync(self, question: str, **fields: Any) -> CompletionPublished:
        """Plain NATS request/reply: no stream, the answer comes back as the reply. A
        gateway that is not running fails at once (no responders)."""

        async def attempt() -> CompletionPublished:
            conn = await self._connection()
            data = await conn.request(
                subjects.request_sync(self.tenant_id),
                self.request(question, **fields).model_dump_json().encode(),
                self.timeout_s,
                "the gateway",
            )
            return CompletionPublished.model_validate_json(data)

        return self._checked(await with_retries(attempt, self.retry, idempotent=False))

    async def ingest(self, documents: Iterable[Document]) -> DocumentsIngested:
        """Index documents into the tenant's own collection. Re-ingesting a document id
        replaces it, so a timed-out call is retried too."""
        payload = (
            IngestDocuments(tenant_id=self.tenant_id, documents=list(documents))
            .model_dump_json()
            .encode()
        )

        async def attempt() -> DocumentsIngested:
            conn = await self._connection()
            data = await conn.request(
                subjects.ingest(self.tenant_id), payload, self.timeout_s, "the gateway"
            )
            return DocumentsIngested.model_validate_json(data)

        return self._checked(await with_retries(attempt, self.retry, idempotent=True))


class TenantClient(AsyncTenantry):
    """The original async client: refusals come back as replies with `.error` set
    instead of raising (transport failures still raise typed errors)."""

    raise_on_error = False
