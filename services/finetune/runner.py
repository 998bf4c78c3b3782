"""The worker: trains queued jobs, keeps them alive in KV, and takes over orphans.

A job is owned by the worker named in its KV entry, which refreshes `heartbeat_at`
every `finetune_heartbeat_s`. The sweeper (every replica runs one) takes over any
queued or running job whose heartbeat is older than `finetune_stale_after_s`: a replica
that was killed mid-job leaves exactly that, so its jobs are resumed (training restarts
from the stored data: offline training takes seconds) by whichever replica claims
them first, by compare-and-set. After `finetune_max_attempts` starts a job is failed
for good, so no job stays "running" forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from services.finetune import data, jobs
from services.finetune.backends import Backend, Progress, Trained, TrainingFailed
from services.finetune.billing import Billing
from services.finetune.jobs import Lifecycle
from services.finetune.ports import Ports, allow_model
from services.finetune.settings import FineTuneSettings
from shared.finetune_store import ArtifactStore, JobStore
from shared.logging import get_logger
from shared.messages.base import new_id, utcnow
from shared.messages.finetune import FineTuneJob, FineTuneModelInfo, JobState
from shared.tuned_model import Cancelled

log = get_logger("tenantry.finetune.runner")


def data_object(job_id: str) -> str:
    return f"data/{job_id}.jsonl"


def model_key(job_id: str) -> str:
    """A job's model is registered (and stored) under the job's own hex: one model per
    job, found again from the job alone. Offline model ids end with it too."""
    return job_id.removeprefix("ftjob-")


def model_object(suffix: str) -> str:
    return f"models/{suffix}.npz"


@dataclass
class Runner:
    lifecycle: Lifecycle
    store: JobStore
    artifacts: ArtifactStore
    backends: dict[str, Backend]
    ports: Ports
    settings: FineTuneSettings
    worker_id: str = field(default_factory=lambda: "w-" + new_id()[:12])
    local: dict[str, tuple[str, Progress]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None
    _gone_before: set[tuple[str, str]] = field(default_factory=set)

    @property
    def billing(self) -> Billing:
        return Billing(self.store, self.lifecycle, self.ports, self.settings, self.worker_id)

    # -- starting and stopping ------------------------------------------------------

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.settings.finetune_parallel)
        await self.sweep()  # jobs orphaned by a previous run of this replica, at once
        self._loops = [
            asyncio.create_task(self._every(self.settings.finetune_heartbeat_s, self.heartbeat)),
            asyncio.create_task(self._every(self.settings.finetune_heartbeat_s, self.sweep)),
        ]

    async def stop(self) -> None:
        """Hand the jobs back: another replica (or this one restarted) resumes them at once."""
        for loop in self._loops:
            loop.cancel()
        for job_id, (tenant_id, progress) in list(self.local.items()):
            progress.lost = True
            progress.cancel.set()
            await self.lifecycle.change(tenant_id, job_id, self._release_claim, new_id())
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)

    def _release_claim(self, job: FineTuneJob) -> FineTuneJob | None:
        if job.state.terminal or job.worker != self.worker_id:
            return None
        return job.model_copy(update={"worker": "", "heartbeat_at": None})

    async def _every(self, seconds: float, step: object) -> None:
        assert callable(step)
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:
                # A NATS hiccup must not end the loop: the next round tries again.
                log.exception("finetune.loop_failed")

    # -- claiming -------------------------------------------------------------------

    def claim(self, job: FineTuneJob) -> FineTuneJob:
        """The job as this worker owns it (used by create: no one else knows it yet)."""
        return job.model_copy(update={"worker": self.worker_id, "heartbeat_at": utcnow()})

    def submit(self, job: FineTuneJob) -> None:
        progress = Progress()
        self.local[job.job_id] = (job.tenant_id, progress)
        task = asyncio.create_task(self._run(job.tenant_id, job.job_id, progress))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def orphaned(self, job: FineTuneJob) -> bool:
        """Queued or running, not here, and its worker silent for too long."""
        if job.state not in (JobState.QUEUED, JobState.RUNNING):
            return False
        if job.job_id in self.local:
            return False
        limit = timedelta(seconds=self.settings.finetune_stale_after_s)
        return job.heartbeat_at is None or utcnow() - job.heartbeat_at > limit

    async def sweep(self) -> None:
        active, gone = await self.store.active_jobs()
        # A slot is taken a moment before its job is written: only a slot still without
        # a job at the next sweep is lost (its creator died in between), and freed.
        for tenant_id, job_id in set(gone) & self._gone_before:
            await jobs.release_slot(self.store, tenant_id, job_id)
        self._gone_before = set(gone)
        for job in active:
            if job.state.terminal:
                # Ended, its slot not yet freed (its worker is about to, or died first).
                # Only the slot: settling is the ending worker's (an unsettled hold lapses).
                await jobs.release_slot(self.store, job.tenant_id, job.job_id)
                continue
            if self._admission_lost(job):
                # The replica admitting it died mid-create: nothing was trained or stored
                # for good; fail it so its slot and hold are freed.
                failed = await self.lifecycle.change(
                    job.tenant_id, job.job_id, self._fail_if_unadmitted, new_id()
                )
                if failed is not None and failed.state is JobState.FAILED:
                    await self.close_without_model(failed, tokens=0)
                continue
            if not self.orphaned(job):
                continue
            if job.attempts >= self.settings.finetune_max_attempts:
                error = f"training stopped {job.attempts} times without finishing (worker lost)"
                failed = await self.lifecycle.change(
                    job.tenant_id, job.job_id, self._fail_if_stale(error), new_id()
                )
                if failed is not None and failed.state is JobState.FAILED:
                    await self.close_without_model(failed, tokens=0)
                continue

            def take(current: FineTuneJob) -> FineTuneJob | None:
                return self.claim(current) if self.orphaned(current) else None

            claimed = await self.lifecycle.change(job.tenant_id, job.job_id, take, new_id())
            if claimed is not None and claimed.worker == self.worker_id:
                log.info("finetune.resume", job_id=job.job_id, attempts=claimed.attempts)
                self.submit(claimed)

    def _admission_lost(self, job: FineTuneJob) -> bool:
        if job.state is not JobState.VALIDATING:
            return False
        # Admission waits on leakage and metering (each up to a few rpc timeouts).
        limit = max(self.settings.finetune_stale_after_s, 10 * self.settings.rpc_timeout_s)
        return (utcnow() - job.updated_at).total_seconds() > limit

    def _fail_if_unadmitted(self, job: FineTuneJob) -> FineTuneJob | None:
        if not self._admission_lost(job):
            return None
        return jobs.fail("admission was interrupted (the service stopped); submit it again")(job)

    def _fail_if_stale(self, error: str) -> jobs.Mutation:
        def mutate(job: FineTuneJob) -> FineTuneJob | None:
            return jobs.fail(error)(job) if self.orphaned(job) else None

        return mutate

    async def heartbeat(self) -> None:
        for job_id, (tenant_id, progress) in list(self.local.items()):

            def beat(job: FineTuneJob, progress: Progress = progress) -> FineTuneJob | None:
                if job.state.terminal or job.worker != self.worker_id:
                    # Cancelled, or taken over by another worker after we went quiet.
                    progress.lost = not job.state.terminal
                    progress.cancel.set()
                    return None
                metrics = dict(job.metrics)
                if progress.loss is not None:
                    metrics["train_loss"] = round(progress.loss, 4)
                return job.model_copy(
                    update={
                        "heartbeat_at": utcnow(),
                        "progress": round(progress.done, 4),
                        "metrics": metrics,
                        "provider_job_id": progress.provider_job_id or job.provider_job_id,
                    }
                )

            beaten = await self.lifecycle.change(tenant_id, job_id, beat, new_id())
            if beaten is not None and self.billing.due(beaten):
                await self.billing.renew(beaten, progress)

    # -- running one job --------------------------------------------------------------

    async def _run(self, tenant_id: str, job_id: str, progress: Progress) -> None:
        assert self._slots is not None
        try:
            async with self._slots:
                await self._train(tenant_id, job_id, progress)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("finetune.run_failed", job_id=job_id)
            failed = await self.lifecycle.change(
                tenant_id, job_id, jobs.fail("internal error while training"), new_id()
            )
            if failed is not None and failed.state is JobState.FAILED:
                await self.close_without_model(failed, tokens=progress.tokens_trained)
        finally:
            self.local.pop(job_id, None)

    def _start_running(self, job: FineTuneJob) -> FineTuneJob | None:
        if job.state.terminal or job.worker != self.worker_id:
            return None
        return job.model_copy(
            update={
                "state": JobState.RUNNING,
                "progress": 0.0,
                "attempts": job.attempts + 1,
                "heartbeat_at": utcnow(),
            }
        )

    async def _train(self, tenant_id: str, job_id: str, progress: Progress) -> None:
        request_id = new_id()
        job = await self.lifecycle.change(tenant_id, job_id, self._start_running, request_id)
        if job is None or job.state is not JobState.RUNNING or job.worker != self.worker_id:
            return
        raw = await self.artifacts.get(tenant_id, data_object(job_id))
        if raw is None:
            failed = await self.lifecycle.change(
                tenant_id, job_id, jobs.fail("the job's training data is gone"), request_id
            )
            if failed is not None:
                await self.close_without_model(failed, tokens=0)
            return
        examples = data.parse(raw.decode(), max_examples=len(raw))
        backend = self.backends.get(job.backend)
        if backend is None:
            error = f"the {job.backend} backend is not configured on this replica"
            failed = await self.lifecycle.change(tenant_id, job_id, jobs.fail(error), request_id)
            if failed is not None:
                await self.close_without_model(failed, tokens=0)
            return
        try:
            trained = await backend.train(job, examples, progress)
        except Cancelled:
            if progress.refused:
                failed = await self.lifecycle.change(
                    tenant_id, job_id, jobs.fail(progress.refused), request_id
                )
                if failed is not None:
                    await self.close_without_model(failed, tokens=progress.tokens_trained)
                return
            if not progress.lost:
                # Cancelled by its owner: every token trained so far is charged.
                current = await self.store.job(tenant_id, job_id)
                if current is not None:
                    await self.close_without_model(current[0], tokens=progress.tokens_trained)
            return
        except TrainingFailed as exc:
            failed = await self.lifecycle.change(tenant_id, job_id, jobs.fail(str(exc)), request_id)
            if failed is not None:
                await self.close_without_model(failed, tokens=progress.tokens_trained)
            return
        await self._succeed(job, trained, request_id)

    async def _succeed(self, job: FineTuneJob, trained: Trained, request_id: str) -> None:
        suffix = model_key(job.job_id)
        model_id = trained.remote_model or f"ft:{job.base_model}:{suffix}"
        if trained.weights:
            await self.artifacts.put(job.tenant_id, model_object(suffix), trained.weights)
        info = FineTuneModelInfo(
            model_id=model_id,
            job_id=job.job_id,
            backend=job.backend,
            object_name=model_object(suffix) if trained.weights else "",
            created_at=utcnow(),
        )
        cost = await self.billing.settle(job, trained.tokens_trained)

        def finish(current: FineTuneJob) -> FineTuneJob | None:
            if current.state is not JobState.RUNNING or current.worker != self.worker_id:
                return None
            return current.model_copy(
                update={
                    "state": JobState.SUCCEEDED,
                    "progress": 1.0,
                    "model_id": model_id,
                    "metrics": {**current.metrics, **trained.metrics},
                    "cost_nanousd": cost,
                    "worker": "",
                }
            )

        # Registered before the job says succeeded, so a client that sees the event can
        # use the model at once; removed again if the job was cancelled meanwhile.
        await self.store.save_model(job.tenant_id, info)
        done = await self.lifecycle.change(job.tenant_id, job.job_id, finish, request_id)
        if done is None or done.state is not JobState.SUCCEEDED or done.model_id != model_id:
            await self.store.delete_model(job.tenant_id, model_id)
            await self.artifacts.delete(job.tenant_id, model_object(suffix))
        else:
            await allow_model(self.ports, job.tenant_id, model_id, request_id)
        await jobs.release_slot(self.store, job.tenant_id, job.job_id)

    async def close_without_model(self, job: FineTuneJob, tokens: int) -> None:
        """A job that ended without a model: charge what was trained, free its slot."""
        cost = await self.billing.settle(job, tokens)
        if cost:

            def record(current: FineTuneJob) -> FineTuneJob | None:
                if current.cost_nanousd == cost:
                    return None
                return current.model_copy(update={"cost_nanousd": cost, "reservation_id": ""})

            await self.lifecycle.change(job.tenant_id, job.job_id, record, new_id())
        await jobs.release_slot(self.store, job.tenant_id, job.job_id)
