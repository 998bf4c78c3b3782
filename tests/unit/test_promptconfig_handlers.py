"""promptconfig's handlers with an in-memory store: no broker, no nats-server."""

from __future__ import annotations

from typing import Any, cast

from services.promptconfig.handlers import (
    HANDLERS,
    Deps,
    preview,
    resolve,
    rollback,
    upsert,
    versions,
)
from services.promptconfig.tiers import default_profile
from shared.messages.audit import AuditStatus
from shared.messages.base import ErrorCode
from shared.messages.tenants import (
    ListConfigVersions,
    PreviewPrompt,
    ResolveTenant,
    RollbackConfig,
    TenantProfile,
    Tier,
    UpsertTenant,
)
from shared.tenant_directory import ListTenants, TenantsListed, directory_subject
from tests.support.handlers import InMemoryBus, recording_trail
from tests.unit.test_lifecycle import MemoryStore


def make() -> tuple[Deps, list[Any]]:
    trail, events = recording_trail("promptconfig")
    return Deps(store=MemoryStore(), trail=trail, ports=cast(Any, None)), events


def profile(name: str = "Acme Corp", template: str | None = None) -> TenantProfile:
    base = default_profile(name, Tier.PRO)
    return base.model_copy(update={"system_prompt_template": template}) if template else base


async def test_unknown_tenant_resolves_to_an_error() -> None:
    deps, _ = make()
    reply = await resolve(ResolveTenant(tenant_id="acme", request_id="r1"), deps)
    assert reply.error is not None and reply.error.code is ErrorCode.UNKNOWN_TENANT
    assert reply.request_id == "r1"


async def test_upsert_versions_and_audits_each_change_once() -> None:
    deps, events = make()
    first = await upsert(UpsertTenant(tenant_id="acme", profile=profile()), deps)
    same = await upsert(UpsertTenant(tenant_id="acme", profile=profile()), deps)
    renamed = await upsert(UpsertTenant(tenant_id="acme", profile=profile("Acme Ltd")), deps)
    assert first.created and not same.created and renamed.config is not None
    assert [e.action for e in events] == ["tenant_config.create", "config.update"]
    listed = await versions(ListConfigVersions(tenant_id="acme"), deps)
    assert [v.version for v in listed.versions] == [1, 2]
    back = await rollback(RollbackConfig(tenant_id="acme", version=1), deps)
    assert back.config is not None and back.config.name == "Acme Corp"
    missing = await rollback(RollbackConfig(tenant_id="acme", version=99), deps)
    assert missing.error is not None and missing.error.code is ErrorCode.NOT_FOUND


async def test_a_bad_template_is_refused_and_audited_as_a_failure() -> None:
    deps, events = make()
    reply = await upsert(
        UpsertTenant(tenant_id="acme", profile=profile(template="{{ nope }}")), deps
    )
    assert reply.error is not None and reply.error.code is ErrorCode.TEMPLATE_INVALID
    assert events[-1].status is AuditStatus.FAILURE
    unknown = await preview(PreviewPrompt(tenant_id="acme"), deps)
    assert unknown.error is not None and unknown.error.code is ErrorCode.UNKNOWN_TENANT


async def test_the_tenant_directory_answers_on_a_platform_inbox_only() -> None:
    deps, _ = make()
    await upsert(UpsertTenant(tenant_id="acme", profile=profile()), deps)
    bus = InMemoryBus(HANDLERS, deps)
    body = ListTenants().model_dump_json().encode()
    await bus.deliver(directory_subject(), directory_subject(), body, "_INBOX.ops.1")
    await bus.deliver(directory_subject(), directory_subject(), body, "tenant.acme.x")
    ((inbox, data),) = bus.client.sent
    assert inbox == "_INBOX.ops.1"
    assert [t.tenant_id for t in TenantsListed.model_validate_json(data).tenants] == ["acme"]
