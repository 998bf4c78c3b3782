"""leakage's feeds: the tenant registry (a JetStream KV watch keeping the
TenantDirectory current) and every tenant's content fingerprints (a JetStream replay).
"""

from __future__ import annotations

import contextlib

from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from services.leakage.content import FingerprintIndex
from services.leakage.directory import TenantDirectory, TenantIdentity
from shared import subjects
from shared.feeds import Feed, TenantConfigFeed
from shared.logging import get_logger
from shared.messages.leakage import FingerprintsChanged
from shared.messages.tenants import TenantConfig

log = get_logger("tenantry.leakage.registry")


class KvTenantFeed(TenantConfigFeed):
    """The tenants bucket, kept in the TenantDirectory as identities. An unreadable
    entry keeps what the directory knew rather than forgetting the tenant's names."""

    what = "tenant registry"

    def __init__(
        self, js: JetStreamContext, directory: TenantDirectory, retry_s: float = 1.0
    ) -> None:
        super().__init__(js, self._load, self._change, retry_s=retry_s)
        self._directory = directory

    def _load(self, configs: dict[str, TenantConfig]) -> None:
        self._directory.replace_all(TenantIdentity.from_config(c) for c in configs.values())
        log.info("leakage.registry_loaded", tenants=len(self._directory))

    def _change(self, key: str, config: TenantConfig | None) -> None:
        if config is not None:
            self._directory.upsert(TenantIdentity.from_config(config))
            log.info("leakage.tenant_updated", key=key)
        else:
            self._directory.remove(key)
            log.info("leakage.tenant_removed", key=key)


class FingerprintFeed(Feed):
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
