"""finetune's handlers: thin wrappers over Manager, one per verb on svc.finetune.<verb>.<tid>."""

from __future__ import annotations

from dataclasses import dataclass

from services.finetune.manage import JobRefused, Manager
from services.finetune.runner import Runner
from shared.audit import AuditTrail
from shared.intake import error_reply, reply_ok
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode
from shared.messages.finetune import (
    CancelFineTune,
    CreateFineTune,
    DeleteFineTune,
    FineTuneCreated,
    FineTuneFound,
    FineTunesListed,
    ListFineTunes,
    ShowFineTune,
)
from shared.messages.lifecycle import (
    DeprovisionTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantProvisioned,
)
from shared.service import Handlers, Rpc

SERVICE = "finetune"


@dataclass(frozen=True)
class Deps:
    manager: Manager
    trail: AuditTrail
    runner: Runner  # started by bootstrap; its jobs are handed back while still connected

    async def drain(self) -> None:
        await self.runner.stop()


async def create(msg: CreateFineTune, deps: Deps) -> FineTuneCreated:
    try:
        job = await deps.manager.create(msg)
    except JobRefused as exc:
        return reply_ok(FineTuneCreated, msg, error=exc.info, job=exc.job)
    return reply_ok(FineTuneCreated, msg, job=job)


async def list_jobs(msg: ListFineTunes, deps: Deps) -> FineTunesListed:
    return reply_ok(FineTunesListed, msg, jobs=await deps.manager.list(msg.tenant_id))


async def show(msg: ShowFineTune, deps: Deps) -> FineTuneFound:
    try:
        job = await deps.manager.show(msg.tenant_id, msg.job_id)
    except JobRefused as exc:
        await _audit_unknown(deps.trail, msg, "show", exc)
        return error_reply(FineTuneFound, msg, exc.info)
    return reply_ok(FineTuneFound, msg, job=job)


async def cancel(msg: CancelFineTune, deps: Deps) -> FineTuneFound:
    try:
        job = await deps.manager.cancel(msg.tenant_id, msg.job_id, msg.request_id, msg.actor)
    except JobRefused as exc:
        await _audit_unknown(deps.trail, msg, "cancel", exc)
        return reply_ok(FineTuneFound, msg, error=exc.info, job=exc.job)
    return reply_ok(FineTuneFound, msg, job=job)


async def delete(msg: DeleteFineTune, deps: Deps) -> FineTuneFound:
    try:
        removed = await deps.manager.delete(msg.tenant_id, msg.job_id, msg.request_id, msg.actor)
    except JobRefused as exc:
        await _audit_unknown(deps.trail, msg, "delete", exc)
        return reply_ok(FineTuneFound, msg, error=exc.info, job=exc.job)
    return reply_ok(FineTuneFound, msg, removed=removed)


# Nothing to create at onboarding: a tenant's bucket appears with its first job.


async def provision(msg: ProvisionTenant, deps: Deps) -> TenantProvisioned:
    return reply_ok(TenantProvisioned, msg, created=False)


async def deprovision(msg: DeprovisionTenant, deps: Deps) -> TenantDeprovisioned:
    counts = await deps.manager.deprovision(msg.tenant_id, msg.request_id)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action="finetune.deprovision",
        resource_type="finetune",
        details=dict(counts),
    )
    return reply_ok(TenantDeprovisioned, msg, removed=sum(counts.values()))


async def _audit_unknown(
    trail: AuditTrail,
    msg: ShowFineTune | CancelFineTune | DeleteFineTune,
    verb: str,
    exc: JobRefused,
) -> None:
    """A job id the tenant does not own (another tenant's, or none at all: the same
    answer and the same row) is recorded against the asking tenant."""
    if exc.info.code is not ErrorCode.NOT_FOUND:
        return
    await trail.record_for(
        msg,
        event_type=AuditEventType.ACCESS_DENIED,
        action=f"finetune.{verb}",
        status=AuditStatus.FAILURE,
        resource_type="finetune_job",
        resource_id=msg.job_id,
        error=exc.info.message,
    )


HANDLERS = Handlers[Deps](
    SERVICE,
    rpcs=[
        Rpc("create", CreateFineTune, FineTuneCreated, create, max_workers=8),
        Rpc("list", ListFineTunes, FineTunesListed, list_jobs),
        Rpc("show", ShowFineTune, FineTuneFound, show),
        Rpc("cancel", CancelFineTune, FineTuneFound, cancel),
        Rpc("delete", DeleteFineTune, FineTuneFound, delete),
        Rpc("provision", ProvisionTenant, TenantProvisioned, provision),
        Rpc("deprovision", DeprovisionTenant, TenantDeprovisioned, deprovision),
    ],
)
