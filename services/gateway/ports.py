"""The gateway's view of the other services: one method per call, typed both ways."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.gateway.tenants import TenantCache
from shared import subjects
from shared.bus import call, next_reply
from shared.messages.leakage import ScanText, TextScanned
from shared.messages.llm import CancelModelCall, InvokeModel, ModelInvoked, ModelStreamed
from shared.messages.metering import AuthorizeRequest, RequestAuthorized, SettleUsage, UsageSettled
from shared.messages.retrieval import (
    ChunksFound,
    DocumentsIngested,
    IngestDocuments,
    SearchChunks,
)
from shared.messages.tenants import ResolveTenant, TenantResolved


class ModelCall(Protocol):
    async def next(self) -> ModelStreamed:
        """The next event of a streamed call; raises ServiceCallError if none comes."""
        ...


class Ports(Protocol):
    async def resolve(self, msg: ResolveTenant) -> TenantResolved: ...
    async def authorize(self, msg: AuthorizeRequest) -> RequestAuthorized: ...
    async def search(self, msg: SearchChunks) -> ChunksFound: ...
    async def scan(self, msg: ScanText) -> TextScanned: ...
    async def invoke(self, msg: InvokeModel) -> ModelInvoked: ...
    async def settle(self, msg: SettleUsage) -> UsageSettled: ...
    async def ingest(self, msg: IngestDocuments) -> DocumentsIngested: ...
    def invoke_stream(self, msg: InvokeModel) -> AbstractAsyncContextManager[ModelCall]: ...
    async def cancel_model(self, msg: CancelModelCall) -> None: ...


class BusPorts:
    """Ports over NATS request/reply; raises shared.bus.ServiceCallError when nobody answers.

    With a `cache`, resolve answers from it and asks promptconfig only on a miss."""

    def __init__(
        self,
        broker: NatsBroker,
        timeout_s: float,
        model_timeout_s: float,
        cache: TenantCache | None = None,
    ) -> None:
        self._broker = broker
        self._timeout = timeout_s
        self._model_timeout = model_timeout_s
        self._cache = cache

    async def resolve(self, msg: ResolveTenant) -> TenantResolved:
        if self._cache is not None:
            return await self._cache.resolve(msg, self._ask_promptconfig)
        return await self._ask_promptconfig(msg)

    async def _ask_promptconfig(self, msg: ResolveTenant) -> TenantResolved:
        subject = subjects.service("promptconfig", "resolve", msg.tenant_id)
        return await call(self._broker, subject, msg, TenantResolved, self._timeout)

    async def authorize(self, msg: AuthorizeRequest) -> RequestAuthorized:
        subject = subjects.service("metering", "authorize", msg.tenant_id)
        return await call(self._broker, subject, msg, RequestAuthorized, self._timeout)

    async def search(self, msg: SearchChunks) -> ChunksFound:
        subject = subjects.service("retrieval", "search", msg.tenant_id)
        return await call(self._broker, subject, msg, ChunksFound, self._timeout)

    async def scan(self, msg: ScanText) -> TextScanned:
        subject = subjects.service("leakage", "scan", msg.tenant_id)
        return await call(self._broker, subject, msg, TextScanned, self._timeout)

    async def invoke(self, msg: InvokeModel) -> ModelInvoked:
        subject = subjects.service("llm", "invoke", msg.tenant_id)
        return await call(self._broker, subject, msg, ModelInvoked, self._model_timeout)

    async def settle(self, msg: SettleUsage) -> UsageSettled:
        subject = subjects.service("metering", "settle", msg.tenant_id)
        return await call(self._broker, subject, msg, UsageSettled, self._timeout)

    async def ingest(self, msg: IngestDocuments) -> DocumentsIngested:
        subject = subjects.service("retrieval", "ingest", msg.tenant_id)
        # Embedding a large batch takes a while; give it the model-sized budget.
        return await call(self._broker, subject, msg, DocumentsIngested, self._model_timeout)

    def invoke_stream(self, msg: InvokeModel) -> AbstractAsyncContextManager[ModelCall]:
        subject = subjects.service("llm", "stream", msg.tenant_id)
        return BusModelCall(self._broker.connection, subject, msg, self._model_timeout)

    async def cancel_model(self, msg: CancelModelCall) -> None:
        subject = subjects.service("llm", "cancel", msg.tenant_id)
        await self._broker.connection.publish(subject, msg.model_dump_json().encode())


class BusModelCall:
    """One streamed llm call: its events queue up on a private inbox, so a wait that was
    interrupted (the client went away) can still read the final event afterwards."""

    def __init__(self, nc: NatsClient, subject: str, msg: InvokeModel, timeout_s: float) -> None:
        self._nc, self._subject, self._msg, self._timeout = nc, subject, msg, timeout_s
        self._events: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None

    async def __aenter__(self) -> BusModelCall:
        inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(inbox, cb=self._arrived)
        await self._nc.publish(self._subject, self._msg.model_dump_json().encode(), reply=inbox)
        return self

    async def _arrived(self, msg: Msg) -> None:
        self._events.put_nowait(msg)

    async def next(self) -> ModelStreamed:
        msg = await next_reply(self._events, self._timeout, "the llm service")
        return ModelStreamed.model_validate_json(msg.data)

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
