"""api's view of the gateway: requests as the tenant, on the tenant's own subjects,
answered in its own inbox."""

from __future__ import annotations

import asyncio
import secrets
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared import subjects
from shared.bus import call, next_reply
from shared.messages.completions import (
    CancelCompletion,
    CompletionDelta,
    CompletionPublished,
    CreateCompletion,
)
from shared.messages.tenants import ResolveTenant, TenantResolved


# What the routes need (services.api.handlers.Deps): Gateway and Stream below are the
# real ones, tests/unit/test_api_handlers.py has the fakes.
class StreamPort(Protocol):
    finished: bool

    async def next(self) -> CompletionDelta | CompletionPublished: ...

    async def close(self) -> None: ...


class GatewayPort(Protocol):
    async def complete(self, request: CreateCompletion) -> CompletionPublished: ...

    async def stream(self, request: CreateCompletion) -> StreamPort: ...

    async def models(self, tenant_id: str) -> TenantResolved: ...


class Gateway:
    """Requests as the tenant: on tenant.<tid>.request.sync, with the reply in
    _TINBOX.<tid>.… (the only place the gateway answers a tenant subject). One wildcard
    subscription collects every tenant's replies for this process."""

    def __init__(self, nc: NatsClient, timeout_s: float) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._me = f"api{secrets.token_hex(6)}"
        # Replies by token: one message (a sync request) or many (a stream).
        self._replies: dict[str, asyncio.Queue[Msg]] = {}

    async def start(self) -> None:
        await self._nc.subscribe(f"{subjects.TENANT_INBOX_ROOT}.*.{self._me}.*", cb=self._on)

    async def _on(self, msg: Msg) -> None:
        queue = self._replies.get(msg.subject.rsplit(".", 1)[-1])
        if queue is not None:
            queue.put_nowait(msg)

    async def _ask(self, subject: str, request: CreateCompletion) -> tuple[str, asyncio.Queue[Msg]]:
        token = secrets.token_hex(8)
        inbox = f"{subjects.tenant_inbox_prefix(request.tenant_id)}.{self._me}.{token}"
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._replies[token] = queue
        await self._nc.publish(subject, request.model_dump_json().encode(), reply=inbox)
        return token, queue

    async def receive(self, queue: asyncio.Queue[Msg]) -> Msg:
        return await next_reply(queue, self._timeout_s, "the gateway")

    async def complete(self, request: CreateCompletion) -> CompletionPublished:
        token, queue = await self._ask(subjects.request_sync(request.tenant_id), request)
        try:
            reply = await self.receive(queue)
        finally:
            self._replies.pop(token, None)
        return CompletionPublished.model_validate_json(reply.data)

    async def stream(self, request: CreateCompletion) -> Stream:
        """Start a streamed request; read it with Stream.next, end it with Stream.close."""
        token, queue = await self._ask(subjects.request_stream(request.tenant_id), request)
        return Stream(self, token, request, queue)

    async def models(self, tenant_id: str) -> TenantResolved:
        return await call(
            self._nc,
            subjects.service("promptconfig", "resolve", tenant_id),
            ResolveTenant(tenant_id=tenant_id),
            TenantResolved,
            self._timeout_s,
        )


class Stream:
    """The gateway's events for one streamed request: scanned text deltas, then the
    completion. Closing it before the end tells the gateway to stop (the client left)."""

    def __init__(
        self, gateway: Gateway, token: str, request: CreateCompletion, queue: asyncio.Queue[Msg]
    ) -> None:
        self._gateway, self._token, self._request, self._queue = gateway, token, request, queue
        self.finished = False

    async def next(self) -> CompletionDelta | CompletionPublished:
        msg = await self._gateway.receive(self._queue)
        if msg.data.startswith(b'{"type":"delta"'):
            return CompletionDelta.model_validate_json(msg.data)
        self.finished = True
        return CompletionPublished.model_validate_json(msg.data)

    async def close(self) -> None:
        self._gateway._replies.pop(self._token, None)
        if not self.finished:
            stop = CancelCompletion(
                tenant_id=self._request.tenant_id, request_id=self._request.request_id
            )
            await self._gateway._nc.publish(
                subjects.request_cancel(stop.tenant_id), stop.model_dump_json().encode()
            )
