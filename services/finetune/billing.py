"""What a training job costs, with metering: a hold before it runs, settled at what was
trained. A job that runs longer than `finetune_hold_renew_s` settles what it has trained
and takes a new hold for the rest, because metering forgets a hold after its TTL and a
remote job can run for hours; a refused renewal stops the job (it then fails with the
refusal). The job record keeps the current hold, the tokens settled and the cost so far,
so a worker that takes the job over carries on from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.finetune.backends import Progress
from services.finetune.jobs import Lifecycle
from services.finetune.ports import Ports
from services.finetune.settings import FineTuneSettings
from shared.bus import ServiceCallError
from shared.finetune_store import JobStore
from shared.logging import get_logger
from shared.messages.base import new_id, utcnow
from shared.messages.finetune import FineTuneJob, JobState

log = get_logger("tenantry.finetune.billing")


def training_model(base_model: str) -> str:
    """The price-table name of training on a base model."""
    return f"training:{base_model}"


@dataclass
class Billing:
    store: JobStore
    lifecycle: Lifecycle
    ports: Ports
    settings: FineTuneSettings
    worker_id: str

    def due(self, job: FineTuneJob) -> bool:
        if job.state is not JobState.RUNNING or job.worker != self.worker_id:
            return False
        if not job.reservation_id or job.held_at is None:
            return False
        age = (utcnow() - job.held_at).total_seconds()
        return age > self.settings.finetune_hold_renew_s

    async def renew(self, job: FineTuneJob, progress: Progress) -> None:
        """Settle what was trained so far and hold the worst case of the rest: metering
        forgets a hold after its TTL, and a job can outlive that (a remote one, hours)."""
        trained = progress.tokens_trained
        cost = await self.settle_hold(job, max(0, trained - job.settled_tokens))
        remaining = max(1, job.training_tokens * job.epochs - trained)
        request_id = new_id()
        reservation, refusal = "", ""
        try:
            resolved = await self.ports.resolve(job.tenant_id, request_id)
            if resolved.config is None:
                refusal = "the tenant is gone"
            else:
                held = await self.ports.authorize(
                    job.tenant_id,
                    request_id,
                    training_model(job.base_model),
                    remaining,
                    resolved.config.limits,
                )
                reservation = held.reservation_id
                refusal = held.error.message if held.error else ""
        except ServiceCallError as exc:
            refusal = exc.info.message
        if refusal:
            log.warning("finetune.hold_refused", job_id=job.job_id, error=refusal)
            progress.refused = f"training stopped: {refusal}"
            progress.cancel.set()

        def renewed(current: FineTuneJob) -> FineTuneJob | None:
            return current.model_copy(
                update={
                    "reservation_id": reservation,
                    "held_at": utcnow(),
                    "settled_tokens": max(current.settled_tokens, trained),
                    "cost_nanousd": current.cost_nanousd + cost,
                }
            )

        await self.lifecycle.change(job.tenant_id, job.job_id, renewed, request_id)

    async def settle(self, job: FineTuneJob, tokens: int) -> int:
        """Settle the job's current hold for the tokens not yet settled; returns the job's
        whole training cost (earlier holds included)."""
        found = await self.store.job(job.tenant_id, job.job_id)
        current = found[0] if found is not None else job
        cost = await self.settle_hold(current, max(0, tokens - current.settled_tokens))
        return current.cost_nanousd + cost

    async def settle_hold(self, job: FineTuneJob, tokens: int) -> int:
        if not job.reservation_id:
            return 0
        try:
            settled = await self.ports.settle(
                job.tenant_id, new_id(), job.reservation_id, training_model(job.base_model), tokens
            )
        except ServiceCallError as exc:
            # metering down: the hold expires on its own; ops see the line and the job.
            log.warning("finetune.settle_failed", job_id=job.job_id, error=exc.info.message)
            return 0
        if not settled.ok:
            log.warning("finetune.settle_refused", job_id=job.job_id, error=settled.error)
            return 0
        return settled.cost_nanousd
