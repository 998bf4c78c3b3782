"""Self-healing background followers of JetStream state, and the one every service that
reads tenant configs shares: a watch of the tenants KV bucket.

promptconfig owns the tenants bucket; followers only read it. The watcher delivers the
latest value of every key, then a None marker, then live changes (puts, deletes,
purges), each a moment after promptconfig's write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.js.client import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from shared.bus import TENANTS_BUCKET
from shared.logging import get_logger
from shared.messages.tenants import TenantConfig

log = get_logger("tenantry.feeds")

ReplaceAll = Callable[[dict[str, TenantConfig]], None]
Apply = Callable[[str, TenantConfig | None], None]


class Feed:
    """A self-healing background follower: `start` waits until the first full load is
    applied; a failed follow is logged and restarted (with a fresh full load) after
    `retry_s`, so what a service knows never silently goes stale."""

    what = "feed"

    def __init__(self, retry_s: float) -> None:
        self._retry_s = retry_s
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-{self.what}")
        try:
            # _run never gives up (it retries), so waiting on the event alone is enough.
            await asyncio.wait_for(self._loaded.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise TimeoutError(f"{self.what} not loaded within {timeout:g}s") from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._cleanup()

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except Exception:
                log.exception("feed.failed", feed=self.what)
            await self._cleanup()
            await asyncio.sleep(self._retry_s)

    async def _follow(self) -> None:
        raise NotImplementedError

    async def _cleanup(self) -> None:
        """Release what a follow held (after a failure, and at stop)."""


class UnreadableEntry(ValueError):
    pass


def parse_config(entry: KeyValue.Entry) -> TenantConfig | None:
    """The tenant's config, or None when it was deleted or purged."""
    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
        return None
    try:
        config = TenantConfig.model_validate_json(entry.value)
    except ValidationError as exc:
        raise UnreadableEntry(entry.key) from exc
    if config.tenant_id != entry.key:
        # Deletes arrive by key: a config filed under another id could never be removed.
        raise UnreadableEntry(entry.key)
    return config


class TenantConfigFeed(Feed):
    """One long-lived watcher of the tenants bucket, handing every config to callbacks.

    `replace_all` gets every current config once the initial load is done (and again
    after a failed watch restarts); `apply` gets each live change, None for a deleted or
    purged tenant. An unreadable entry is logged and skipped, and a failed watch keeps
    what was known until the restart's full load: right for leakage, which would rather
    know an old name than none.

    `keep_stale=False` is for a cache in front of the owner (the gateway): it must not
    serve a config it can no longer vouch for, so an unreadable live entry is applied as
    None and a watch that ends empties everything (`replace_all({})`). Those tenants'
    requests then ask promptconfig, which decides.
    """

    what = "tenant configs"

    def __init__(
        self,
        js: JetStreamContext,
        replace_all: ReplaceAll,
        apply: Apply,
        *,
        keep_stale: bool = True,
        retry_s: float = 1.0,
    ) -> None:
        super().__init__(retry_s)
        self._js = js
        self._replace_all = replace_all
        self._apply = apply
        self._keep_stale = keep_stale
        self._watcher: KeyValue.KeyWatcher | None = None

    async def _cleanup(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._watcher.stop()  # type: ignore[no-untyped-call]
            self._watcher = None

    async def _follow(self) -> None:
        try:
            await self._watch()
        finally:
            # Also on stop (cancellation): nothing keeps the values current any more.
            if not self._keep_stale:
                self._replace_all({})

    async def _watch(self) -> None:
        kv = await self._js.key_value(TENANTS_BUCKET)
        self._watcher = await kv.watchall()
        snapshot: dict[str, TenantConfig] = {}
        loading = True
        async for entry in self._watcher:
            if entry is None:  # end of the initial values
                if loading:
                    self._replace_all(snapshot)
                    loading = False
                    self._loaded.set()
                continue
            try:
                config = parse_config(entry)
            except UnreadableEntry:
                log.warning("feed.tenant_config_unreadable", key=entry.key, revision=entry.revision)
                if self._keep_stale:
                    continue
                config = None
            if loading:
                if config is not None:
                    snapshot[entry.key] = config
                else:
                    snapshot.pop(entry.key, None)
            else:
                self._apply(entry.key, config)
