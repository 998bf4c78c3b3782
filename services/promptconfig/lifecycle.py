"""Onboarding and offboarding: a saga over every service that holds tenant state.

Onboarding runs its steps in order (config, retrieval collection, metering state, NATS
credentials, audit, TenantOnboarded event). If any step fails, every completed step is
undone in reverse, each undo idempotent and retried, and the failure is audited: no
half-made tenant remains. Running the same onboarding twice creates nothing new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.promptconfig import registry
from services.promptconfig.adapters import TenantStore
from services.promptconfig.tiers import default_profile
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import ServiceCallError
from shared.logging import get_logger
from shared.messages.access import (
    CredentialsIssued,
    CredentialsRevoked,
    IssueCredentials,
    RevokeCredentials,
)
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import Envelope, ErrorCode, ErrorInfo
from shared.messages.lifecycle import (
    DeletionReceipt,
    DeprovisionTenant,
    OffboardTenant,
    OnboardingResult,
    OnboardTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantOffboarded,
    TenantOnboarded,
    TenantProvisioned,
)
from shared.messages.tenants import TenantConfig

# Services that keep per-tenant state, and what their deprovision count means.
STATEFUL = {"retrieval": "chunks", "metering": "metering_entries"}
# State that only appears after onboarding (nothing to provision), removed at offboarding:
# fine-tuning jobs, the tenant's training files and its fine-tuned models.
OFFBOARD_ONLY = {"finetune": "finetune_items"}
UNDO_ATTEMPTS = 3

log = get_logger("tenantry.promptconfig.lifecycle")


class LifecyclePorts(Protocol):
    async def provision(self, service: str, msg: ProvisionTenant) -> TenantProvisioned: ...
    async def deprovision(self, service: str, msg: DeprovisionTenant) -> TenantDeprovisioned: ...
    async def issue(self, msg: IssueCredentials) -> CredentialsIssued: ...
    async def revoke(self, msg: RevokeCredentials) -> CredentialsRevoked: ...
    async def publish(self, event: Envelope, subject: str) -> None: ...


class StepFailed(Exception):
    def __init__(self, step: str, info: ErrorInfo) -> None:
        super().__init__(f"{step}: {info.message}")
        self.step, self.info = step, info


@dataclass
class Saga:
    done: list[str] = field(default_factory=list)
    undo: list[tuple[str, Callable[[], Awaitable[object]]]] = field(default_factory=list)

    def completed(self, step: str, undo: Callable[[], Awaitable[object]] | None = None) -> None:
        self.done.append(step)
        if undo is not None:
            self.undo.append((step, undo))

    async def compensate(self) -> list[str]:
        """Undo in reverse; returns the steps that could not be undone."""
        stuck = []
        for step, undo in reversed(self.undo):
            for attempt in range(1, UNDO_ATTEMPTS + 1):
                try:
                    await undo()
                    break
                except Exception:
                    log.exception("onboarding.undo_failed", step=step, attempt=attempt)
                    await asyncio.sleep(0.2 * attempt)
            else:
                stuck.append(step)
        return stuck


def _same_tenant(config: TenantConfig, msg: OnboardTenant) -> bool:
    return (config.name, config.tier, config.admin_email) == (msg.name, msg.tier, msg.admin_email)


async def onboard(
    store: TenantStore, ports: LifecyclePorts, trail: AuditTrail, msg: OnboardTenant
) -> OnboardingResult:
    ids = {"tenant_id": msg.tenant_id, "request_id": msg.request_id}
    found = await store.get(msg.tenant_id)
    if found is not None:
        if _same_tenant(found[0], msg):
            return OnboardingResult(**ids, created=False, config=found[0], steps=[])
        info = ErrorInfo(code=ErrorCode.CONFLICT, message="tenant id already in use")
        return OnboardingResult(**ids, error=info)

    saga = Saga()
    try:
        profile = default_profile(msg.name, msg.tier, msg.admin_email, msg.custom_instructions)
        profile = profile.model_copy(update={"aliases": msg.aliases, "domains": msg.domains})
        config, _, _ = await registry.save(store, msg.tenant_id, profile, msg.actor)
        saga.completed("config", lambda: store.delete(msg.tenant_id))

        for service in STATEFUL:
            provisioned = await ports.provision(
                service, ProvisionTenant(**ids, limits=config.limits)
            )
            _check(service, provisioned.error)
            saga.completed(service, _deprovision(ports, service, ids))

        # Rotate: a brand-new tenant must leave with a password, even if stale
        # credentials survived an earlier crashed attempt.
        creds = await ports.issue(IssueCredentials(**ids, rotate=True, actor=msg.actor))
        _check("credentials", creds.error)
        saga.completed("credentials", lambda: ports.revoke(RevokeCredentials(**ids)))

        await trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.CONFIGURATION_CHANGE,
            action="lifecycle.onboard",
            actor=msg.actor,
            resource_type="tenant",
            resource_id=msg.tenant_id,
            details={"tier": msg.tier.value, "steps": ",".join(saga.done)},
        )
        saga.completed("audit")
        await ports.publish(
            TenantOnboarded(**ids, name=msg.name, tier=msg.tier, admin_email=msg.admin_email),
            subjects.lifecycle_event(msg.tenant_id),
        )
        saga.completed("event")
    except Exception as exc:
        step, info = _failure(exc, saga)
        stuck = await saga.compensate()
        await trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.CONFIGURATION_CHANGE,
            action="lifecycle.onboard",
            status=AuditStatus.FAILURE,
            actor=msg.actor,
            resource_type="tenant",
            resource_id=msg.tenant_id,
            error=f"failed at {step}: {info.message}",
            details={
                "undone": ",".join(s for s, _ in saga.undo if s not in stuck),
                "not_undone": ",".join(stuck),
            },
        )
        suffix = (
            f"; could not undo {', '.join(stuck)}" if stuck else "; every completed step was undone"
        )
        return OnboardingResult(
            **ids,
            error=ErrorInfo(
                code=info.code,
                message=f"onboarding failed at step {step}: {info.message}{suffix}",
                retryable=info.retryable,
            ),
        )
    return OnboardingResult(
        **ids,
        created=True,
        config=config,
        user=creds.user,
        password=creds.password,
        inbox_prefix=creds.inbox_prefix,
        steps=saga.done,
    )


def _deprovision(
    ports: LifecyclePorts, service: str, ids: dict[str, str]
) -> Callable[[], Awaitable[object]]:
    async def undo() -> None:
        reply = await ports.deprovision(service, DeprovisionTenant(**ids))
        _check(f"undo {service}", reply.error)

    return undo


def _check(step: str, error: ErrorInfo | None) -> None:
    if error is not None:
        raise StepFailed(step, error)


def _failure(exc: Exception, saga: Saga) -> tuple[str, ErrorInfo]:
    if isinstance(exc, StepFailed):
        return exc.step, exc.info
    step = _next_step(saga)
    if isinstance(exc, ServiceCallError):
        return step, exc.info
    log.exception("onboarding.failed", step=step)
    return step, ErrorInfo(code=ErrorCode.INTERNAL, message="internal error", retryable=True)


def _next_step(saga: Saga) -> str:
    order = ["config", *STATEFUL, "credentials", "audit", "event"]
    return next((s for s in order if s not in saga.done), "event")


async def offboard(
    store: TenantStore, ports: LifecyclePorts, trail: AuditTrail, msg: OffboardTenant
) -> DeletionReceipt:
    """Credentials first (locks the tenant out at once), then its data everywhere."""
    ids = {"tenant_id": msg.tenant_id, "request_id": msg.request_id}
    removed: dict[str, int] = {}
    existed = await store.get(msg.tenant_id) is not None
    try:
        revoked = await ports.revoke(RevokeCredentials(**ids, actor=msg.actor))
        _check("credentials", revoked.error)
        removed["credentials"] = int(revoked.existed)
        removed["api_keys"] = revoked.api_keys
        # Fine-tuning first: its jobs stop before metering's state (which a finishing
        # job would settle into) is removed.
        for service, unit in {**OFFBOARD_ONLY, **STATEFUL}.items():
            gone = await ports.deprovision(service, DeprovisionTenant(**ids))
            _check(service, gone.error)
            removed[unit] = gone.removed
        removed["config_versions"] = len(await registry.versions(store, msg.tenant_id))
        await store.delete(msg.tenant_id)
    except (StepFailed, ServiceCallError) as exc:
        info = exc.info
        await trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.DELETION,
            action="lifecycle.offboard",
            status=AuditStatus.FAILURE,
            actor=msg.actor,
            error=info.message,
            details={k: v for k, v in removed.items()},
        )
        message = f"offboarding stopped: {info.message}; run it again to finish (idempotent)"
        return DeletionReceipt(
            **ids,
            removed=removed,
            existed=existed,
            error=ErrorInfo(code=info.code, message=message, retryable=True),
        )
    await trail.record(
        tenant_id=msg.tenant_id,
        request_id=msg.request_id,
        event_type=AuditEventType.DELETION,
        action="lifecycle.offboard",
        actor=msg.actor,
        resource_type="tenant",
        resource_id=msg.tenant_id,
        details={k: v for k, v in removed.items()},
    )
    await ports.publish(
        TenantOffboarded(**ids, removed=removed), subjects.lifecycle_event(msg.tenant_id)
    )
    return DeletionReceipt(**ids, removed=removed, existed=existed)
