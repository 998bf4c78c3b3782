"""Group commit within one replica: queued calls for a tenant-month share one write.

A call is a `Step`, a pure function from the entry's state to (new state, decision,
whether anything changed). The replica applies every step queued for the entry, in
arrival order, to one fresh read, and answers them all only once the single
compare-and-set of the result has succeeded; on a conflict they are all decided
again on the newer state. So each answer is exactly the one it would have had if
the calls had been written one by one, with a fraction of the round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.metering.ledger import Admitted, Rejected, Settled
from services.metering.state import MonthState

Decision = Admitted | Rejected | Settled
Step = tuple[MonthState | None, Decision, bool]

# Calls decided per write: bounds the work redone after a conflict.
MAX_BATCH = 128


@dataclass
class Pending:
    step: Callable[[MonthState | None, int], Step]
    creates: bool  # True: needs the entry to exist (an authorize may open a month)
    future: asyncio.Future[Decision] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
