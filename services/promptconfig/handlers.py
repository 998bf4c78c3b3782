"""promptconfig's subscribers: thin wrappers over registry functions."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsRouter

from services.promptconfig import registry
from services.promptconfig.adapters import TenantStore
from shared.audit import AuditTrail
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.tenants import (
    DeleteTenant,
    ResolveTenant,
    TenantDeleted,
    TenantResolved,
    TenantUpserted,
    UpsertTenant,
)
from shared.service import error_reply, reply_ok, rpc

SERVICE = "promptconfig"


@dataclass
class Deps:
    store: TenantStore
    trail: AuditTrail


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    @rpc(router, SERVICE, "resolve", ResolveTenant, TenantResolved, deps.trail)
    async def resolve(msg: ResolveTenant) -> TenantResolved:
        found = await deps.store.get(msg.tenant_id)
        if found is None:
            return error_reply(
                TenantResolved,
                msg.tenant_id,
                msg.request_id,
                ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown tenant"),
            )
        config, _ = found
        return reply_ok(
            TenantResolved, msg, config=config, system_prompt=registry.system_prompt(config)
        )

    @rpc(router, SERVICE, "upsert", UpsertTenant, TenantUpserted, deps.trail)
    async def upsert(msg: UpsertTenant) -> TenantUpserted:
        try:
            config, created, previous = await registry.save(
                deps.store, msg.tenant_id, msg.profile, msg.actor
            )
        except registry.InvalidProfile as exc:
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.CONFIGURATION_CHANGE,
                action="config.save",
                status=AuditStatus.FAILURE,
                error=str(exc),
                actor=msg.actor,
                resource_type="tenant_config",
                resource_id=msg.tenant_id,
            )
            return error_reply(
                TenantUpserted,
                msg.tenant_id,
                msg.request_id,
                ErrorInfo(code=ErrorCode.TEMPLATE_INVALID, message=str(exc)),
            )
        if previous is None or previous.version != config.version:
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.CONFIGURATION_CHANGE,
                action="tenant.create" if created else "config.update",
                actor=msg.actor,
                resource_type="tenant_config",
                resource_id=msg.tenant_id,
                details={
                    "version": config.version,
                    "changed": ",".join(registry.changed_fields(previous, config)),
                },
            )
        return reply_ok(TenantUpserted, msg, config=config, created=created)

    @rpc(router, SERVICE, "delete", DeleteTenant, TenantDeleted, deps.trail)
    async def delete(msg: DeleteTenant) -> TenantDeleted:
        existed = await deps.store.delete(msg.tenant_id)
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.DELETION,
            action="tenant.delete",
            actor=msg.actor,
            resource_type="tenant_config",
            resource_id=msg.tenant_id,
            details={"existed": existed},
        )
        return reply_ok(TenantDeleted, msg, existed=existed)

    return router
