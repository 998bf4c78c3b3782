"""finetune's subscribers: thin wrappers over Manager, one per verb on svc.finetune.<verb>.<tid>."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsRouter

from services.finetune.manage import JobRefused, Manager
from shared.audit import AuditTrail
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
from shared.service import error_reply, reply_ok, rpc

SERVICE = "finetune"


@dataclass
class Deps:
    manager: Manager
    trail: AuditTrail


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    @rpc(router, SERVICE, "create", CreateFineTune, FineTuneCreated, deps.trail, max_workers=8)
    async def create(msg: CreateFineTune) -> FineTuneCreated:
        try:
            job = await deps.manager.create(msg)
        except JobRefused as exc:
            return FineTuneCreated(
                tenant_id=msg.tenant_id, request_id=msg.request_id, error=exc.info, job=exc.job
            )
        return reply_ok(FineTuneCreated, msg, job=job)

    @rpc(router, SERVICE, "list", ListFineTunes, FineTunesListed, deps.trail)
    async def list_jobs(msg: ListFineTunes) -> FineTunesListed:
        return reply_ok(FineTunesListed, msg, jobs=await deps.manager.list(msg.tenant_id))

    @rpc(router, SERVICE, "show", ShowFineTune, FineTuneFound, deps.trail)
    async def show(msg: ShowFineTune) -> FineTuneFound:
        try:
            job = await deps.manager.show(msg.tenant_id, msg.job_id)
        except JobRefused as exc:
            await _audit_unknown(deps.trail, msg, "show", exc)
            return error_reply(FineTuneFound, msg.tenant_id, msg.request_id, exc.info)
        return reply_ok(FineTuneFound, msg, job=job)

    @rpc(router, SERVICE, "cancel", CancelFineTune, FineTuneFound, deps.trail)
    async def cancel(msg: CancelFineTune) -> FineTuneFound:
        try:
            job = await deps.manager.cancel(msg.tenant_id, msg.job_id, msg.request_id, msg.actor)
        except JobRefused as exc:
            await _audit_unknown(deps.trail, msg, "cancel", exc)
            return FineTuneFound(
                tenant_id=msg.tenant_id, request_id=msg.request_id, error=exc.info, job=exc.job
            )
        return reply_ok(FineTuneFound, msg, job=job)

    @rpc(router, SERVICE, "delete", DeleteFineTune, FineTuneFound, deps.trail)
    async def delete(msg: DeleteFineTune) -> FineTuneFound:
        try:
            removed = await deps.manager.delete(
                msg.tenant_id, msg.job_id, msg.request_id, msg.actor
            )
        except JobRefused as exc:
            await _audit_unknown(deps.trail, msg, "delete", exc)
            return FineTuneFound(
                tenant_id=msg.tenant_id, request_id=msg.request_id, error=exc.info, job=exc.job
            )
        return reply_ok(FineTuneFound, msg, removed=removed)

    # Nothing to create at onboarding: a tenant's bucket appears with its first job.
    @rpc(router, SERVICE, "provision", ProvisionTenant, TenantProvisioned, deps.trail)
    async def provision(msg: ProvisionTenant) -> TenantProvisioned:
        return reply_ok(TenantProvisioned, msg, created=False)

    @rpc(router, SERVICE, "deprovision", DeprovisionTenant, TenantDeprovisioned, deps.trail)
    async def deprovision(msg: DeprovisionTenant) -> TenantDeprovisioned:
        counts = await deps.manager.deprovision(msg.tenant_id, msg.request_id)
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.DELETION,
            action="finetune.deprovision",
            resource_type="finetune",
            details=dict(counts),
        )
        return reply_ok(TenantDeprovisioned, msg, removed=sum(counts.values()))

    return router


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
    await trail.record(
        tenant_id=msg.tenant_id,
        request_id=msg.request_id,
        event_type=AuditEventType.ACCESS_DENIED,
        action=f"finetune.{verb}",
        status=AuditStatus.FAILURE,
        resource_type="finetune_job",
        resource_id=msg.job_id,
        error=exc.info.message,
    )
