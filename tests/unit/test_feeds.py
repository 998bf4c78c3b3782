"""The tenant config feed over a scripted watcher: snapshot, marker, live changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from nats.js.client import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.promptconfig.tiers import default_profile
from shared.feeds import TenantConfigFeed
from shared.messages.tenants import TenantConfig, Tier

pytestmark = pytest.mark.unit


def put(key: str, tid: str | None = None, value: bytes | None = None) -> KeyValue.Entry:
    if value is None:
        profile = default_profile(f"Tenant {tid or key}", Tier.FREE)
        config = TenantConfig(tenant_id=tid or key, version=1, **profile.model_dump())
        value = config.model_dump_json().encode()
    return KeyValue.Entry("b", key, value, 1, 0, None, None)


def removed(key: str, operation: str) -> KeyValue.Entry:
    return KeyValue.Entry("b", key, b"", 2, 0, None, operation)


class Watcher:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[KeyValue.Entry | None] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[KeyValue.Entry | None]:
        return self

    async def __anext__(self) -> KeyValue.Entry | None:
        return await self.queue.get()

    async def stop(self) -> None:
        pass


class FakeJs:
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    async def key_value(self, bucket: str) -> FakeJs:
        return self

    async def watchall(self) -> Watcher:
        return self.watcher


class Seen:
    def __init__(self) -> None:
        self.loads: list[set[str]] = []
        self.changes: list[tuple[str, bool]] = []

    def replace_all(self, configs: dict[str, TenantConfig]) -> None:
        self.loads.append(set(configs))

    def apply(self, key: str, config: TenantConfig | None) -> None:
        self.changes.append((key, config is not None))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_snapshot_then_live_changes() -> None:
    watcher, seen = Watcher(), Seen()
    for entry in (
        put("a"),
        put("b"),
        removed("b", KV_DEL),  # gone again before the marker
        put("wrong", tid="a"),  # filed under another key: skipped
        put("junk", value=b"{not json"),
        None,
    ):
        watcher.queue.put_nowait(entry)
    js = cast(JetStreamContext, FakeJs(watcher))
    feed = TenantConfigFeed(js, seen.replace_all, seen.apply)
    await feed.start(timeout=1)
    try:
        assert seen.loads == [{"a"}]
        for entry in (put("c"), removed("a", KV_PURGE), put("junk", value=b"{}")):
            watcher.queue.put_nowait(entry)
        await settle()
        assert seen.changes == [("c", True), ("a", False)]  # the unreadable one is kept
    finally:
        await feed.stop()
    assert seen.loads == [{"a"}]


async def test_a_cache_forgets_what_it_cannot_vouch_for() -> None:
    watcher, seen = Watcher(), Seen()
    watcher.queue.put_nowait(None)  # an empty bucket still gets the marker
    js = cast(Any, FakeJs(watcher))
    feed = TenantConfigFeed(js, seen.replace_all, seen.apply, keep_stale=False)
    await feed.start(timeout=1)
    watcher.queue.put_nowait(put("a", value=b"{}"))
    await settle()
    assert seen.changes == [("a", False)]
    await feed.stop()
    assert seen.loads == [set(), set()]  # loaded empty, then emptied at stop
