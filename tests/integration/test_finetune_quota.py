"""Fine-tuning quota slots on the real KV bucket: concurrent jobs and jobs per month,
held by compare-and-set so parallel creates cannot overshoot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from faststream.nats import NatsBroker

from services.finetune import jobs
from services.finetune.quotas import FineTuneQuota
from shared.finetune_store import JobStore

pytestmark = pytest.mark.integration
DEC = datetime(2026, 12, 4, tzinfo=UTC)
JAN = datetime(2027, 1, 2, tzinfo=UTC)


async def test_jobs_per_month_and_at_once_are_capped(
    client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    store = await JobStore.open(client_broker.connection.jetstream())
    tid = new_tenant_id("ftquota")
    quota = FineTuneQuota(concurrent=2, per_month=3)
    assert await jobs.take_slot(store, tid, quota, "a", DEC) is None
    assert await jobs.take_slot(store, tid, quota, "b", DEC) is None
    busy = await jobs.take_slot(store, tid, quota, "c", DEC)
    assert busy and "2 fine-tuning jobs are already in progress" in busy
    await jobs.release_slot(store, tid, "a")
    await jobs.release_slot(store, tid, "a")  # idempotent
    assert await jobs.take_slot(store, tid, quota, "c", DEC) is None
    await jobs.release_slot(store, tid, "b")
    spent = await jobs.take_slot(store, tid, quota, "d", DEC)
    assert spent and "3 fine-tuning jobs for 2026-12 are used up" in spent
    # A new month starts a new count; the job still running keeps its slot.
    assert await jobs.take_slot(store, tid, quota, "d", JAN) is None
    state, _ = await store.quota(tid)
    assert state.month == "2027-01" and state.created == 1 and state.active == ["c", "d"]


async def test_parallel_creates_never_overshoot(
    client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    store = await JobStore.open(client_broker.connection.jetstream())
    tid = new_tenant_id("ftrace")
    quota = FineTuneQuota(concurrent=3, per_month=100)
    results = await asyncio.gather(
        *(jobs.take_slot(store, tid, quota, f"j{i}", DEC) for i in range(12))
    )
    assert sum(r is None for r in results) == 3
    state, _ = await store.quota(tid)
    assert len(state.active) == 3 and state.created == 3
