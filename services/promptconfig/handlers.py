"""promptconfig's handlers: `(msg, deps)` wrappers over registry and lifecycle functions,
registered in the one table HANDLERS."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsMessage
from pydantic import ValidationError

from services.promptconfig import lifecycle, registry
from services.promptconfig.adapters import TenantStore
from services.promptconfig.lifecycle import LifecyclePorts
from shared import templates
from shared.audit import AuditTrail
from shared.intake import error_reply, reply_ok
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.lifecycle import (
    DeletionReceipt,
    OffboardTenant,
    OnboardingResult,
    OnboardTenant,
)
from shared.messages.tenants import (
    ConfigVersionFound,
    ConfigVersions,
    ConfigVersionSummary,
    DeleteTenant,
    GetConfigVersion,
    ListConfigVersions,
    PreviewPrompt,
    PromptPreviewed,
    ResolveTenant,
    RollbackConfig,
    TenantConfig,
    TenantDeleted,
    TenantResolved,
    TenantUpserted,
    UpsertTenant,
)
from shared.replies import publish_reply, refuse_reply, reply_allowed
from shared.service import Handlers, Rpc, Subscriber
from shared.tenant_directory import ListTenants, TenantsListed, TenantSummary, directory_subject

SERVICE = "promptconfig"


@dataclass(frozen=True)
class Deps:
    store: TenantStore
    trail: AuditTrail
    ports: LifecyclePorts


async def resolve(msg: ResolveTenant, deps: Deps) -> TenantResolved:
    found = await deps.store.get(msg.tenant_id)
    if found is None:
        return error_reply(TenantResolved, msg, _UNKNOWN)
    config, _ = found
    return reply_ok(
        TenantResolved, msg, config=config, system_prompt=templates.system_prompt(config)
    )


async def upsert(msg: UpsertTenant, deps: Deps) -> TenantUpserted:
    try:
        config, created, previous = await registry.save(
            deps.store, msg.tenant_id, msg.profile, msg.actor
        )
    except registry.InvalidProfile as exc:
        await deps.trail.record_for(
            msg,
            event_type=AuditEventType.CONFIGURATION_CHANGE,
            action="config.save",
            status=AuditStatus.FAILURE,
            error=str(exc),
            actor=msg.actor,
            resource_type="tenant_config",
            resource_id=msg.tenant_id,
        )
        info = ErrorInfo(code=ErrorCode.TEMPLATE_INVALID, message=str(exc))
        return error_reply(TenantUpserted, msg, info)
    await _audit_saved(
        deps, msg, config, previous, "tenant_config.create" if created else "config.update"
    )
    return reply_ok(TenantUpserted, msg, config=config, created=created)


async def delete(msg: DeleteTenant, deps: Deps) -> TenantDeleted:
    existed = await deps.store.delete(msg.tenant_id)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action="tenant_config.delete",
        actor=msg.actor,
        resource_type="tenant_config",
        resource_id=msg.tenant_id,
        details={"existed": existed},
    )
    return reply_ok(TenantDeleted, msg, existed=existed)


async def onboard(msg: OnboardTenant, deps: Deps) -> OnboardingResult:
    return await lifecycle.onboard(deps.store, deps.ports, deps.trail, msg)


async def offboard(msg: OffboardTenant, deps: Deps) -> DeletionReceipt:
    return await lifecycle.offboard(deps.store, deps.ports, deps.trail, msg)


async def versions(msg: ListConfigVersions, deps: Deps) -> ConfigVersions:
    found = await registry.versions(deps.store, msg.tenant_id)
    summaries = [
        ConfigVersionSummary(
            version=c.version,
            updated_at=c.updated_at,
            updated_by=c.updated_by,
            changed=registry.changed_fields(found[i - 1] if i else None, c),
        )
        for i, c in enumerate(found)
    ]
    return reply_ok(ConfigVersions, msg, versions=summaries)


async def version(msg: GetConfigVersion, deps: Deps) -> ConfigVersionFound:
    found = {c.version: c for c in await registry.versions(deps.store, msg.tenant_id)}
    if msg.version not in found:
        return error_reply(ConfigVersionFound, msg, _no_version(msg.version))
    return reply_ok(ConfigVersionFound, msg, config=found[msg.version])


async def rollback(msg: RollbackConfig, deps: Deps) -> TenantUpserted:
    found = {c.version: c for c in await registry.versions(deps.store, msg.tenant_id)}
    if msg.version not in found:
        return error_reply(TenantUpserted, msg, _no_version(msg.version))
    config, _, previous = await registry.save(
        deps.store, msg.tenant_id, registry.profile_of(found[msg.version]), msg.actor
    )
    await _audit_saved(deps, msg, config, previous, f"config.rollback_to_v{msg.version}")
    return reply_ok(TenantUpserted, msg, config=config, created=False)


async def preview(msg: PreviewPrompt, deps: Deps) -> PromptPreviewed:
    found = await deps.store.get(msg.tenant_id)
    if found is None:
        return error_reply(PromptPreviewed, msg, _UNKNOWN)
    try:
        text = registry.preview(found[0], msg.system_prompt_template, msg.custom_instructions)
    except registry.InvalidProfile as exc:
        info = ErrorInfo(code=ErrorCode.TEMPLATE_INVALID, message=str(exc))
        return error_reply(PromptPreviewed, msg, info)
    return reply_ok(PromptPreviewed, msg, system_prompt=text)


async def list_tenants(msg: NatsMessage, deps: Deps) -> None:
    """Ops' `tenants list`: platform-scoped (no tenant token), platform inbox only."""
    raw = msg.raw_message
    if not raw.reply:
        return
    if not reply_allowed(raw.reply, None):
        await refuse_reply(deps.trail, None, raw.reply, "promptconfig.list", raw.subject)
        return
    page = await directory_page(deps.store, raw.data)
    await publish_reply(raw, page.model_dump_json().encode())


