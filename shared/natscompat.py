"""A fix for a FastStream 0.7.8 / nats-py 2.16 mismatch that delays batched messages.

FastStream's batch pull loop keeps fetching until the batch is full or its timeout
ends, and stops on `nats.errors.TimeoutError`. nats-py's `PullSubscription.fetch`
raises a bare `asyncio.TimeoutError` instead when the time left is used up by its
no-wait probe. That escapes the loop, FastStream's supervisor restarts the task, and
the messages already fetched for the batch are dropped unacked, so JetStream only
redelivers them after ack_wait (30 s). Measured here at ~100 events/s: 64 of 1,500
events arrived 30 s late; with this fix none did.

The fix re-raises that bare timeout as `nats.errors.TimeoutError`, a subclass of
the builtin TimeoutError, so every other caller still catches it unchanged.
Applied by shared.service.Service.start for every service; only correct for the pinned
faststream 0.7.8 / nats-py 2.16.0 (see pyproject.toml).
"""

from __future__ import annotations

import functools
from typing import Any

import nats.errors
from nats.js.client import JetStreamContext

_MARK = "_tenantry_timeout_fix"


def patch_pull_fetch_timeouts() -> None:
    """Idempotent: wraps PullSubscription.fetch once per process."""
    pull = JetStreamContext.PullSubscription
    original = pull.fetch
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    setattr(fetch, _MARK, True)
    pull.fetch = fetch  # type: ignore[method-assign]
