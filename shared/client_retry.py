"""Bounded retries with backoff for the client's retryable refusals and failures."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.client_errors import RateLimited, RequestTimeout, TenantryError, error_from_info
from shared.messages.base import Reply

R = TypeVar("R", bound=Reply)
log = logging.getLogger("tenantry.client")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter. A rate-limit refusal
    waits its `retry_after` instead, unless that is longer than `max_wait_s`."""

    max_retries: int = 2
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    max_wait_s: float = 10.0

    def delay(self, attempt: int, error: TenantryError) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based); None: give up."""
        if attempt >= self.max_retries or not error.retryable:
            return None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_wait_s else None
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter, not a secret


NO_RETRIES = RetryPolicy(max_retries=0)


async def with_retries(
    attempt: Callable[[], Awaitable[R]], policy: RetryPolicy, *, idempotent: bool
) -> R:
    """Run `attempt` until it gives a reply that is not a retryable refusal, or the
    policy gives up: then the last reply is returned (or the last transport error
    raised). A timeout is retried only when the call is idempotent: the first attempt
    may still be running and would be done twice."""
    tries = 0
    while True:
        try:
            reply = await attempt()
        except TenantryError as exc:
            wait = None
            if idempotent or not isinstance(exc, RequestTimeout):
                wait = policy.delay(tries, exc)
            if wait is None:
                raise
            reason = f"{exc.code}: {exc.message}"
        else:
            if reply.error is None or not reply.error.retryable:
                return reply
            wait = policy.delay(tries, error_from_info(reply.error))
            if wait is None:
                return reply
            reason = f"{reply.error.code}: {reply.error.message}"
        log.debug("retrying in %.2fs after %s", wait, reason)
        tries += 1
        await asyncio.sleep(wait)