async def directory_page(store: TenantStore, body: bytes) -> TenantsListed:
    """One page of the tenant registry, in id order."""
    try:
        req = ListTenants.model_validate_json(body)
    except ValidationError:
        info = ErrorInfo(code=ErrorCode.MALFORMED_REQUEST, message="malformed list request")
        return TenantsListed(error=info)
    ids = [tid for tid in await store.tenant_ids() if tid > req.after][: req.limit + 1]
    page = []
    for tid in ids[: req.limit]:
        found = await store.get(tid)
        if found is not None:
            config, _ = found
            page.append(
                TenantSummary(
                    tenant_id=tid,
                    name=config.name,
                    tier=config.tier.value,
                    version=config.version,
                    updated_at=config.updated_at,
                )
            )
    return TenantsListed(tenants=page, more=len(ids) > req.limit)


_UNKNOWN = ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown tenant")


def _no_version(version: int) -> ErrorInfo:
    return ErrorInfo(code=ErrorCode.NOT_FOUND, message=f"no configuration version {version}")


async def _audit_saved(
    deps: Deps,
    msg: UpsertTenant | RollbackConfig,
    config: TenantConfig,
    previous: TenantConfig | None,
    action: str,
) -> None:
    """One configuration_change event per new version: who changed what."""
    if previous is not None and previous.version == config.version:
        return  # nothing changed, no new version
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.CONFIGURATION_CHANGE,
        action=action,
        actor=msg.actor,
        resource_type="tenant_config",
        resource_id=msg.tenant_id,
        details={
            "version": config.version,
            "previous_version": previous.version if previous else None,
            "changed": ",".join(registry.changed_fields(previous, config)),
        },
    )


HANDLERS = Handlers[Deps](
    SERVICE,
    rpcs=[
        Rpc("resolve", ResolveTenant, TenantResolved, resolve),
        Rpc("upsert", UpsertTenant, TenantUpserted, upsert),
        Rpc("delete", DeleteTenant, TenantDeleted, delete),
        # One saga at a time per replica keeps the NATS users file writes short and
        # ordered; the store's compare-and-set keeps replicas from creating a tenant twice.
        Rpc("onboard", OnboardTenant, OnboardingResult, onboard, max_workers=4),
        Rpc("offboard", OffboardTenant, DeletionReceipt, offboard, max_workers=4),
        Rpc("versions", ListConfigVersions, ConfigVersions, versions),
        Rpc("version", GetConfigVersion, ConfigVersionFound, version),
        Rpc("rollback", RollbackConfig, TenantUpserted, rollback),
        Rpc("preview", PreviewPrompt, PromptPreviewed, preview),
    ],
    subscribers=[
        Subscriber(directory_subject(), list_tenants, payload=ListTenants, queue=SERVICE),
    ],
)
