"""The Python client for a tenant's own services: ask questions, ingest documents.

It speaks only the tenant's client-facing subjects, so it works with a tenant's own
credentials; any NATS client can do the same with the same JSON messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import nats
from nats.aio.client import Client as NatsClient

from shared import subjects
from shared.messages.completions import ClientInfo, CompletionPublished, CreateCompletion
from shared.messages.retrieval import Document, DocumentsIngested, IngestDocuments
from shared.tenancy import validate_tenant_id


class TenantClient:
    def __init__(
        self,
        tenant_id: str,
        nats_url: str = "nats://127.0.0.1:4222",
        *,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.tenant_id = validate_tenant_id(tenant_id)
        self._url = nats_url
        self._user, self._password = user, password
        self._timeout = timeout_s
        self._nc: NatsClient | None = None

    async def connect(self) -> TenantClient:
        if self._nc is None:
            self._nc = await nats.connect(
                self._url,
                user=self._user,
                password=self._password,
                name="tenantry-client",
                # A tenant's credentials may only subscribe to inboxes under this prefix.
                inbox_prefix=subjects.tenant_inbox_prefix(self.tenant_id),
            )
        return self

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def __aenter__(self) -> TenantClient:
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
        if self._nc is None:
            raise RuntimeError("TenantClient is not connected; use `async with` or connect()")
        return self._nc

    def request(self, question: str, **fields: object) -> CreateCompletion:
        return CreateCompletion(tenant_id=self.tenant_id, question=question, **fields)

    async def ask(
        self,
        question: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        top_k: int = 4,
        client: ClientInfo | None = None,
    ) -> CompletionPublished:
        """Submit through the durable request stream and wait for the completion."""
        req = CreateCompletion(
            tenant_id=self.tenant_id,
            question=question,
            model=model,
            max_tokens=max_tokens,
            top_k=top_k,
            client=client or ClientInfo(),
        )
        return await self.submit(req)

    async def submit(self, req: CreateCompletion) -> CompletionPublished:
        # Subscribe before publishing so the completion cannot slip past us.
        sub = await self.nc.subscribe(
            subjects.completion(self.tenant_id, req.request_id), max_msgs=1
        )
        try:
            js = self.nc.jetstream()
            await js.publish(
                subjects.request(self.tenant_id),
                req.model_dump_json().encode(),
                headers={"Nats-Msg-Id": req.event_id},
            )
            msg = await sub.next_msg(timeout=self._timeout)
        finally:
            await sub.unsubscribe()
        return CompletionPublished.model_validate_json(msg.data)

    async def ask_sync(self, question: str, **fields: object) -> CompletionPublished:
        """Plain NATS request/reply: no stream, the answer comes back as the reply."""
        req = self.request(question, **fields)
        msg = await self.nc.request(
            subjects.request_sync(self.tenant_id),
            req.model_dump_json().encode(),
            timeout=self._timeout,
        )
        return CompletionPublished.model_validate_json(msg.data)

    async def ingest(self, documents: Iterable[Document]) -> DocumentsIngested:
        req = IngestDocuments(tenant_id=self.tenant_id, documents=list(documents))
        msg = await self.nc.request(
            subjects.ingest(self.tenant_id), req.model_dump_json().encode(), timeout=self._timeout
        )
        return DocumentsIngested.model_validate_json(msg.data)
