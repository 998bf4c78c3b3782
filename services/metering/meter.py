"""The read / decide / compare-and-set loop around the ledger, over a MeteringStore.

Each call reads the tenant's month entry, lets the pure ledger decide, and writes
the new state naming the revision it read. A Conflict means another replica got
there first: re-read and decide again on fresh state, so no decision is ever made
on a stale view. Refusals and repeated settles change nothing and are answered
from the read alone, without a write.

Within one replica, calls for the same entry queue on a local lock first. That is
not what makes the limits hold (the compare-and-set is), but without it every
concurrent request in a burst would race every other one and most attempts would
be wasted conflicts; with it only the replicas contend with each other.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from services.metering import ledger
from services.metering import state as keys
from services.metering.adapters import Conflict, MeteringStore
from services.metering.ledger import Admitted, Refused, Settled, SettleKind
from services.metering.pricing import PriceTable, UnknownModel
from services.metering.state import MonthState
from shared.logging import get_logger
from shared.messages.base import ErrorCode, ErrorInfo, utcnow
from shared.messages.metering import AuthorizeRequest, SettleUsage

log = get_logger("tenantry.metering")


class Busy(Exception):
    """Every compare-and-set attempt lost to another writer; the caller may retry."""


class UnknownReservation(ValueError):
    """A reservation id metering never issued (wrong shape)."""


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


@dataclass
class Meter:
    store: MeteringStore
    prices: PriceTable
    reservation_ttl_s: int = 600
    cas_attempts: int = 32
    clock: Callable[[], datetime] = utcnow
    locks: KeyedLocks = field(default_factory=KeyedLocks)

    async def authorize(self, msg: AuthorizeRequest) -> Admitted | Refused:
        try:
            price = self.prices.price(msg.model)
        except UnknownModel as exc:
            return Refused(ErrorInfo(code=ErrorCode.UNKNOWN_MODEL, message=str(exc)), "model")
        month = keys.month_of(self.clock())
        key = keys.state_key(msg.tenant_id, month)
        reservation_id = keys.new_reservation_id(month)
        async with self.locks.hold(key):
            for attempt in range(self.cas_attempts):
                state, revision = await self._load(key)
                if state is None:
                    state = await self._new_month(msg.tenant_id, month)
                new_state, decision = ledger.authorize(
                    state,
                    reservation_id=reservation_id,
                    model=msg.model,
                    amount_nanousd=price.worst_case(msg.estimated_input_tokens, msg.max_tokens),
                    tokens=msg.estimated_input_tokens + msg.max_tokens,
                    limits=msg.limits,
                    now_ms=self._now_ms(),
                    ttl_ms=self.reservation_ttl_s * 1000,
                )
                if isinstance(decision, Refused):
                    return decision
                if await self._write(key, new_state, revision, attempt):
                    return decision
        raise Busy(key)

    async def settle(self, msg: SettleUsage) -> Settled:
        month = keys.month_of_reservation(msg.reservation_id)
        if month is None:
            raise UnknownReservation("reservation_id was not issued by metering")
        key = keys.state_key(msg.tenant_id, month)
        price = self.prices.find(msg.model)
        async with self.locks.hold(key):
            for attempt in range(self.cas_attempts):
                state, revision = await self._load(key)
                if state is None:
                    return Settled(SettleKind.UNKNOWN)
                new_state, outcome = ledger.settle(
                    state,
                    reservation_id=msg.reservation_id,
                    price=price,
                    usage=msg.usage,
                    now_ms=self._now_ms(),
                )
                if not outcome.changed:
                    return outcome
                if await self._write(key, new_state, revision, attempt):
                    return outcome
        raise Busy(key)

    def _now_ms(self) -> int:
        # Read after the local queue, so time spent waiting for the lock is not lost.
        return int(self.clock().timestamp() * 1000)

    async def _load(self, key: str) -> tuple[MonthState | None, int]:
        found = await self.store.get(key)
        if found is None:
            return None, 0
        value, revision = found
        return MonthState.model_validate_json(value), revision

    async def _new_month(self, tenant_id: str, month: str) -> MonthState:
        # Carry the per-minute windows over from last month, so the first minute of a
        # month does not start with an empty window and admit twice the rate.
        previous, _ = await self._load(keys.state_key(tenant_id, keys.previous_month(month)))
        if previous is None:
            return MonthState(month=month)
        return MonthState(month=month, budget_nanousd=previous.budget_nanousd, rate=previous.rate)

    async def _write(self, key: str, state: MonthState, revision: int, attempt: int) -> bool:
        try:
            await self.store.put(key, state.model_dump_json().encode(), revision)
        except Conflict:
            # Jittered, growing back-off so replicas that collided do not collide again.
            await asyncio.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.02)))
            log.debug("metering.cas_conflict", key=key, attempt=attempt)
            return False
        return True
