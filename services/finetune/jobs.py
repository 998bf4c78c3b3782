"""Job state changes and quota slots, each a compare-and-set on the job's KV entry.

Every state change publishes a FineTuneChanged event (evt.<tid>.finetune) and records
an audit row; progress updates publish an event only. Because each change is a
compare-and-set, two replicas can never both move a job (e.g. one cancelling while the
other finishes it): the loser re-reads and its change function sees the new state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from services.finetune.quotas import FineTuneQuota
from shared import subjects
from shared.audit import AuditTrail
from shared.finetune_store import Conflict, JobStore
from shared.logging import get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import Envelope, new_id, utcnow
from shared.messages.finetune import FineTuneChanged, FineTuneJob, JobState

CAS_ATTEMPTS = 20
log = get_logger("tenantry.finetune.jobs")

Mutation = Callable[[FineTuneJob], FineTuneJob | None]
Publish = Callable[[Envelope, str], Awaitable[None]]


def new_job_id() -> str:
    return "ftjob-" + new_id()[:16]


def month_of(when: datetime) -> str:
    return when.strftime("%Y-%m")


@dataclass
class Lifecycle:
    store: JobStore
    trail: AuditTrail
    publish: Publish
    service: str = "finetune"

    async def create(self, job: FineTuneJob, request_id: str, actor: str) -> FineTuneJob:
        await self.store.save_job(job, 0)
        await self._announce(None, job, request_id, actor)
        return job

    async def change(
        self, tenant_id: str, job_id: str, mutate: Mutation, request_id: str, actor: str = ""
    ) -> FineTuneJob | None:
        """Apply `mutate` to the stored job (None from it: leave the job as it is).
        Returns the job as stored afterwards, or None when there is no such job."""
        for _ in range(CAS_ATTEMPTS):
            found = await self.store.job(tenant_id, job_id)
            if found is None:
                return None
            current, revision = found
            changed = mutate(current)
            if changed is None:
                return current
            changed = changed.model_copy(update={"updated_at": utcnow()})
            try:
                await self.store.save_job(changed, revision)
            except Conflict:
                continue
            await self._announce(current, changed, request_id, actor)
            return changed
        raise Conflict(job_id)

    async def _announce(
        self, before: FineTuneJob | None, after: FineTuneJob, request_id: str, actor: str
    ) -> None:
        moved = before is None or before.state is not after.state
        if not moved and before is not None and before.progress == after.progress:
            return  # a heartbeat: nothing to tell anyone
        await self.publish(
            FineTuneChanged(
                tenant_id=after.tenant_id,
                request_id=request_id,
                job_id=after.job_id,
                state=after.state,
                progress=after.progress,
                model_id=after.model_id,
                error=after.error,
            ),
            subjects.finetune_event(after.tenant_id),
        )
        if not moved:
            return
        failed = after.state is JobState.FAILED
        await self.trail.record(
            tenant_id=after.tenant_id,
            request_id=request_id,
            event_type=AuditEventType.ERROR if failed else AuditEventType.API_CALL,
            action=f"finetune.{after.state.value}",
            status=AuditStatus.FAILURE if failed else AuditStatus.SUCCESS,
            actor=actor or self.service,
            resource_type="finetune_job",
            resource_id=after.job_id,
            error=after.error or None,
            details={
                "from": before.state.value if before else "",
                "to": after.state.value,
                "backend": after.backend,
                "base_model": after.base_model,
                "examples": after.examples,
                "model_id": after.model_id,
                "attempts": after.attempts,
            },
        )


async def take_slot(
    store: JobStore, tenant_id: str, quota: FineTuneQuota, job_id: str, now: datetime
) -> str | None:
    """Count the job against the tenant's quota; returns why not when it does not fit."""
    month = month_of(now)
    for _ in range(CAS_ATTEMPTS):
        state, revision = await store.quota(tenant_id)
        created = state.created if state.month == month else 0
        if len(state.active) >= quota.concurrent:
            return f"{quota.concurrent} fine-tuning jobs are already in progress (tier limit)"
        if created >= quota.per_month:
            return f"the tier's {quota.per_month} fine-tuning jobs for {month} are used up"
        updated = state.model_copy(
            update={"month": month, "created": created + 1, "active": [*state.active, job_id]}
        )
        try:
            await store.save_quota(tenant_id, updated, revision)
        except Conflict:
            continue
        return None
    raise Conflict(tenant_id)


async def release_slot(store: JobStore, tenant_id: str, job_id: str) -> None:
    """The job no longer counts as in progress (idempotent)."""
    for _ in range(CAS_ATTEMPTS):
        state, revision = await store.quota(tenant_id)
        if job_id not in state.active:
            return
        updated = state.model_copy(update={"active": [j for j in state.active if j != job_id]})
        try:
            await store.save_quota(tenant_id, updated, revision)
        except Conflict:
            continue
        return
    log.warning("finetune.release_slot_busy", job_id=job_id)


def fail(error: str) -> Mutation:
    def mutate(job: FineTuneJob) -> FineTuneJob | None:
        if job.state.terminal:
            return None
        return job.model_copy(update={"state": JobState.FAILED, "error": error, "worker": ""})

    return mutate
