"""The synchronous client, `Tenantry`: AsyncTenantry's API for code without an event
loop (import it from shared.client)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from shared.messages.completions import CompletionPublished
from shared.messages.retrieval import Document, DocumentsIngested

if TYPE_CHECKING:
    from shared.client import AsyncTenantry

T = TypeVar("T")


class Tenantry:
    """Synchronous client: the same API as AsyncTenantry, for code without an event loop.

    It runs its own event loop on a daemon thread; every method blocks until done.
    Use it as a context manager, or call close().
    """

    def __init__(self, tenant_id: str | None = None, nats_url: str | None = None, **kw: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tenantry-client", daemon=True
        )
        self._thread.start()
        try:
            # Built on the loop's thread: its asyncio objects belong to that loop.
            self._client: AsyncTenantry = self._call(_build(tenant_id, nats_url, kw))
        except BaseException:
            self._stop()
            raise
        self.tenant_id = self._client.tenant_id

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return future.result()

    def connect(self) -> Tenantry:
        self._call(self._client.connect())
        return self

    def ask(self, question: str, **kw: Any) -> CompletionPublished:
        return self._call(self._client.ask(question, **kw))

    def ask_sync(self, question: str, **fields: Any) -> CompletionPublished:
        return self._call(self._client.ask_sync(question, **fields))

    def ingest(self, documents: Iterable[Document]) -> DocumentsIngested:
        return self._call(self._client.ingest(list(documents)))

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._client.close())
            finally:
                self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Tenantry:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _build(tenant_id: str | None, nats_url: str | None, kw: dict[str, Any]) -> AsyncTenantry:
    # Imported here: shared.client imports this module to offer both clients.
    from shared.client import AsyncTenantry

    return AsyncTenantry(tenant_id, nats_url, **kw)
