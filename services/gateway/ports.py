"""The gateway's view of the other services: one method per call, typed both ways."""

from __future__ import annotations

from typing import Protocol

from faststream.nats import NatsBroker

from services.gateway.tenants import TenantCache
from shared import subjects
from shared.bus import call
from shared.messages.leakage import ScanText, TextScanned
from shared.messages.llm import InvokeModel, ModelInvoked
from shared.messages.metering import AuthorizeRequest, RequestAuthorized, SettleUsage, UsageSettled
from shared.messages.retrieval import (
    ChunksFound,
    DocumentsIngested,
    IngestDocuments,
    SearchChunks,
)
from shared.messages.tenants import ResolveTenant, TenantResolved


class Ports(Protocol):
    async def resolve(self, msg: ResolveTenant) -> TenantResolved: ...
    async def authorize(self, msg: AuthorizeRequest) -> RequestAuthorized: ...
    async def search(self, msg: SearchChunks) -> ChunksFound: ...
    async def scan(self, msg: ScanText) -> TextScanned: ...
    async def invoke(self, msg: InvokeModel) -> ModelInvoked: ...
    async def settle(self, msg: SettleUsage) -> UsageSettled: ...
    async def ingest(self, msg: IngestDocuments) -> DocumentsIngested: ...


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
