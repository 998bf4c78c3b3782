"""Which tenants were refused admission lately, so their searches wait for admission."""

from __future__ import annotations

import time


class RecentRefusals:
    """Tenants whose authorisation this gateway saw refused in the last `hold_s`.

    Searching beside the authorisation saves a round trip, but a tenant over its rate
    or budget must not buy free retrieval work by sending more requests: after a
    refusal, that tenant's searches wait for admission again for a while.
    """

    def __init__(self, hold_s: float = 60.0, max_tenants: int = 10_000) -> None:
        self._hold_s = hold_s
        self._max = max_tenants
        self._until: dict[str, float] = {}

    def may_search_early(self, tenant_id: str) -> bool:
        until = self._until.get(tenant_id)
        if until is None:
            return True
        if time.monotonic() < until:
            return False
        del self._until[tenant_id]
        return True

    def refused(self, tenant_id: str) -> None:
        self._until.pop(tenant_id, None)
        self._until[tenant_id] = time.monotonic() + self._hold_s
        if len(self._until) > self._max:
            self._until.pop(next(iter(self._until)))  # the oldest refusal
