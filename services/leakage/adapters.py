"""leakage's feeds: the tenant registry (a JetStream KV watcher keeping the
TenantDirectory current) and every tenant's content fingerprints (a JetStream replay).

promptconfig owns the tenants bucket; leakage only reads it. The watcher delivers the
latest value of every key, then a marker, then live changes (puts, deletes, purges).
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from services.leakage.content import FingerprintIndex
from services.leakage.directory import TenantDirectory, TenantIdentity
from shared import subjects
from shared.bus import TENANTS_BUCKET
from shared.logging import get_logger
from shared.messages.leakage import FingerprintsChanged
from shared.messages.tenants import TenantConfig

log = get_logger("tenantry.leakage.registry")


class UnreadableEntry(ValueError):
    pass


def parse_entry(entry: KeyValue.Entry) -> TenantIdentity | None:
    """The tenant's identity, or None when it was deleted or purged."""
    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
        return None
    try:
        config = TenantConfig.model_validate_json(entry.value)
    except ValidationError as exc:
        raise UnreadableEntry(entry.key) from exc
    if config.tenant_id != entry.key:
        # Deletes arrive by key: an identity filed under another id could never be removed.
        raise UnreadableEntry(entry.key)
    return TenantIdentity.from_config(config)


class _Feed:
    """A self-healing background follower: `start` waits until the first full load is
    applied; a failed follow is logged and restarted (with a fresh full load) after
    `retry_s`, so what the scanner knows never silently goes stale."""

    what = "feed"

    def __init__(self, retry_s: float) -> None:
        self._retry_s = retry_s
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leakage-{self.what}")
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
                log.exception("leakage.feed_failed", feed=self.what)
            await self._cleanup()
            await asyncio.sleep(self._retry_s)

    async def _follow(self) -> None:
        raise NotImplementedError

    async def _cleanup(self) -> None:
        """Release what a follow held (after a failure, and at stop)."""


class KvTenantFeed(_Feed):
    """One long-lived watcher of the tenants bucket per service."""

    what = "tenant registry"

    def __init__(
        self, js: JetStreamContext, directory: TenantDirectory, retry_s: float = 1.0
    ) -> None:
        super().__init__(retry_s)
        self._js = js
        self._directory = directory
        self._watcher: KeyValue.KeyWatcher | None = None

    async def _cleanup(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._watcher.stop()  # type: ignore[no-untyped-call]
            self._watcher = None

    async def _follow(self) -> None:
        kv = await self._js.key_value(TENANTS_BUCKET)
        self._watcher = await kv.watchall()
        snapshot: dict[str, TenantIdentity] = {}
        loading = True
        async for entry in self._watcher:
            if entry is None:  # end of the initial values
                if loading:
                    self._directory.replace_all(snapshot.values())
                    loading = False
                    self._loaded.set()
                    log.info("leakage.registry_loaded", tenants=len(self._directory))
                continue
            try:
                parsed = parse_entry(entry)
            except UnreadableEntry:
                # Keep what we knew about the tenant rather than forgetting its names.
                log.warning("leakage.registry_unreadable", key=entry.key, revision=entry.revision)
                continue
            if loading:
                if parsed is not None:
                    snapshot[entry.key] = parsed
                else:
                    snapshot.pop(entry.key, None)
            elif parsed is not None:
                self._directory.upsert(parsed)
                log.info("leakage.tenant_updated", key=entry.key)
            else:
                self._directory.remove(entry.key)
                log.info("leakage.tenant_removed", key=entry.key)


class FingerprintFeed(_Feed):
    """Every tenant's content fingerprints, replayed from TENANTRY_FINGERPRINTS into the index.

    Each replica needs all of them, so each reads the whole subject through its own
    ordered (ephemeral, in-order, self-healing) consumer instead of sharing a durable
    one; there is nothing to ack. Start-up waits until the backlog is applied, so the
    first scan already knows every document. A failed watch clears the index and
    replays from the beginning: what is left equals what the stream holds.
    """

    what = "content fingerprints"

    def __init__(self, js: JetStreamContext, index: FingerprintIndex, retry_s: float = 1.0) -> None:
        super().__init__(retry_s)
        self._js = js
        self._index = index
        index.rebuild_on_lookup = False  # this feed rebuilds it, off the event loop

    async def _follow(self) -> None:
        self._index.clear()
        sub = await self._js.subscribe(
            subjects.ALL_FINGERPRINT_EVENTS,
            stream=subjects.FINGERPRINTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            # num_pending counts messages not yet *delivered*: messages already in our
            # buffer are not in it. Only "nothing delivered and nothing pending" means
            # empty; otherwise the message carrying num_pending == 0 marks the end.
            info = await sub.consumer_info()
            if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                await self._index.refresh_in_background()  # after clear(), if replaying
                self._mark_loaded()
            async for msg in sub.messages:
                try:
                    self._index.apply(FingerprintsChanged.model_validate_json(msg.data))
                except ValidationError:
                    log.warning("leakage.fingerprints_unreadable", subject=msg.subject)
                if msg.metadata.num_pending == 0:  # caught up: rebuild once per burst
                    await self._index.refresh_in_background()
                    self._mark_loaded()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _mark_loaded(self) -> None:
        if not self._loaded.is_set():
            self._loaded.set()
            log.info("leakage.fingerprints_loaded", fingerprints=len(self._index))
