"""The read / decide / compare-and-set loop around the ledger, over a MeteringStore.

Each call reads the tenant's month entry, lets the pure ledger decide, and writes
the new state naming the revision it read. A Conflict means another replica got
there first: re-read and decide again on fresh state, so no decision is ever made
on a stale view. Refusals and repeated settles change nothing and are answered
from a fresh read alone, without a write. A replica remembers the entry it last
wrote and starts its next call for that key from it instead of reading: the
compare-and-set names that revision, so a stale memory only costs a conflict.

Why compare-and-set on one KV entry per tenant-month rather than one owner per
tenant (partitioned subjects): any replica can serve any tenant, so adding, losing
or restarting a replica needs no rebalancing and no hand-over of in-memory state;
the only shared truth is the KV entry, and JetStream orders every write to it.
The cost is contention on a hot tenant (every write to its entry is serialised
across replicas); `bench/metering.py` measures it.

Within one replica, calls for the same entry queue on a local lock and are
committed in groups: whoever takes the lock decides every call queued so far on
one read of the entry and writes the result with one compare-and-set (see
`batch`). That is not what makes the limits hold (the compare-and-set is), but
without it every concurrent request in a burst would race every other one and
most attempts would be wasted conflicts; with it only the replicas contend with
each other, and a hot tenant costs one KV round trip per burst, not per call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from services.metering import ledger
from services.metering import state as keys
from services.metering.adapters import Conflict, MeteringStore
from services.metering.batch import MAX_BATCH, Decision, KeyedLocks, Pending, Step
from services.metering.ledger import Admitted, Rejected, Settled, SettleKind
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


@dataclass
class Meter:
    store: MeteringStore
    prices: PriceTable
    reservation_ttl_s: int = 600
    cas_attempts: int = 32
    clock: Callable[[], datetime] = utcnow
    tz: tzinfo = UTC  # whose calendar months are the budget periods
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    cache_entries: int = 10_000  # tenant-months whose last write this replica remembers
    _queues: dict[str, list[Pending]] = field(default_factory=dict)
    _cache: dict[str, tuple[MonthState, int]] = field(default_factory=dict)

    def current_month(self) -> str:
        return keys.month_of(self.clock(), self.tz)

    def booked_at(self, reservation_id: str) -> datetime:
        """When a settle's cost counts as incurred: now, but never after the end of the
        period its hold was taken in, because that period's entry is where it is
        charged. ClickHouse then files it in the same month as metering does."""
        now = self.clock()
        month = keys.month_of_reservation(reservation_id)
        return min(now, keys.last_instant(month, self.tz)) if month else now

    async def totals(self, tenant_id: str, month: str | None = None) -> MonthState | None:
        """The tenant's period as metering sees it now (expired holds left out); no write."""
        state, _ = await self._load(keys.state_key(tenant_id, month or self.current_month()))
        return None if state is None else ledger.release_expired(state, self._now_ms())

    async def authorize(self, msg: AuthorizeRequest) -> Admitted | Rejected:
        try:
            price = self.prices.price(msg.model)
        except UnknownModel as exc:
            return Rejected(ErrorInfo(code=ErrorCode.UNKNOWN_MODEL, message=str(exc)), "model")
        month = self.current_month()
        reservation_id = keys.new_reservation_id(month)

        def step(state: MonthState | None, now_ms: int) -> Step:
            assert state is not None  # the batch starts a month when an authorize needs one
            new_state, decision = ledger.authorize(
                state,
                reservation_id=reservation_id,
                model=msg.model,
                amount_nanousd=price.worst_case(msg.estimated_input_tokens, msg.max_tokens),
                tokens=msg.estimated_input_tokens + msg.max_tokens,
                limits=msg.limits,
                now_ms=now_ms,
                ttl_ms=self.reservation_ttl_s * 1000,
            )
            if isinstance(decision, Rejected):
                return state, decision, False  # a refusal changes nothing
            return new_state, decision, True

        result = await self._run(msg.tenant_id, month, Pending(step, creates=True))
        assert isinstance(result, Admitted | Rejected)
        return result

    async def settle(self, msg: SettleUsage) -> Settled:
        month = keys.month_of_reservation(msg.reservation_id)
        if month is None:
            raise UnknownReservation("reservation_id was not issued by metering")
        price = self.prices.find(msg.model)

        def step(state: MonthState | None, now_ms: int) -> Step:
            if state is None:
                return None, Settled(SettleKind.UNKNOWN), False
            new_state, outcome = ledger.settle(
                state,
                reservation_id=msg.reservation_id,
                price=price,
                usage=msg.usage,
                now_ms=now_ms,
            )
            return (new_state, outcome, True) if outcome.changed else (state, outcome, False)

        result = await self._run(msg.tenant_id, month, Pending(step, creates=False))
        assert isinstance(result, Settled)
        return result

    async def _run(self, tenant_id: str, month: str, pending: Pending) -> Decision:
        """Queue `pending` for the tenant-month; whoever holds the key's lock next commits
        everything queued by then (group commit), so one read and one compare-and-set
        serve a whole burst instead of one each."""
        key = keys.state_key(tenant_id, month)
        queue = self._queues.setdefault(key, [])
        queue.append(pending)
        async with self.locks.hold(key):
            if not pending.future.done():
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                if not queue:
                    self._queues.pop(key, None)
                try:
                    await self._commit(key, tenant_id, month, batch)
                except BaseException as exc:
                    # The others in the batch wait on their futures, not on us: hand
                    # them the failure (a store error, a cancellation) and fail too.
                    failure = exc if isinstance(exc, Exception) else Busy(key)
                    for p in batch:
                        if p is not pending and not p.future.done():
                            p.future.set_exception(failure)
                    raise
        return pending.future.result()

    async def _commit(self, key: str, tenant_id: str, month: str, batch: list[Pending]) -> None:
        # Start from this replica's own last write when it has one: the compare-and-set
        # below still names its revision, so if another replica wrote since, the write
        # fails and everything is decided again on a fresh read. That saves the read on
        # every call a replica makes for a tenant it served last (most of them).
        cached = self._cache.pop(key, None)
        for attempt in range(self.cas_attempts):
            state: MonthState | None
            if cached is not None:
                state, revision = cached
            else:
                state, revision = await self._load(key)
            if state is None and any(p.creates for p in batch):
                state = await self._new_month(tenant_id, month)
            # Every decision in the batch is made again on each attempt, on the state
            # just read, in arrival order; none is answered unless the write succeeds.
            now_ms = self._now_ms()
            decisions: list[Decision] = []
            changed = False
            for p in batch:
                state, decision, did_change = p.step(state, now_ms)
                decisions.append(decision)
                changed = changed or did_change
            if not changed and cached is not None:
                # A refusal or a repeat writes nothing, so no compare-and-set would
                # catch a stale cache: decide it again on a fresh read.
                cached = None
                continue
            written = None
            if changed and state is not None:
                written = await self._write(key, state, revision, attempt)
            if not changed or written is not None:
                if state is not None and written is not None:
                    self._remember(key, state, written)
                for p, decision in zip(batch, decisions, strict=True):
                    p.future.set_result(decision)
                return
            cached = None
        for p in batch:
            p.future.set_exception(Busy(key))

    def _remember(self, key: str, state: MonthState, revision: int) -> None:
        self._cache[key] = (state, revision)
        while len(self._cache) > self.cache_entries:
            self._cache.pop(next(iter(self._cache)))  # oldest first (dicts keep order)

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant's cached entries (offboarding); correctness never needs it."""
        for key in [k for k in self._cache if k.startswith(f"{tenant_id}.")]:
            del self._cache[key]

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

    async def _write(self, key: str, state: MonthState, revision: int, attempt: int) -> int | None:
        """The new revision, or None when another writer got there first."""
        try:
            return await self.store.put(key, state.model_dump_json().encode(), revision)
        except Conflict:
            # Jittered, growing back-off so replicas that collided do not collide again.
            await asyncio.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.02)))
            log.debug("metering.cas_conflict", key=key, attempt=attempt)
            return None
