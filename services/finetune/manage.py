"""What each verb does: plain functions over the stores, ports and runner. No broker here.

create: tier and quota checks, then the job exists (validating), its data is parsed,
scanned by leakage and stored in the tenant's own object store, the training cost is
reserved with metering, and the job is queued for the runner. Any refusal after the
job exists fails the job (with its event and audit row) and frees its quota slot.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from services.finetune import data, jobs
from services.finetune.backends import Backend
from services.finetune.billing import training_model
from services.finetune.jobs import Lifecycle
from services.finetune.ports import Ports, allow_model
from services.finetune.quotas import quota_for
from services.finetune.runner import (
    Runner,
    data_object,
    model_key,
    model_object,
)
from shared.audit import AuditTrail
from shared.bus import ServiceCallError
from shared.finetune_store import ArtifactStore, JobStore
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo, utcnow
from shared.messages.finetune import CreateFineTune, FineTuneJob, JobState
from shared.messages.leakage import Verdict
from shared.messages.tenants import TenantLimits
from shared.tuned_model import Example

T = TypeVar("T")


class JobRefused(Exception):
    def __init__(self, info: ErrorInfo, job: FineTuneJob | None = None) -> None:
        super().__init__(info.message)
        self.info, self.job = info, job


NOT_FOUND = ErrorInfo(code=ErrorCode.NOT_FOUND, message="no such fine-tuning job")


@dataclass
class Manager:
    store: JobStore
    artifacts: ArtifactStore
    lifecycle: Lifecycle
    runner: Runner
    ports: Ports
    trail: AuditTrail
    backends: dict[str, Backend]
    default_backend: str

    async def create(self, msg: CreateFineTune) -> FineTuneJob:
        resolved = await self.ports.resolve(msg.tenant_id, msg.request_id)
        if resolved.config is None:
            raise JobRefused(
                resolved.error or ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown tenant")
            )
        config = resolved.config
        quota = quota_for(config.tier)
        if quota is None:
            await self._denied(msg.tenant_id, msg.request_id, msg.actor, config.tier.value)
            raise JobRefused(
                ErrorInfo(
                    code=ErrorCode.FORBIDDEN,
                    message=f"fine-tuning is not part of the {config.tier.value} tier; "
                    "it needs the enterprise tier",
                )
            )
        backend_name = msg.backend or self.default_backend
        backend = self.backends.get(backend_name)
        if backend is None:
            raise JobRefused(
                ErrorInfo(
                    code=ErrorCode.MALFORMED_REQUEST,
                    message=f"unknown or unconfigured fine-tuning backend {backend_name[:20]!r}; "
                    f"available: {', '.join(sorted(self.backends))}",
                )
            )
        if not backend.supports(msg.base_model):
            raise JobRefused(
                ErrorInfo(
                    code=ErrorCode.UNKNOWN_MODEL,
                    message=f"the {backend_name} backend cannot fine-tune {msg.base_model[:100]!r}",
                )
            )
        try:
            examples = data.parse(msg.training_jsonl)
        except data.InvalidData as exc:
            raise JobRefused(
                ErrorInfo(code=ErrorCode.MALFORMED_REQUEST, message=f"training data: {exc}")
            ) from None

        job_id = jobs.new_job_id()
        now = utcnow()
        why_not = await jobs.take_slot(self.store, msg.tenant_id, quota, job_id, now)
        if why_not is not None:
            await self._denied(msg.tenant_id, msg.request_id, msg.actor, why_not, quota=True)
            raise JobRefused(ErrorInfo(code=ErrorCode.QUOTA_EXCEEDED, message=why_not))
        job = FineTuneJob(
            job_id=job_id,
            tenant_id=msg.tenant_id,
            backend=backend_name,
            base_model=msg.base_model,
            state=JobState.VALIDATING,
            epochs=msg.epochs,
            examples=len(examples),
            training_tokens=data.training_tokens(examples),
            created_at=now,
            updated_at=now,
        )
        await self.lifecycle.create(job, msg.request_id, msg.actor)
        try:
            return await self._admit(msg, job, examples, config.limits)
        except JobRefused as refused:
            failed = await self.lifecycle.change(
                msg.tenant_id, job_id, jobs.fail(refused.info.message), msg.request_id, msg.actor
            )
            await jobs.release_slot(self.store, msg.tenant_id, job_id)
            raise JobRefused(refused.info, failed) from None
        except BaseException:
            await self.lifecycle.change(
                msg.tenant_id,
                job_id,
                jobs.fail("internal error while admitting the job"),
                msg.request_id,
                msg.actor,
            )
            await jobs.release_slot(self.store, msg.tenant_id, job_id)
            raise

    async def _admit(
        self,
        msg: CreateFineTune,
        job: FineTuneJob,
        examples: list[Example],
        limits: TenantLimits,
    ) -> FineTuneJob:
        # Leakage first: nothing is stored or sent anywhere before the scan passes.
        scanned = await _checked(
            self.ports.scan(msg.tenant_id, msg.request_id, data.scan_text(examples))
        )
        if scanned.error is not None:
            raise JobRefused(scanned.error)
        if scanned.verdict is Verdict.BLOCK:
            kinds = sorted(
                {f"{f.detector}.{f.kind}" for f in scanned.findings if f.action is Verdict.BLOCK}
            )
            raise JobRefused(
                ErrorInfo(
                    code=ErrorCode.LEAKAGE_BLOCKED,
                    message="training data refused by the leakage scan: " + ", ".join(kinds)[:300],
                )
            )
        if scanned.verdict is Verdict.REDACT:
            try:
                examples = data.from_scanned(scanned.text, len(examples))
            except data.InvalidData as exc:
                raise JobRefused(
                    ErrorInfo(code=ErrorCode.LEAKAGE_BLOCKED, message=str(exc))
                ) from None
        await self.artifacts.put(msg.tenant_id, data_object(job.job_id), data.to_jsonl(examples))

        held = await _checked(
            self.ports.authorize(
                msg.tenant_id,
                msg.request_id,
                training_model(job.base_model),
                job.training_tokens * job.epochs,
                limits,
            )
        )
        if held.error is not None:
            await self.artifacts.delete(msg.tenant_id, data_object(job.job_id))
            raise JobRefused(held.error)

        def queue(current: FineTuneJob) -> FineTuneJob | None:
            if current.state is not JobState.VALIDATING:
                return None
            return self.runner.claim(current).model_copy(
                update={
                    "state": JobState.QUEUED,
                    "reservation_id": held.reservation_id,
                    "held_at": utcnow(),
                }
            )

        queued = await self.lifecycle.change(
            msg.tenant_id, job.job_id, queue, msg.request_id, msg.actor
        )
        if queued is None or queued.state is not JobState.QUEUED:
            raise JobRefused(
                ErrorInfo(code=ErrorCode.CONFLICT, message="the job changed while admitted")
            )
        self.runner.submit(queued)
        return queued

    async def list(self, tenant_id: str) -> list[FineTuneJob]:
        found = await self.store.jobs(tenant_id)
        return sorted(found, key=lambda j: j.created_at, reverse=True)

    async def show(self, tenant_id: str, job_id: str) -> FineTuneJob:
        found = await self.store.job(tenant_id, job_id)
        if found is None:
            raise JobRefused(NOT_FOUND)
        return found[0]

    async def cancel(self, tenant_id: str, job_id: str, request_id: str, actor: str) -> FineTuneJob:
        # The state the winning compare-and-set cancelled from decides who settles: a
        # queued job was never trained (settled here, with nothing), a running one is
        # settled by its worker for what it trained (here only if its worker is dead).
        cancelled_from: list[FineTuneJob] = []

        def cancel(job: FineTuneJob) -> FineTuneJob | None:
            # Called again after a lost compare-and-set: only the last call counts.
            cancelled_from[:] = [] if job.state.terminal else [job]
            if job.state.terminal:
                return None
            return job.model_copy(update={"state": JobState.CANCELLED, "worker": ""})

        job = await self.lifecycle.change(tenant_id, job_id, cancel, request_id, actor)
        if job is None:
            raise JobRefused(NOT_FOUND)
        if job.state is not JobState.CANCELLED or not cancelled_from:
            raise JobRefused(
                ErrorInfo(code=ErrorCode.CONFLICT, message=f"the job already {job.state.value}"),
                job,
            )
        before = cancelled_from[-1]
        local = self.runner.local.get(job_id)
        if before.state is JobState.RUNNING and local is not None:
            local[1].cancel.set()  # the runner charges what it trained and frees the slot
        elif before.state is not JobState.RUNNING or self.runner.orphaned(before):
            if local is not None:
                local[1].cancel.set()
            await self.runner.close_without_model(job, tokens=0)
        return job

    async def delete(self, tenant_id: str, job_id: str, request_id: str, actor: str) -> int:
        """Remove a finished job with its data and model; returns items removed."""
        job = await self.show(tenant_id, job_id)
        if not job.state.terminal:
            raise JobRefused(
                ErrorInfo(code=ErrorCode.CONFLICT, message="cancel the job before deleting it"), job
            )
        removed = await self._remove(job, request_id)
        await self.trail.record(
            tenant_id=tenant_id,
            request_id=request_id,
            event_type=AuditEventType.DELETION,
            action="finetune.delete",
            actor=actor,
            resource_type="finetune_job",
            resource_id=job_id,
            details={"items": removed, "model_id": job.model_id},
        )
        return removed

    async def _remove(self, job: FineTuneJob, request_id: str) -> int:
        removed = int(await self.artifacts.delete(job.tenant_id, data_object(job.job_id)))
        if job.model_id:
            removed += int(await self.store.delete_model(job.tenant_id, job.model_id))
            weights = model_object(model_key(job.job_id))
            removed += int(await self.artifacts.delete(job.tenant_id, weights))
            try:
                await allow_model(self.ports, job.tenant_id, job.model_id, request_id, allow=False)
            except ServiceCallError:
                pass  # offboarding: the config is being deleted anyway
        removed += int(await self.store.delete_job(job.tenant_id, job.job_id))
        return removed

    async def deprovision(self, tenant_id: str, request_id: str) -> dict[str, int]:
        """Offboarding: stop every job, then remove jobs, models and files."""
        counts = {"jobs": 0, "models": 0, "files": 0}
        for job in await self.store.jobs(tenant_id):
            if not job.state.terminal:
                local = self.runner.local.get(job.job_id)
                if local is not None:
                    local[1].lost = True  # the tenant is leaving: no settle, no slot
                    local[1].cancel.set()
                await self.lifecycle.change(
                    tenant_id, job.job_id, jobs.fail("tenant offboarded"), request_id
                )
            counts["jobs"] += int(await self.store.delete_job(tenant_id, job.job_id))
        for key in await self.store.model_keys(tenant_id):
            counts["models"] += int(await self.store.delete_key(key))
        counts["files"] = await self.artifacts.drop(tenant_id)
        await self.store.drop_quota(tenant_id)
        return counts

    async def _denied(
        self, tenant_id: str, request_id: str, actor: str, why: str, quota: bool = False
    ) -> None:
        await self.trail.record(
            tenant_id=tenant_id,
            request_id=request_id,
            event_type=AuditEventType.ACCESS_DENIED,
            action="finetune.create",
            status=AuditStatus.FAILURE,
            actor=actor,
            resource_type="finetune_job",
            error=why if quota else f"fine-tuning is not available to the {why} tier",
            details={"reason": "quota" if quota else "tier"},
        )


async def _checked(call: Awaitable[T]) -> T:
    """Await a port call; an unanswered one becomes a JobRefused with its client-safe error."""
    try:
        return await call
    except ServiceCallError as exc:
        raise JobRefused(exc.info) from None
